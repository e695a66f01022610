"""`create_host()`: write a whole simulated host under a directory, and `SimHost` to drive it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sriovkit.errors import InvalidInput
from sriovkit.model.pci import PciAddress
from sriovkit.sim.machine import HOST_JSON, STATE_DIR, STATE_JSON, SimKernel
from sriovkit.sim.plan import plan_host
from sriovkit.sim.spec import DevSpec, HostSpec, device_config, encode, netdev_driver
from sriovkit.sim.tree import (
    CLASS_NET,
    IOMMU_GROUPS,
    PCI_DEVICES,
    PCI_DRIVERS,
    Tree,
    cpu_mask,
    resource_text,
    window_lines,
)


@dataclass(frozen=True, slots=True)
class PfRecord:
    """One PF of a simulated host, as tests and benchmarks look at it."""

    address: str
    netdev: str | None
    profile: str
    driver: str
    total_vfs: int
    num_vfs: int


class SimHost:
    """A simulated host tree at `root` (written by `create_host`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.kernel = SimKernel(self.root)

    @property
    def spec(self) -> HostSpec:
        """The fixed description from host.json."""
        return self.kernel.spec

    @property
    def pfs(self) -> list[PfRecord]:
        """The SR-IOV PFs with their current VF count."""
        out = []
        for pf in self.spec.pfs:
            dev = self.kernel.device(pf.address)
            assert dev is not None
            out.append(
                PfRecord(
                    pf.address,
                    dev.net.name if dev.net else None,
                    pf.profile,
                    dev.driver or "",
                    pf.total_vfs,
                    self.kernel.num_vfs(pf.address),
                )
            )
        return out

    @property
    def devices(self) -> list[str]:
        """Addresses of every PCI function present now (VFs included), sorted."""
        names = os.listdir(self.root / PCI_DEVICES)
        return [str(a) for a in sorted(PciAddress.parse(n) for n in names)]

    def vfs(self, pf: str) -> list[str]:
        """Addresses of the live VFs of `pf`."""
        spec = self.kernel.pf(pf)
        if spec is None:
            return []
        return [str(spec.vf_address(i)) for i in range(self.kernel.num_vfs(pf))]

    def load_module(self, driver: str) -> None:
        """Load a driver module (e.g. "vfio-pci") so its directory and bind files exist."""
        self.kernel.load_module(driver)

    def set_num_vfs(self, pf: str, count: int) -> None:
        """Write sriov_numvfs through the kernel emulation."""
        self.kernel.set_num_vfs(pf, str(count))


def _skeleton(tree: Tree, spec: HostSpec) -> None:
    for rel in (
        PCI_DEVICES,
        PCI_DRIVERS,
        "sys/bus/pci/slots",
        CLASS_NET,
        IOMMU_GROUPS,
        "sys/module",
        "sys/devices/virtual/net",
        "proc",
        "dev",
        STATE_DIR,
    ):
        tree.mkdir(rel)
    tree.file("sys/bus/pci/drivers_autoprobe", "1\n")
    for name in ("drivers_probe", "rescan", "uevent"):
        tree.file(f"sys/bus/pci/{name}", "", 0o200)
    tree.file("sys/bus/pci/resource_alignment", "\n")
    total = spec.nodes * spec.cpus_per_node
    nodes = f"0-{spec.nodes - 1}\n"
    tree.mkdir("sys/devices/system/cpu")
    for name in ("online", "possible", "present"):
        tree.file(f"sys/devices/system/cpu/{name}", f"0-{total - 1}\n")
    for name in ("online", "possible", "has_cpu", "has_memory", "has_normal_memory"):
        tree.mkdir("sys/devices/system/node")
        tree.file(f"sys/devices/system/node/{name}", nodes)
    for node in range(spec.nodes):
        ndir = f"sys/devices/system/node/node{node}"
        tree.mkdir(ndir)
        cpulist, cpumap = cpu_mask(node, spec.cpus_per_node, spec.nodes)
        tree.file(f"{ndir}/cpulist", cpulist + "\n")
        tree.file(f"{ndir}/cpumap", cpumap + "\n")
        tree.file(f"{ndir}/distance", "10 21\n" if node == 0 else "21 10\n")
    lo = "sys/devices/virtual/net/lo"
    tree.mkdir(lo)
    for name, text in (
        ("address", "00:00:00:00:00:00"),
        ("ifindex", "1"),
        ("iflink", "1"),
        ("mtu", "65536"),
        ("type", "772"),
        ("operstate", "unknown"),
        ("flags", "0x9"),
        ("addr_len", "6"),
    ):
        tree.file(f"{lo}/{name}", text + "\n")
    tree.link(f"{CLASS_NET}/lo", lo)


def _write_device(kernel: SimKernel, dev: DevSpec) -> None:
    tree, spec = kernel.tree, kernel.spec
    pf = kernel.pf(dev.address)
    parent = dev.path.rsplit("/", 1)[0]
    if parent.count("/") == 2:  # sys/devices/pci0000:BB: the root bus directory
        tree.mkdir(parent)
    windows = None
    extra: dict[str, str] = {}
    if dev.bridge is not None:
        br = dev.bridge
        windows = window_lines((br.io, br.mem, br.pref))
        extra = {
            "secondary_bus_number": f"{br.secondary}\n",
            "subordinate_bus_number": f"{br.subordinate}\n",
            "ari_enabled": "1\n",
        }
        slot = f"sys/bus/pci/slots/{dev.port_number}"
        tree.mkdir(slot)
        tree.file(f"{slot}/address", f"0000:{br.secondary:02x}:00\n")
    if pf is not None:
        extra.update(
            {
                "sriov_totalvfs": f"{pf.total_vfs}\n",
                "sriov_numvfs": "0\n",
                "sriov_offset": f"{pf.offset}\n",
                "sriov_stride": f"{pf.stride}\n",
                "sriov_vf_device": f"{pf.vf_device:x}\n",
                "sriov_drivers_autoprobe": "1\n",
            }
        )
    resource = resource_text(
        dev.bars, dev.rom, pf.vf_bars if pf else [], pf.device_total if pf else 0, windows
    )
    tree.pci_function(
        dev.path,
        dev.address,
        ids=(dev.vendor, dev.device, *dev.subsys),
        cls=dev.cls,
        revision=dev.revision,
        numa=dev.numa,
        cpus=cpu_mask(dev.numa, spec.cpus_per_node, spec.nodes),
        irq=dev.irq,
        resource=resource,
        config=device_config(dev, pf, 0, bound=dev.driver is not None),
        link=dev.link if dev.pcie else None,
        group=dev.iommu_group,
        extra=extra,
    )


def create_host(
    root: Path,
    profiles: Sequence[str],
    vfs: int | None = None,
    *,
    extras: bool = True,
    seed: int = 0,
) -> SimHost:
    """Write a complete simulated host under `root`: one card per entry of `profiles`.

    `vfs=N` enables N VFs on every PF (capped at its sriov_totalvfs), through the same kernel
    emulation later writes to sriov_numvfs use.
    """
    if isinstance(profiles, str):
        raise InvalidInput("profiles", "expected a list of profile names, got one string")
    if vfs is not None and vfs < 0:
        raise InvalidInput("vfs", f"{vfs} is negative")
    root = Path(root)
    if (root / "sys").exists():
        raise InvalidInput("root", f"{root} already holds a host tree")
    spec = plan_host(list(profiles), seed, extras)
    root.mkdir(parents=True, exist_ok=True)
    tree = Tree(str(root))
    _skeleton(tree, spec)
    tree.file(HOST_JSON, encode(spec))
    netdevs = sum(1 for d in spec.devices if d.net is not None and netdev_driver(d.driver))
    tree.file(STATE_JSON, json.dumps({"next_ifindex": 2, "netdevs_at_boot": netdevs}))
    kernel = SimKernel(root, spec)
    with kernel.locked():
        for driver in sorted({d.driver for d in spec.devices if d.driver}):
            tree.load_driver(driver)
        for dev in spec.devices:
            _write_device(kernel, dev)
        for dev in spec.devices:
            if dev.driver is not None:
                kernel.bind(dev.address, dev.driver)
        if vfs:
            for pf in spec.pfs:
                kernel.set_num_vfs(pf.address, str(min(vfs, pf.total_vfs)))
    return SimHost(root)
