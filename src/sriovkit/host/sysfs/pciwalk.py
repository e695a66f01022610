"""The inventory's walk over every PCI function, built for hosts with thousands of VFs.

Every function that is not a VF (a PF, a GPU, a bridge) is read in full by `Sysfs.device`, and
so is the first VF met of each PF. Its sibling VFs cost one readlink each plus their share of
a few directory listings, on these kernel facts:

- Since Linux 4.17 (drivers/pci/iov.c) pci_iov_add_virtfn() calls pci_read_vf_config_common()
  for VF 0 only; it caches class/revision, header type and subsystem vendor/device in the PF,
  and probe.c's pci_class() and pci_subsystem_ids() hand those cached values to every VF. A VF's
  vendor is its PF's vendor and its device id the PF's sriov_vf_device. Header fixups match on
  these ids, so they treat all VFs of a PF alike. So PCI_ID, PCI_SUBSYS_ID, PCI_CLASS and
  MODALIAS in each VF's `uevent` are its siblings'; only DRIVER and PCI_SLOT_NAME differ.
- DRIVER is dev->driver->name. That is also the name of the driver's directory
  `bus/pci/drivers/<name>`, where driver_sysfs_add() (drivers/base/dd.c) links each bound device
  by its name: one listing tells which VFs are bound to the driver of their first sibling.
- pci_iov_add_virtfn() sets `virtfn->dev.parent = dev->dev.parent`: VF directories sit beside
  their PF's, so their links are read relative to that one directory.

Anything unexpected (a link that cannot be read, a VF bound elsewhere, a VF not where the
kernel puts it) takes the full `Sysfs.device` path for that VF.
"""

from __future__ import annotations

import os
import stat
from typing import Protocol

from sriovkit.model.device import PciDevice
from sriovkit.model.pci import PciAddress


class DeviceReader(Protocol):
    """What the walk needs of the sysfs reader: one function's full record.

    A protocol rather than the reader class, so this module imports nothing of the reader that
    calls it (the walk is a helper of the reader, not a client).
    """

    def device(self, addr: PciAddress, *, netdevs: tuple[str, ...] | None = None,
               vf_of: tuple[PciDevice, int] | None = None) -> PciDevice:  # fmt: skip
        """The full record of `addr` (see `SysfsReader.device`)."""
        ...


# "SS.F" for each devfn: VF names are built for thousands of routing ids per walk.
_DEVFN = tuple(f"{devfn >> 3:02x}.{devfn & 7}" for devfn in range(256))
_UNREAD = -1  # no entry from _iommu_groups: the link could not be read
_Head = tuple[int, int, int, int, int, int | None, str | None, str, int | None]


def _group_id(target: str) -> int | None:
    try:
        return int(target.rpartition("/")[2])
    except ValueError:
        return None


def _iommu_groups(dir_fd: int, names: list[str]) -> dict[str, int | None]:
    """`iommu_group` of each function under `dir_fd`: None where its directory is there without
    the link (no IOMMU), no entry where it cannot be told (the directory is not there, or the
    link could not be read).

    The links are read back to back: interleaved with building each VF's record, the same
    readlinks measured up to twice as slow here.
    """
    readlink = os.readlink
    try:
        return {
            n: int(readlink(f"{n}/iommu_group", dir_fd=dir_fd).rpartition("/")[2]) for n in names
        }
    except (OSError, ValueError):
        pass  # some link missing or odd: read them one by one
    out: dict[str, int | None] = {}
    for name in names:
        try:
            out[name] = _group_id(readlink(f"{name}/iommu_group", dir_fd=dir_fd))
        except FileNotFoundError:
            try:
                if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd).st_mode):
                    out[name] = None
            except OSError:
                pass
        except OSError:
            continue
    return out


def _members(
    pf: PciAddress, offset: int, stride: int, count: int, present: set[str]
) -> list[tuple[str, int, int]]:
    """(name, index, routing id) of a PF's VFs that are present: routing id = PF rid + offset +
    index * stride (PCIe SR-IOV spec), carrying into the bus number, never past bus 0xff."""
    out = []
    rid = pf.routing_id + offset
    bus, prefix = -1, ""
    for index in range(count):
        if rid > 0xFFFF:
            break
        if rid >> 8 != bus:
            bus = rid >> 8
            prefix = f"{pf.domain:04x}:{bus:02x}:"
        name = prefix + _DEVFN[rid & 0xFF]
        if name in present:
            out.append((name, index, rid))
        rid += stride
    return out


