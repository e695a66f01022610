"""Device plugin pools: which devices each `resourceList` entry advertises on this host.

The rules are sriov-network-device-plugin's (cmd/sriovdp/manager.go, pkg/netdevice,
pkg/resources/deviceSelectors.go), so a node moving over keeps its pools:

- netDevice pools draw from network controllers (PCI class 0x02), accelerator pools from
  processing accelerators (class 0x12), whatever driver is bound (a kernel net driver,
  vfio-pci, uio);
- within a selector object every given field must match; the objects of a list are tried in
  order and a device is in the pool when one matches;
- resources are taken in config order, and a device joins the first that selects it;
- a PF with VFs enabled is not offered (its VFs are), nor is a device whose netdev carries the
  default route; `pfNames` / `rootDevices` select functions of a PF, never the PF itself.

Beyond upstream: a bond port is never offered, a default route on a VLAN or bond over a device
counts for the device, and every device a pool's selectors pick but the pool leaves out is
listed with the reason (upstream only logs some of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sriovkit.model.device import PciDevice
from sriovkit.model.dp_config import DeviceType, DpConfig, ResourceConfig, Selector
from sriovkit.model.dp_pool import Excluded, Exclusion, Pool, PoolDevice
from sriovkit.model.pci import PciAddress
from sriovkit.ops.discover import Inventory

# The PCI base class each device type draws from (upstream's types.SupportedDevices).
BASE_CLASS: dict[DeviceType, int] = {
    DeviceType.NET_DEVICE: 0x02,
    DeviceType.ACCELERATOR: 0x12,
    DeviceType.AUX_NET_DEVICE: 0x02,
}


class DeviceFacts(Protocol):
    """Per-device facts the inventory does not carry (`host.netfacts.NetFacts` reads them)."""

    def link_type(self, ifname: str) -> str | None:
        """`ether`, `infiniband`, ... of one netdev."""
        ...

    def has_rdma(self, addr: PciAddress) -> bool:
        """True when the function has an RDMA device."""
        ...

    def acpi_index(self, addr: PciAddress) -> str | None:
        """The function's ACPI index, if the firmware gives one."""
        ...


@dataclass(slots=True)
class _Host:
    """The inventory indexed once, and facts read at most once per device, only when a
    selector or a pool member needs them (a host can carry thousands of VFs)."""

    by_addr: dict[PciAddress, PciDevice]
    facts: DeviceFacts
    _link: dict[PciAddress, str | None] = field(default_factory=dict)
    _rdma: dict[PciAddress, bool] = field(default_factory=dict)
    _acpi: dict[PciAddress, str | None] = field(default_factory=dict)

    def pf(self, dev: PciDevice) -> PciDevice | None:
        return None if dev.physfn is None else self.by_addr.get(dev.physfn)

    def pf_name(self, dev: PciDevice) -> str | None:
        pf = self.pf(dev)
        return pf.netdevs[0] if pf is not None and pf.netdevs else None

    def link_type(self, dev: PciDevice) -> str | None:
        """The netdev's link type; for a VF without one (vfio-pci), its PF's, as upstream."""
        if dev.address not in self._link:
            name = dev.netdevs[0] if dev.netdevs else self.pf_name(dev)
            self._link[dev.address] = None if name is None else self.facts.link_type(name)
        return self._link[dev.address]

    def known_link_type(self, dev: PciDevice) -> str | None:
        return self._link.get(dev.address)

    def known_rdma(self, dev: PciDevice) -> bool | None:
        return self._rdma.get(dev.address)

    def rdma(self, dev: PciDevice) -> bool:
        if dev.address not in self._rdma:
            self._rdma[dev.address] = self.facts.has_rdma(dev.address)
        return self._rdma[dev.address]

    def acpi(self, dev: PciDevice) -> str | None:
        if dev.address not in self._acpi:
            self._acpi[dev.address] = self.facts.acpi_index(dev.address)
        return self._acpi[dev.address]


def _matches(sel: Selector, dev: PciDevice, host: _Host) -> bool:
    """Every given field of `sel` matches `dev`, in upstream's order (cheap ones first)."""
    if sel.vendors and f"{dev.vendor_id:04x}" not in sel.vendors:
        return False
    if sel.devices and f"{dev.device_id:04x}" not in sel.devices:
        return False
    if sel.drivers and dev.driver not in sel.drivers:
        return False
    if sel.pci_addresses and dev.address not in sel.pci_addresses:
        return False
    if sel.acpi_indexes and host.acpi(dev) not in sel.acpi_indexes:
        return False
    if sel.pf_names:
        name = host.pf_name(dev)
        if name is None:
            return False
        # Names compare case-insensitively, as upstream's strings.EqualFold; every item for
        # the PF counts (upstream uses only the first one naming it).
        folded = name.casefold()
        items = [r for r in sel.pf_names if r.pf.casefold() == folded]
        if not any(r.selects(dev.vf_index) for r in items):
            return False
    if sel.root_devices:
        pf = str(dev.physfn) if dev.physfn is not None else None
        items = [r for r in sel.root_devices if r.pf == pf]
        if not any(r.selects(dev.vf_index) for r in items):
            return False
    if sel.link_types and host.link_type(dev) not in sel.link_types:
        return False
    return not (sel.is_rdma and not host.rdma(dev))


