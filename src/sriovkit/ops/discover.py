"""The host inventory: every PCI function, SR-IOV PFs with their VFs, names and netdevs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sriovkit.errors import HostError, NotFound
from sriovkit.host.pciids import PciIds
from sriovkit.host.process import paused_gc
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.configspace import ConfigSpace, parse_config
from sriovkit.model.device import DriverInfo, Names, NetdevInfo, PciDevice
from sriovkit.model.iomem import DeviceRange, parse_iomem, ranges_by_device
from sriovkit.model.pci import PciAddress, class_name_fallback

if TYPE_CHECKING:  # sockets and ctypes cost ~5 ms to import; only `show` needs ethtool
    from sriovkit.host.ethtool import Ethtool


@dataclass(frozen=True, slots=True)
class Inventory:
    """All PCI functions of a host, in address order, with their pci.ids names."""

    devices: tuple[PciDevice, ...]
    names: dict[PciAddress, Names]
    pci_ids_note: str | None = None

    def get(self, addr: PciAddress) -> PciDevice | None:
        """The function at `addr`, if present."""
        return next((d for d in self.devices if d.address == addr), None)

    @property
    def pfs(self) -> list[PciDevice]:
        """SR-IOV capable physical functions."""
        return [d for d in self.devices if d.sriov is not None]

    def vfs_of(self, pf: PciAddress) -> list[PciDevice]:
        """VFs of `pf` ordered by VF index."""
        return sorted((d for d in self.devices if d.physfn == pf), key=_by_vf_index)

    def families(self) -> list[tuple[PciDevice, list[PciDevice]]]:
        """Each PF with its VFs ordered by VF index, from one pass over the devices."""
        vfs: dict[PciAddress, list[PciDevice]] = {}
        for d in self.devices:
            if d.physfn is not None:
                vfs.setdefault(d.physfn, []).append(d)
        return [(pf, sorted(vfs.get(pf.address, ()), key=_by_vf_index)) for pf in self.pfs]

    @property
    def other_nics(self) -> list[PciDevice]:
        """Network functions that are neither PFs nor VFs."""
        return [d for d in self.devices if d.is_network and not d.is_pf and not d.is_vf]


def _by_vf_index(dev: PciDevice) -> tuple[bool, int, PciAddress]:
    return dev.vf_index is None, dev.vf_index or 0, dev.address


def _read_config(sysfs: Sysfs, addr: PciAddress) -> tuple[ConfigSpace | None, str | None]:
    """Parsed config space, or the reason it could not be read (shown, never fatal)."""
    try:
        return parse_config(sysfs.config(addr)), None
    except (ValueError, HostError) as exc:
        return None, str(exc)


def _with_cap_offset(dev: PciDevice, config: ConfigSpace | None) -> PciDevice:
    """Add where the SR-IOV capability sits in config space."""
    if dev.sriov is None or config is None or config.sriov is None:
        return dev
    return dev._replace(sriov=replace(dev.sriov, cap_offset=config.sriov.offset))


def _pf_with_cap_offset(sysfs: Sysfs, dev: PciDevice) -> PciDevice:
    """One config read per PF; other functions are returned untouched."""
    if dev.sriov is None:
        return dev
    return _with_cap_offset(dev, _read_config(sysfs, dev.address)[0])


def names_for(ids: PciIds, dev: PciDevice) -> Names:
    """pci.ids names of one function, with a coarse class name when the database is absent."""
    names = ids.names(
        dev.vendor_id, dev.device_id, dev.subsystem_vendor_id, dev.subsystem_device_id,
        dev.class_code,
    )  # fmt: skip
    if names.class_name is None:
        return Names(
            names.vendor, names.device, names.subsystem, class_name_fallback(dev.class_code)
        )
    return names


_IdKey = tuple[int, int, int, int, int]
_IdText = tuple[str, str, str, str, str]


def _id_key(dev: PciDevice) -> _IdKey:
    """The ids that decide a function's names (VFs of one PF share them)."""
    return dev[1:6]  # vendor_id to class_code


def collect(sysfs: Sysfs, ids: PciIds, only: Collection[PciAddress] | None = None) -> Inventory:
    """Read every PCI function once and name it; with `only`, just those functions and the
    VFs of the PFs among them (`SysfsReader.devices`)."""
    # Building records for thousands of VFs triggers the cyclic GC several times (~2 ms at
    # 4,096 VFs) though nothing here can form a cycle: paused for the walk, when it was on.
    with paused_gc():
        return _collect(sysfs, ids, only)


def _collect(sysfs: Sysfs, ids: PciIds, only: Collection[PciAddress] | None) -> Inventory:
    devices = sysfs.devices(only)
    names: dict[_IdKey, Names] = {}
    by_addr: dict[PciAddress, Names] = {}
    # One pass over thousands of functions: per-function work here shows up in the benchmark.
    for i, d in enumerate(devices):
        if d.sriov is not None:  # the capability offset changes neither ids nor address
            devices[i] = _pf_with_cap_offset(sysfs, d)
        key = _id_key(d)
        found = names.get(key)
        if found is None:  # 4,096 VFs share a handful of id tuples
            found = names[key] = names_for(ids, d)
        by_addr[d.address] = found
    return Inventory(tuple(devices), by_addr, None if ids.available else ids.missing_reason)


def _hex4(v: int) -> str:
    return f"{v:04x}"


def _id_text(key: _IdKey) -> _IdText:
    """vendor, device, class, subsystem vendor and device as the JSON document writes them."""
    vid, did, svid, sdid, class_code = key
    return _hex4(vid), _hex4(did), f"0x{class_code:06x}", _hex4(svid), _hex4(sdid)


