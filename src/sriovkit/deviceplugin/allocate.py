"""What Allocate hands a container, as sriov-network-device-plugin does (a drop-in must match).

- `PCIDEVICE_<PREFIX>_<RESOURCE>`: the PCI addresses, comma-separated, in the order asked;
  `sriov` CNI and DPDK applications read it.
- `PCIDEVICE_<PREFIX>_<RESOURCE>_INFO`: JSON, per PCI address, per info provider: "generic"
  ({"deviceID"}), "vfio" ({"mount", "dev-mount"}) for vfio-pci devices, "extra" (the pool's
  additionalInfo). Keys sorted, no spaces, as Go's encoding/json writes a map.
- Device specs: `/dev/vfio/vfio` once and `/dev/vfio/<group>` per vfio-pci device, "rw".

An id that is not in the resource, or is unhealthy, is refused with an error naming it: kubelet
then fails the pod's admission rather than start it without its device.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from sriovkit.deviceplugin.model import Device, Resource

VFIO_CONTAINER = "/dev/vfio/vfio"
VFIO_DRIVER = "vfio-pci"


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


def env_name(resource_name: str) -> str:
    """`intel.com/sriov_a` -> `PCIDEVICE_INTEL_COM_SRIOV_A`."""
    return "PCIDEVICE_" + resource_name.upper().replace(".", "_").replace("/", "_")


def device_info(dev: Device) -> dict[str, dict[str, str]]:
    """The `_INFO` entry of one device, per provider."""
    info: dict[str, dict[str, str]] = {"generic": {"deviceID": dev.id}}
    if dev.driver == VFIO_DRIVER and dev.iommu_group is not None:
        info["vfio"] = {"mount": VFIO_CONTAINER, "dev-mount": f"/dev/vfio/{dev.iommu_group}"}
    if dev.extra:
        info["extra"] = dict(dev.extra)
    return info


def allocate(resource: Resource, ids: Sequence[str]) -> ContainerAllocation:
    """One container's answer; raises `AllocationError` for an unknown or unhealthy id."""
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
    base = env_name(resource.name)
    infos = {d.id: device_info(d) for d in devices}
    envs = {
        base: ",".join(d.id for d in devices),
        base + "_INFO": json.dumps(infos, sort_keys=True, separators=(",", ":")),
    }
    specs: list[Spec] = []
    for d in devices:
        if d.driver == VFIO_DRIVER:
            if not specs:
                specs.append(Spec(VFIO_CONTAINER))
            group = Spec(f"/dev/vfio/{d.iommu_group}")
            if group not in specs:
                specs.append(group)
    return ContainerAllocation(envs, tuple(specs))
