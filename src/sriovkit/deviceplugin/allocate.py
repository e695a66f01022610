"""What Allocate hands a container, as sriov-network-device-plugin does (a drop-in must match).

- `PCIDEVICE_<PREFIX>_<RESOURCE>`: the PCI addresses, comma-separated, in the order asked;
  `sriov` CNI and DPDK applications read it.
- `PCIDEVICE_<PREFIX>_<RESOURCE>_INFO`: JSON, per PCI address, per info provider: "generic"
  ({"deviceID"}), "vfio" ({"mount", "dev-mount"}) for vfio-pci devices, "vhost" ({"net-mount",
  "tun-mount"}) with needVhostNet, "rdma" ({"rdma_cm", "uverbs", "umad", "issm", "rdma_dev"},
  whichever the VF has), "extra" (the pool's additionalInfo). Keys sorted, no spaces, as Go's
  encoding/json writes a map.
- Device specs, "rw", host path = container path, each once per container:
  `/dev/vfio/vfio` and `/dev/vfio/<group>` per vfio-pci device; `/dev/vhost-net` and
  `/dev/net/tun` with needVhostNet; the VF's RDMA character devices and `/dev/infiniband/rdma_cm`
  (read from sysfs at Allocate time through `host.rdma.RdmaReader`, when one is given).
- With CDI (`cdi` given) the device nodes travel in the CDI spec instead (see `cdi`): the answer
  names the CDI devices (`cdi_devices`, and the `cdi.k8s.io/` annotation for kubelets and
  runtimes older than the field) and carries no device specs, as sriov-network-device-plugin
  does in its CDI mode: the runtime would otherwise create every node twice.

An id that is not in the resource, or is unhealthy, is refused with an error naming it: kubelet
then fails the pod's admission rather than start it without its device.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sriovkit.deviceplugin.model import Device, Resource

VFIO_CONTAINER = "/dev/vfio/vfio"
VFIO_DRIVER = "vfio-pci"
VHOST_NET = "/dev/vhost-net"
TUN = "/dev/net/tun"

RdmaNodes = Callable[[str], tuple[str, ...]]
"""PCI address -> its RDMA character devices (`RdmaReader.char_devices`)."""
RdmaNames = Callable[[str], tuple[str, ...]]
"""PCI address -> its RDMA device names (`RdmaReader.names`)."""
CdiNames = Callable[[Sequence[str]], tuple[tuple[str, ...], dict[str, str]]]
"""ids -> (qualified CDI names, annotations): `cdi.CdiSpecs.for_allocate`."""


class AllocationError(Exception):
    """A request kubelet must not get a device for; the message names the device."""

    def __init__(self, message: str, *, unknown: bool) -> None:
        super().__init__(message)
        self.unknown = unknown


@dataclass(frozen=True)
class Spec:
    """A device node for the container (host path = container path)."""

    path: str
    permissions: str = "rw"


@dataclass(frozen=True)
class ContainerAllocation:
    envs: dict[str, str] = field(default_factory=dict)
    specs: tuple[Spec, ...] = ()
    cdi_devices: tuple[str, ...] = ()
    """Fully qualified CDI names (`intel.com/net-pci=0000:03:02.0`)."""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rdma:
    """How to find a VF's RDMA devices; both default to "none" (no host to read)."""

    nodes: RdmaNodes = lambda _pci: ()
    names: RdmaNames = lambda _pci: ()


NO_RDMA = Rdma()


def env_name(resource_name: str) -> str:
    """`intel.com/sriov_a` -> `PCIDEVICE_INTEL_COM_SRIOV_A`."""
    return "PCIDEVICE_" + resource_name.upper().replace(".", "_").replace("/", "_")


def device_specs(dev: Device, rdma_nodes: Sequence[str] = ()) -> list[Spec]:
    """The device nodes one device needs, in a stable order (also the CDI spec's)."""
    specs: list[Spec] = []
    if dev.driver == VFIO_DRIVER and dev.iommu_group is not None:
        specs += [Spec(VFIO_CONTAINER), Spec(f"/dev/vfio/{dev.iommu_group}")]
    if dev.vhost_net:
        specs += [Spec(VHOST_NET), Spec(TUN)]
    specs += [Spec(node) for node in rdma_nodes]
    return specs


def rdma_info(nodes: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """The "rdma" provider's entry: each node under its kind's key, and the first device name."""
    info: dict[str, str] = {}
    for node in nodes:
        base = node.rsplit("/", 1)[-1]
        for key in ("uverbs", "umad", "issm", "rdma_cm"):
            if base.startswith(key):
                info[key] = node
    if names:
        info["rdma_dev"] = names[0]
    return info


def device_info(
    dev: Device, rdma_nodes: Sequence[str] = (), rdma_names: Sequence[str] = ()
) -> dict[str, dict[str, str]]:
    """The `_INFO` entry of one device, per provider."""
    info: dict[str, dict[str, str]] = {"generic": {"deviceID": dev.id}}
    if dev.driver == VFIO_DRIVER and dev.iommu_group is not None:
        info["vfio"] = {"mount": VFIO_CONTAINER, "dev-mount": f"/dev/vfio/{dev.iommu_group}"}
    if dev.vhost_net:
        info["vhost"] = {"net-mount": VHOST_NET, "tun-mount": TUN}
    if rdma_nodes:
        info["rdma"] = rdma_info(rdma_nodes, rdma_names)
    if dev.extra:
        info["extra"] = dict(dev.extra)
    return info


def check(resource: Resource, ids: Sequence[str]) -> list[Device]:
    """The devices of `ids`, in order; raises `AllocationError` for an unknown or unhealthy id."""
    known = resource.by_id()
    devices: list[Device] = []
    for dev_id in ids:
        dev = known.get(dev_id)
        if dev is None:
            raise AllocationError(f"{resource.name}: unknown device {dev_id}", unknown=True)
        if not dev.healthy:
            raise AllocationError(f"{resource.name}: device {dev_id} is unhealthy", unknown=False)
        if dev.driver == VFIO_DRIVER and dev.iommu_group is None:
            raise AllocationError(
                f"{resource.name}: device {dev_id} is bound to vfio-pci without an IOMMU group",
                unknown=False,
            )
        devices.append(dev)
    return devices


def allocate(
    resource: Resource,
    ids: Sequence[str],
    *,
    rdma: Rdma = NO_RDMA,
    cdi: CdiNames | None = None,
) -> ContainerAllocation:
    """One container's answer; raises `AllocationError` for an unknown or unhealthy id.

    `cdi`, when given, maps the ids to (qualified CDI names, annotations): see `cdi.CdiSpecs`.
    """
    devices = check(resource, ids)
    base = env_name(resource.name)
    infos = {}
    specs: list[Spec] = []
    for d in devices:
        nodes = rdma.nodes(d.id)
        infos[d.id] = device_info(d, nodes, rdma.names(d.id) if nodes else ())
        specs += [s for s in device_specs(d, nodes) if s not in specs]
    envs = {
        base: ",".join(d.id for d in devices),
        base + "_INFO": json.dumps(infos, sort_keys=True, separators=(",", ":")),
    }
    if cdi is not None:
        names, annotations = cdi([d.id for d in devices])
        return ContainerAllocation(envs, (), names, annotations)
    return ContainerAllocation(envs, tuple(specs))