def _device_json(dev: PciDevice, names: Names, ids: _IdText, physfn: str | None) -> dict[str, Any]:
    vid, did, class_code, svid, sdid = ids
    out: dict[str, Any] = {
        "address": str(dev.address),
        "vendor_id": vid,
        "device_id": did,
        "class": class_code,
        "class_name": names.class_name,
        "vendor_name": names.vendor,
        "device_name": names.device,
        "subsystem_vendor_id": svid,
        "subsystem_device_id": sdid,
        "subsystem_name": names.subsystem,
        "driver": dev.driver,
        "numa_node": dev.numa_node,
        "iommu_group": dev.iommu_group,
        "modalias": dev.modalias,
        "netdevs": list(dev.netdevs),
        "physfn": physfn,
        "vf_index": dev.vf_index,
        "sriov": None,
    }
    if dev.sriov is not None:
        s = dev.sriov
        out["sriov"] = {
            "total_vfs": s.total_vfs,
            "num_vfs": s.num_vfs,
            "offset": s.offset,
            "stride": s.stride,
            "vf_device_id": _hex4(s.vf_device_id),
            "cap_offset": s.cap_offset,
            "drivers_autoprobe": s.drivers_autoprobe,
        }
    return out


def device_json(dev: PciDevice, names: Names) -> dict[str, Any]:
    """Stable JSON keys for one function (ids as 4-digit lower-case hex, class as 0x-hex)."""
    physfn = str(dev.physfn) if dev.physfn else None
    return _device_json(dev, names, _id_text(_id_key(dev)), physfn)


def inventory_json(inv: Inventory) -> dict[str, Any]:
    """The `sriovkit inventory --json` document."""
    # Thousands of VFs share a handful of id tuples and PFs: their text is formatted once.
    ids: dict[_IdKey, _IdText] = {}
    pfs: dict[PciAddress, str] = {}
    devices = []
    for d in inv.devices:
        key = _id_key(d)
        text = ids.get(key)
        if text is None:
            text = ids[key] = _id_text(key)
        physfn = None
        if d.physfn is not None:
            physfn = pfs.get(d.physfn)
            if physfn is None:
                physfn = pfs[d.physfn] = str(d.physfn)
        devices.append(_device_json(d, inv.names[d.address], text, physfn))
    return {"devices": devices, "pci_ids": inv.pci_ids_note}


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    """Everything `sriovkit show` prints about one function."""

    device: PciDevice
    names: Names
    revision: int | None
    config: ConfigSpace | None
    config_error: str | None
    iomem: tuple[DeviceRange, ...]
    netdevs: tuple[NetdevInfo, ...]
    driver_info: DriverInfo | None
    vfs: tuple[PciDevice, ...]


def resolve(sysfs: Sysfs, target: str) -> PciAddress:
    """A PCI address from `ADDRESS` (with or without domain) or a netdev name."""
    addr = PciAddress.try_parse(target) or PciAddress.try_parse(f"0000:{target}")
    if addr is not None:
        if not sysfs.exists(addr):
            raise NotFound(f"PCI device {addr} not found under {sysfs.device_dir(addr)}")
        return addr
    by_net = sysfs.netdev_pci(target)
    if by_net is None:
        raise NotFound(
            f"{target!r} is neither a PCI address present on this host nor a netdev backed by a "
            "PCI function"
        )
    return by_net


def detail(sysfs: Sysfs, ids: PciIds, addr: PciAddress, ethtool: Ethtool | None) -> DeviceDetail:
    """Read one function in full: config space, iomem ranges, netdevs, driver info, VFs."""
    config, config_error = _read_config(sysfs, addr)
    # One pass over class/net for the function and all its VFs (each `device` call without
    # netdevs makes its own: 256 VFs took 2.9 s).
    nets = sysfs.netdev_map()
    dev = _with_cap_offset(sysfs.device(addr, netdevs=nets.get(addr, ())), config)
    iomem = tuple(ranges_by_device(parse_iomem(sysfs.iomem_text())).get(addr, []))
    netdevs = tuple(sysfs.netdev(n) for n in dev.netdevs)
    info: DriverInfo | None = None
    if ethtool is not None and dev.netdevs:
        info = ethtool.drvinfo(dev.netdevs[0])
    if info is None and dev.driver:
        info = DriverInfo(dev.driver, sysfs.driver_version(dev.driver))
    vfs: tuple[PciDevice, ...] = ()
    if dev.sriov is not None:
        vfs = tuple(
            sysfs.device(a, netdevs=nets.get(a, ()), vf_of=(dev, i))
            for i, a in sysfs.virtfns(addr).items()
        )
    return DeviceDetail(
        dev, names_for(ids, dev), sysfs.revision(addr), config, config_error, iomem, netdevs,
        info, vfs,
    )  # fmt: skip


def pf_netdev(sysfs: Sysfs, target: str) -> str:
    """The netdev through which a PF is configured, from its netdev name or PCI address.

    VF attributes are set with netlink on the PF's netdev, so a PCI address must map to one.
    """
    addr = PciAddress.try_parse(target) or PciAddress.try_parse(f"0000:{target}")
    if addr is None:
        return target
    names = sysfs.netdev_map().get(addr)
    if not sysfs.exists(addr):
        raise NotFound(f"PCI device {addr} not found under {sysfs.device_dir(addr)}")
    if not names:
        raise NotFound(f"PF {addr} has no netdev (is its driver bound?); VFs are set through it")
    return names[0]
