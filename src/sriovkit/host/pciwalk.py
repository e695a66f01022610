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
from dataclasses import replace
from typing import TYPE_CHECKING

from sriovkit.model.device import PciDevice
from sriovkit.model.pci import PciAddress

if TYPE_CHECKING:
    from sriovkit.host.sysfs import Sysfs

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


class _Family:
    """The VFs of one PF during a walk."""

    __slots__ = ("bound", "fd", "head", "pf", "template")

    def __init__(self, pf: PciDevice, fd: int) -> None:
        self.pf = pf
        self.fd = fd  # the directory holding the PF's and its VFs' directories
        self.template: PciDevice | None = None  # the first VF, read in full
        self.bound: frozenset[str] = frozenset()  # functions bound to the template's driver
        # The template's PciDevice fields from vendor_id to numa_node, shared by its siblings.
        self.head: _Head = (0, 0, 0, 0, 0, None, None, "", None)

    def set_template(self, dev: PciDevice, bound: frozenset[str]) -> None:
        """Record the first VF read in full and the functions bound to its driver."""
        self.template, self.bound = dev, bound
        self.head = (
            dev.vendor_id, dev.device_id, dev.subsystem_vendor_id, dev.subsystem_device_id,
            dev.class_code, dev.revision, dev.driver, dev.modalias, dev.numa_node,
        )  # fmt: skip


def _vfs(
    pf: PciAddress, offset: int, stride: int, count: int, present: set[str]
) -> list[tuple[str, int, PciAddress]]:
    """(name, index, address) of a PF's VFs that are present: routing id = PF rid + offset +
    index * stride (PCIe SR-IOV spec), carrying into the bus number, never past bus 0xff."""
    out = []
    domain = pf.domain
    rid = pf.routing_id + offset
    bus, prefix = -1, ""
    for index in range(count):
        if rid > 0xFFFF:
            break
        if rid >> 8 != bus:
            bus = rid >> 8
            prefix = f"{domain:04x}:{bus:02x}:"
        name = prefix + _DEVFN[rid & 0xFF]
        if name in present:
            out.append((name, index, PciAddress.from_routing_id(domain, rid)))
        rid += stride
    return out


def _parent_fd(bus_fd: int, pf_name: str) -> int:
    """The directory holding a PF's directory (`<pf>/..` resolves the bus link), or `bus_fd`."""
    try:
        return os.open(f"{pf_name}/..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=bus_fd)
    except OSError:
        return bus_fd


def walk(
    sysfs: Sysfs, bus_dir: str, drivers_dir: str, names: list[str],
    nets: dict[str, tuple[str, ...]],
) -> list[PciDevice]:  # fmt: skip
    """Every function in `names` (sorted sysfs names), in that order.

    A PF's routing id is always below its VFs' (First VF Offset >= 1), so walking in address
    order meets each PF first; its VFs' names then follow from offset and stride and need no
    physfn/virtfn link reads of their own.
    """
    present = set(names)
    known_vfs: dict[str, tuple[_Family, int, PciAddress, int | None]] = {}
    bound: dict[str, frozenset[str]] = {}
    out: list[PciDevice] = []
    bus_fd = os.open(bus_dir, os.O_RDONLY | os.O_DIRECTORY)
    fds = [bus_fd]
    try:
        for name in names:
            vf = known_vfs.get(name)
            if vf is None:
                addr = PciAddress.try_parse(name)
                if addr is None:
                    continue
                dev = sysfs.device(addr, netdevs=nets.get(name, ()))
                out.append(dev)
                s = dev.sriov
                if s is not None and s.num_vfs and s.stride:
                    vfs = _vfs(addr, s.offset, s.stride, s.num_vfs, present)
                    fd = _parent_fd(bus_fd, name)
                    if fd != bus_fd:
                        fds.append(fd)
                    family = _Family(dev, fd)
                    groups = _iommu_groups(fd, [n for n, _, _ in vfs])
                    for vf_name, index, vf_addr in vfs:
                        group = groups.get(vf_name, _UNREAD)
                        known_vfs[vf_name] = (family, index, vf_addr, group)
                continue
            family, index, addr, group = vf
            if group != _UNREAD and name in family.bound:
                # The common case, kept inline: thousands of VFs go through here.
                out.append(PciDevice(
                    addr, *family.head, group, nets.get(name, ()), family.pf.address, index, None
                ))  # fmt: skip
                continue
            t = family.template
            if t is not None and group != _UNREAD:
                other = _vf_elsewhere(family.fd, t, name, addr, index, group, nets.get(name, ()))
                if other is not None:
                    out.append(other)
                    continue
            dev = sysfs.device(addr, netdevs=nets.get(name, ()), vf_of=(family.pf, index))
            out.append(dev)
            if t is None:
                driver = dev.driver
                if driver is not None and driver not in bound:
                    bound[driver] = _bound_to(f"{drivers_dir}/{driver}")
                family.set_template(dev, bound[driver] if driver is not None else frozenset())
    finally:
        for fd in fds:
            os.close(fd)
    return out


def _bound_to(driver_dir: str) -> frozenset[str]:
    """Names of the devices a driver is bound to (its directory links each one by name)."""
    try:
        return frozenset(os.listdir(driver_dir))
    except OSError:
        return frozenset()


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
    return replace(
        template, address=addr, driver=driver, iommu_group=group, netdevs=netdevs, vf_index=index
    )