def _safety(
    dev: PciDevice, default_route: Mapping[str, str], bond_ports: Mapping[str, str]
) -> Excluded | None:
    """Why the host needs this device for itself, or None."""
    for name in dev.netdevs:
        holder = default_route.get(name)
        if holder is not None:
            via = "" if holder == name else f" (on {holder}, over it)"
            return Excluded(
                dev.address, Exclusion.DEFAULT_ROUTE, f"{name} carries the default route{via}"
            )
    for name in dev.netdevs:
        bond = bond_ports.get(name)
        if bond is not None:
            return Excluded(dev.address, Exclusion.BOND_PORT, f"{name} is a port of bond {bond}")
    return None


def _exclusion(
    dev: PciDevice,
    taken: Mapping[PciAddress, str],
    default_route: Mapping[str, str],
    bond_ports: Mapping[str, str],
) -> Excluded | None:
    if dev.driver is None:
        return Excluded(dev.address, Exclusion.NO_DRIVER, "no driver bound")
    safety = _safety(dev, default_route, bond_ports)
    if safety is not None:
        return safety
    if dev.sriov is not None and dev.sriov.num_vfs > 0:
        return Excluded(
            dev.address,
            Exclusion.PF_WITH_VFS,
            f"PF with {dev.sriov.num_vfs} VFs enabled: its VFs are offered, not the PF",
        )
    pool = taken.get(dev.address)
    if pool is not None:
        return Excluded(dev.address, Exclusion.IN_OTHER_POOL, f"already in pool {pool}")
    return None


def _member(
    dev: PciDevice, res: ResourceConfig, sel: Selector, index: int, host: _Host, details: bool
) -> PoolDevice:
    assert dev.driver is not None  # unbound devices were excluded
    if details:
        link_type: str | None = host.link_type(dev)
        rdma: bool | None = host.rdma(dev)
    else:  # what a selector read, nothing more
        link_type, rdma = host.known_link_type(dev), host.known_rdma(dev)
    numa = dev.numa_node
    if res.exclude_topology or numa is None or numa < 0:
        numa = None
    return PoolDevice(
        pci=dev.address,
        pf_pci=dev.physfn,
        pf_name=host.pf_name(dev),
        vf_index=dev.vf_index,
        vendor=f"{dev.vendor_id:04x}",
        device=f"{dev.device_id:04x}",
        driver=dev.driver,
        netdev=dev.netdevs[0] if dev.netdevs else None,
        numa=numa,
        iommu_group=dev.iommu_group,
        link_type=link_type,
        rdma=rdma,
        vhost_net=sel.need_vhost_net,
        selector=index,
    )


def _pool(
    res: ResourceConfig,
    candidates: Sequence[PciDevice],
    host: _Host,
    taken: dict[PciAddress, str],
    default_route: Mapping[str, str],
    bond_ports: Mapping[str, str],
    details: bool,
) -> Pool:
    members: list[PoolDevice] = []
    excluded: list[Excluded] = []
    notes: list[str] = []
    seen: set[PciAddress] = set()
    for index, sel in enumerate(res.selectors):
        if sel.unreadable:
            fields = ", ".join(sel.unreadable)
            notes.append(
                f"selectors[{index}] uses {fields}, which sriovkit does not read yet: "
                "it selects nothing"
            )
            continue
        for dev in candidates:
            if dev.address in seen or not _matches(sel, dev, host):
                continue
            seen.add(dev.address)
            why = _exclusion(dev, taken, default_route, bond_ports)
            if why is not None:
                excluded.append(why)
                continue
            taken[dev.address] = res.full_name
            members.append(_member(dev, res, sel, index, host, details))
    return Pool(
        res.resource_name, res.prefix, res.device_type, tuple(members), tuple(excluded),
        tuple(notes),
    )  # fmt: skip


def pools(
    inventory: Inventory,
    config: DpConfig,
    *,
    facts: DeviceFacts,
    bond_ports: Mapping[str, str],
    default_route: Mapping[str, str],
    details: bool = True,
) -> list[Pool]:
    """One `Pool` per resource of `config`, in config order.

    `bond_ports` maps a bond port's netdev to its bond, `default_route` a netdev to the
    interface holding the default route over it (itself, or a VLAN or bond on top): both from
    `host.netfacts.NetFacts`. `details`: each member's link type and RDMA flag are read even
    when no selector needs them (what `sriovkit dp pools` shows); without, a member carries
    only what its selectors read, None otherwise: the device plugin advertises neither, and at
    4,096 VFs they are two sysfs reads per VF on every pass.
    """
    host = _Host({d.address: d for d in inventory.devices}, facts)
    by_class: dict[int, list[PciDevice]] = {}
    for dev in inventory.devices:
        by_class.setdefault(dev.class_code >> 16, []).append(dev)
    taken: dict[PciAddress, str] = {}
    out: list[Pool] = []
    for res in config.resources:
        if res.device_type is DeviceType.AUX_NET_DEVICE:
            note = "auxNetDevice pools (subfunctions) are not discovered by sriovkit yet"
            out.append(Pool(res.resource_name, res.prefix, res.device_type, (), (), (note,)))
            continue
        candidates = by_class.get(BASE_CLASS[res.device_type], [])
        out.append(_pool(res, candidates, host, taken, default_route, bond_ports, details))
    return out


__all__ = ["BASE_CLASS", "DeviceFacts", "pools"]
