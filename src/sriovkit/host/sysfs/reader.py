"""`SysfsReader(root)`: read the kernel's PCI and netdev view under a root directory.

Everything is read the way the kernel lays it out, so the same code serves a real host (root `/`)
and a tree written by `sriovkit.sim`. Reads are kept to a minimum per device because a host can
carry thousands of VFs: the `uevent` file alone carries driver, class, ids, slot and modalias,
and a PF's VFs after the first need not even that (`pciwalk` says why). The write verbs are in
`writer.py`; `Sysfs` there is the seam callers use.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from sriovkit.errors import HostError, NotFound
from sriovkit.host.sysfs.pciwalk import walk
from sriovkit.model.device import NetdevInfo, NetdevLink, PciDevice, SriovInfo
from sriovkit.model.pci import PciAddress
from sriovkit.model.uevent import ids_from_uevent, is_pci_name, parse_uevent, pci_name_in_path

PCI_DEVICES = "sys/bus/pci/devices"
CLASS_NET = "sys/class/net"
PCI_DRIVERS = "sys/bus/pci/drivers"


def _read(path: str) -> str | None:
    """Text of a sysfs attribute, or None when absent or when the driver refuses the read.

    phys_port_name and friends answer EOPNOTSUPP on drivers that lack them; that means "none".
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 8192).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _readlink_base(path: str) -> str | None:
    try:
        return os.readlink(path).rsplit("/", 1)[-1]
    except OSError:
        return None


def _readlinks(dir_fd: int, names: list[str]) -> list[str]:
    """Targets of the links `names` under `dir_fd`; "" for one that cannot be read (gone, or not
    a link: `class/net/bonding_masters` is a file once the bonding module is loaded)."""
    readlink = os.readlink
    out: list[str] = []
    while len(out) < len(names):
        try:
            # extend() keeps what it got before a failure: the reads go on after the one that
            # failed, and no link is read twice.
            out.extend(readlink(n, dir_fd=dir_fd) for n in names[len(out) :])
        except OSError:
            out.append("")
    return out


def _is_ifname(name: str) -> bool:
    """A name that can only mean one entry of `class/net` (never the directory or its parent)."""
    return bool(name) and "/" not in name and name not in (".", "..")


def _int(text: str | None, base: int = 10) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def _pci_in_path(target: str) -> PciAddress | None:
    """The last PCI address among the components of a device path."""
    name = pci_name_in_path(target)
    return PciAddress.try_parse(name) if name else None