def _parent_fd(bus_fd: int, pf_name: str) -> int:
    """The directory holding a PF's directory (`<pf>/..` resolves the bus link), or `bus_fd`."""
    try:
        return os.open(f"{pf_name}/..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=bus_fd)
    except OSError:
        return bus_fd


class _Walk:
    """One walk's shared reads: the sysfs seam, its netdev map and the drivers' bindings."""

    __slots__ = ("bound", "bus_fd", "drivers_dir", "nets", "present", "sysfs")

    def __init__(
        self, sysfs: DeviceReader, bus_fd: int, drivers_dir: str, names: list[str],
        nets: dict[str, tuple[str, ...]],
    ) -> None:  # fmt: skip
        self.sysfs, self.bus_fd, self.drivers_dir, self.nets = sysfs, bus_fd, drivers_dir, nets
        self.present = set(names)
        self.bound: dict[str, frozenset[str]] = {}

    def bound_to(self, driver: str | None) -> frozenset[str]:
        """Names of the devices `driver` is bound to (its directory links each one by name)."""
        if driver is None:
            return frozenset()
        found = self.bound.get(driver)
        if found is None:
            try:
                found = frozenset(os.listdir(f"{self.drivers_dir}/{driver}"))
            except OSError:
                found = frozenset()
            self.bound[driver] = found
        return found

    def family(self, pf: PciDevice, name: str) -> dict[str, PciDevice]:
        """The records of a PF's VFs that are present, by name."""
        s = pf.sriov
        if s is None or not s.num_vfs or not s.stride:
            return {}
        members = _members(pf.address, s.offset, s.stride, s.num_vfs, self.present)
        if not members:
            return {}
        fd = _parent_fd(self.bus_fd, name)
        try:
            return self._family(pf, fd, members)
        finally:
            if fd != self.bus_fd:
                os.close(fd)

    def _family(
        self, pf: PciDevice, fd: int, members: list[tuple[str, int, int]]
    ) -> dict[str, PciDevice]:
        groups = _iommu_groups(fd, [n for n, _, _ in members])
        nets, sysfs = self.nets, self.sysfs
        domain, pf_addr = pf.address.domain, pf.address
        # The first VF is read in full; its siblings share its ids, class and modalias.
        name, index, rid = members[0]
        first = PciAddress.from_routing_id(domain, rid)
        t = sysfs.device(first, netdevs=nets.get(name, ()), vf_of=(pf, index))
        head: _Head = t[1:10]  # vendor_id to numa_node
        bound = self.bound_to(t.driver)
        out = {name: t}
        for name, index, rid in members[1:]:
            addr = PciAddress.from_routing_id(domain, rid)
            group = groups.get(name, _UNREAD)
            netdevs = nets.get(name, ())
            if group != _UNREAD:
                if name in bound:  # the common case: thousands of VFs go through here
                    out[name] = PciDevice(addr, *head, group, netdevs, pf_addr, index, None)
                    continue
                other = _vf_elsewhere(fd, t, name, addr, index, group, netdevs)
                if other is not None:
                    out[name] = other
                    continue
            out[name] = sysfs.device(addr, netdevs=netdevs, vf_of=(pf, index))
        return out


def walk(
    sysfs: DeviceReader, bus_dir: str, drivers_dir: str, names: list[str],
    nets: dict[str, tuple[str, ...]], *, only: frozenset[str] | None = None,
) -> list[PciDevice]:  # fmt: skip
    """Every function in `names` (sorted sysfs names), in that order; with `only`, just the
    functions named there and the VFs of the PFs among them.

    A PF's routing id is always below its VFs' (First VF Offset >= 1), so walking in address
    order meets each PF first; its VFs' names then follow from offset and stride, and their
    records are built right then, with no physfn/virtfn link reads of their own.
    """
    vfs: dict[str, PciDevice] = {}
    out: list[PciDevice] = []
    bus_fd = os.open(bus_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        w = _Walk(sysfs, bus_fd, drivers_dir, names, nets)
        for name in names:
            dev = vfs.get(name)
            if dev is None:
                if only is not None and name not in only:
                    continue
                addr = PciAddress.try_parse(name)
                if addr is None:
                    continue
                dev = sysfs.device(addr, netdevs=nets.get(name, ()))
                if dev.sriov is not None:
                    vfs.update(w.family(dev, name))
            out.append(dev)
    finally:
        os.close(bus_fd)
    return out


def _vf_elsewhere(
    dir_fd: int, template: PciDevice, name: str, addr: PciAddress, index: int,
    group: int | None, netdevs: tuple[str, ...],
) -> PciDevice | None:  # fmt: skip
    """A VF not bound to its template's driver: unbound, or bound to another (vfio-pci for a
    VM or DPDK). Its own `driver` link says which (its directory is known to be under
    `dir_fd`); None when only `uevent` can settle it."""
    try:
        driver: str | None = os.readlink(f"{name}/driver", dir_fd=dir_fd).rsplit("/", 1)[-1]
    except FileNotFoundError:
        driver = None
    except OSError:
        return None
    return template._replace(
        address=addr, driver=driver, iommu_group=group, netdevs=netdevs, vf_index=index
    )