class SysfsReader:
    """The read half of the sysfs + procfs seam. `root` is treated as `/` (simulated or real)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = Path(root)
        self._root_s = str(self.root).rstrip("/")

    # -- paths ---------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        """`rel` (an absolute-looking path like `/sys/bus/pci`) under this root."""
        return self.root / rel.lstrip("/")

    def _p(self, rel: str) -> str:
        return f"{self._root_s}/{rel}"

    def device_dir(self, addr: PciAddress) -> str:
        """The `sys/bus/pci/devices/<addr>` path (a link into `sys/devices`)."""
        return self._p(f"{PCI_DEVICES}/{addr}")

    # -- PCI -----------------------------------------------------------------------------------
    def _pci_names(self) -> list[str]:
        """Names in `sys/bus/pci/devices`, sorted (fixed-width lower-case hex sorts as numbers)."""
        try:
            names = os.listdir(self._p(PCI_DEVICES))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HostError(f"cannot list {self._p(PCI_DEVICES)}: {exc.strerror}") from exc
        return sorted(n for n in names if is_pci_name(n))

    def pci_addresses(self) -> list[PciAddress]:
        """Every PCI function the kernel knows, sorted by address (empty when no PCI bus)."""
        return [a for a in map(PciAddress.try_parse, self._pci_names()) if a is not None]

    def exists(self, addr: PciAddress) -> bool:
        """True when the function is present."""
        return os.path.exists(self.device_dir(addr))

    def attr(self, addr: PciAddress, name: str) -> str | None:
        """One attribute of a PCI function (None when absent or unreadable)."""
        return _read(f"{self.device_dir(addr)}/{name}")

    # -- bonds ---------------------------------------------------------------------------------
    def bonding(self, bond: str) -> dict[str, str] | None:
        """`sys/class/net/<bond>/bonding/*`: file name -> contents; None when not a bond.

        A file the kernel refuses to read (802.3ad ones outside 802.3ad) reads as empty.
        """
        directory = self._p(f"{CLASS_NET}/{bond}/bonding")
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        return {n: _read(f"{directory}/{n}") or "" for n in sorted(names)}

    def proc_bonding(self, bond: str) -> str | None:
        """The text of `proc/net/bonding/<bond>`, None when there is no such bond."""
        try:
            return self.path(f"/proc/net/bonding/{bond}").read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def link_base(self, addr: PciAddress, name: str) -> str | None:
        """Last component of a link under the function (`driver`, `iommu_group`, `physfn`)."""
        return _readlink_base(f"{self.device_dir(addr)}/{name}")

    def config(self, addr: PciAddress) -> bytes:
        """Raw configuration space (64 bytes for non-root on a real host, up to 4096 for root)."""
        try:
            with open(f"{self.device_dir(addr)}/config", "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise HostError(f"cannot read config space of {addr}: {exc.strerror}") from exc

    def sriov(self, addr: PciAddress) -> SriovInfo | None:
        """The PF's sysfs SR-IOV figures, or None when the function is not SR-IOV capable."""
        base = self.device_dir(addr)
        total = _int(_read(f"{base}/sriov_totalvfs"))
        if total is None:
            return None
        autoprobe = _int(_read(f"{base}/sriov_drivers_autoprobe"))
        return SriovInfo(
            total_vfs=total,
            num_vfs=_int(_read(f"{base}/sriov_numvfs")) or 0,
            offset=_int(_read(f"{base}/sriov_offset")) or 0,
            stride=_int(_read(f"{base}/sriov_stride")) or 0,
            vf_device_id=_int(_read(f"{base}/sriov_vf_device"), 16) or 0,
            drivers_autoprobe=None if autoprobe is None else bool(autoprobe),
        )

    def virtfns(self, pf: PciAddress) -> dict[int, PciAddress]:
        """VF index -> VF address from the PF's `virtfnN` links."""
        base = self.device_dir(pf)
        out: dict[int, PciAddress] = {}
        try:
            names = os.listdir(base)
        except OSError:
            return out
        for name in names:
            if name.startswith("virtfn") and name[6:].isdigit():
                target = _readlink_base(f"{base}/{name}")
                vf = PciAddress.try_parse(target or "")
                if vf is not None:
                    out[int(name[6:])] = vf
        return dict(sorted(out.items()))

    def driver_loaded(self, driver: str) -> bool:
        """True when the PCI driver is registered (`sys/bus/pci/drivers/<driver>` exists)."""
        return _is_ifname(driver) and os.path.isdir(self._p(f"{PCI_DRIVERS}/{driver}"))

    def iommu_group_members(self, group: str) -> list[PciAddress]:
        """The functions of IOMMU group `group`, sorted (empty when it cannot be listed)."""
        if not _is_ifname(group):
            return []
        try:
            names = os.listdir(self._p(f"sys/kernel/iommu_groups/{group}/devices"))
        except OSError:
            return []
        return [a for a in map(PciAddress.try_parse, sorted(names)) if a is not None]

    def device(
        self,
        addr: PciAddress,
        *,
        netdevs: tuple[str, ...] | None = None,
        vf_of: tuple[PciDevice, int] | None = None,
    ) -> PciDevice:
        """Everything the inventory keeps about one function.

        `vf_of` = (PF, index), when the caller already knows the function is that PF's VF: the
        physfn link, SR-IOV files and NUMA node are then not read (a VF sits on its PF's bus,
        so the kernel gives it the PF's node).
        """
        base = self.device_dir(addr)
        text = _read(f"{base}/uevent")
        if text is None:
            raise NotFound(f"PCI device {addr} not found under {self._p(PCI_DEVICES)}")
        ev = parse_uevent(text)
        vid, did, svid, sdid, class_code, modalias = ids_from_uevent(
            ev.get("PCI_ID", "0:0"),
            ev.get("PCI_SUBSYS_ID", "0:0"),
            ev.get("PCI_CLASS", "0"),
            ev.get("MODALIAS", ""),
        )
        sriov: SriovInfo | None = None
        if vf_of is not None:
            pf, vf_index = vf_of
            physfn: PciAddress | None = pf.address
            numa = pf.numa_node
        else:
            physfn = PciAddress.try_parse(_readlink_base(f"{base}/physfn") or "")
            vf_index = None
            if physfn is None:
                sriov = self.sriov(addr)
            else:
                vf_index = next((i for i, a in self.virtfns(physfn).items() if a == addr), None)
            numa = _int(_read(f"{base}/numa_node"))
            numa = None if numa is None or numa < 0 else numa
        group = _readlink_base(f"{base}/iommu_group")
        return PciDevice(
            address=addr,
            vendor_id=vid,
            device_id=did,
            subsystem_vendor_id=svid,
            subsystem_device_id=sdid,
            class_code=class_code,
            revision=None,
            driver=ev.get("DRIVER"),
            modalias=modalias,
            numa_node=numa,
            iommu_group=_int(group) if group else None,
            netdevs=self.netdev_map().get(addr, ()) if netdevs is None else netdevs,
            physfn=physfn,
            vf_index=vf_index,
            sriov=sriov,
        )

    def devices(self, only: Collection[PciAddress] | None = None) -> list[PciDevice]:
        """Every function, in address order (see `pciwalk` for how VFs are read cheaply); with
        `only`, those functions and the VFs of the PFs among them (one PF's family, read again
        after a change on it, without the thousands of other functions)."""
        names = self._pci_names()
        if not names:
            return []
        wanted = None if only is None else frozenset(map(str, only))
        return walk(
            self, self._p(PCI_DEVICES), self._p(PCI_DRIVERS), names, self._netdev_names_by_pci(),
            only=wanted,
        )  # fmt: skip

    def revision(self, addr: PciAddress) -> int | None:
        """Revision id (sysfs `revision`)."""
        return _int(self.attr(addr, "revision"), 16)

    def driver_version(self, driver: str) -> str | None:
        """`sys/module/<drv>/version` (in-tree drivers mostly have none)."""
        return _read(self._p(f"sys/module/{driver.replace('-', '_')}/version"))

    def resources(self, addr: PciAddress) -> list[tuple[int, int, int]]:
        """(start, end, flags) per line of the `resource` file; unused BARs are all-zero lines."""
        text = self.attr(addr, "resource") or ""
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)))
        return out

    # -- netdevs -------------------------------------------------------------------------------
    def netdev_pci(self, ifname: str) -> PciAddress | None:
        """The PCI function behind a netdev, or None (virtual interfaces have no `device`)."""
        if not _is_ifname(ifname):
            return None
        try:
            target = os.readlink(self._p(f"{CLASS_NET}/{ifname}"))
        except OSError:
            return None
        return _pci_in_path(target)

    def _netdev_names_by_pci(self) -> dict[str, tuple[str, ...]]:
        try:
            fd = os.open(self._p(CLASS_NET), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return {}
        # Links read relative to an open directory (the kernel walks one component, not the
        # whole path, per netdev) and back to back: interleaved with the parsing below, the
        # same readlinks measured ~1.5x slower.
        try:
            names = os.listdir(fd)
            targets = _readlinks(fd, names)
        finally:
            os.close(fd)
        out: dict[str, tuple[str, ...]] = {}
        for name, target in zip(names, targets, strict=True):
            pci = pci_name_in_path(target)
            if pci is None:
                continue
            prev = out.get(pci)
            out[pci] = (name,) if prev is None else tuple(sorted((*prev, name)))
        return out

    def netdev_map(self) -> dict[PciAddress, tuple[str, ...]]:
        """PCI function -> its netdevs, from one readlink per `/sys/class/net` entry.

        The link target is the device path, so it names the PCI function even when a bus sits
        in between (virtio-pci puts `virtioN/net/ethX` under the PCI function). One readlink per
        netdev is far cheaper than listing `net/` under thousands of VFs.
        """
        out: dict[PciAddress, tuple[str, ...]] = {}
        for name, nets in self._netdev_names_by_pci().items():
            addr = PciAddress.try_parse(name)
            if addr is not None:
                out[addr] = nets
        return out

    def netdev(self, ifname: str) -> NetdevInfo:
        """What `/sys/class/net/<if>` says about one interface."""
        base = self._p(f"{CLASS_NET}/{ifname}")
        if not _is_ifname(ifname) or not os.path.exists(base):
            raise NotFound(f"network interface {ifname!r} not found under {self._p(CLASS_NET)}")
        carrier = _int(_read(f"{base}/carrier"))
        speed = _int(_read(f"{base}/speed"))
        return NetdevInfo(
            name=ifname,
            mac=_read(f"{base}/address"),
            mtu=_int(_read(f"{base}/mtu")),
            operstate=_read(f"{base}/operstate"),
            carrier=None if carrier is None else bool(carrier),
            speed=None if speed is None or speed < 0 else speed,
            ifindex=_int(_read(f"{base}/ifindex")),
            phys_port_name=_read(f"{base}/phys_port_name") or None,
            phys_switch_id=_read(f"{base}/phys_switch_id") or None,
        )

    def netdev_link(self, ifname: str) -> NetdevLink:
        """MAC, operstate and carrier of one interface: the three reads a listing of thousands of
        VF netdevs needs, out of the eight `netdev` makes."""
        base = self._p(f"{CLASS_NET}/{ifname}")
        if not _is_ifname(ifname):
            raise NotFound(f"network interface {ifname!r} not found under {self._p(CLASS_NET)}")
        mac = _read(f"{base}/address")
        if mac is None and not os.path.exists(base):  # checked only when the read failed
            raise NotFound(f"network interface {ifname!r} not found under {self._p(CLASS_NET)}")
        carrier = _int(_read(f"{base}/carrier"))  # EINVAL while the interface is down: None
        return NetdevLink(
            ifname, mac, _read(f"{base}/operstate"), None if carrier is None else bool(carrier)
        )

    # -- procfs --------------------------------------------------------------------------------
    def iomem_text(self) -> str:
        """`/proc/iomem` (addresses read as zero unless root)."""
        return _read(self._p("proc/iomem")) or ""
