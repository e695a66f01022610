"""Write PCI functions, netdevs, drivers and modules into a simulated tree as the kernel shows them.

Every path is relative to the host root (`sys/...`); links are relative like the kernel's, so the
tree can be moved or bind-mounted. Plain `os` calls on strings: a host with thousands of VFs is
written file by file, and pathlib's per-call overhead would dominate.
"""

from __future__ import annotations

import contextlib
import os
import posixpath

from sriovkit.sim.profiles import DRIVERS, IO, resource_flags
from sriovkit.sim.spec import BarSpec, NetSpec

PCI_DEVICES = "sys/bus/pci/devices"
PCI_DRIVERS = "sys/bus/pci/drivers"
IOMMU_GROUPS = "sys/kernel/iommu_groups"
CLASS_NET = "sys/class/net"
SPEED_NAMES = {1: "2.5 GT/s PCIe", 2: "5.0 GT/s PCIe", 3: "8.0 GT/s PCIe", 4: "16.0 GT/s PCIe"}
ZERO_RES = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"


def modalias(ids: tuple[int, int, int, int], cls: int) -> str:
    """`pci:v...d...sv...sd...bc..sc..i..` as the kernel formats it."""
    v, d, sv, sd = ids
    return (
        f"pci:v{v:08X}d{d:08X}sv{sv:08X}sd{sd:08X}"
        f"bc{cls >> 16:02X}sc{(cls >> 8) & 0xFF:02X}i{cls & 0xFF:02X}"
    )


def uevent(driver: str | None, ids: tuple[int, int, int, int], cls: int, addr: str) -> str:
    """A PCI function's `uevent` text (DRIVER= only while bound)."""
    v, d, sv, sd = ids
    head = f"DRIVER={driver}\n" if driver else ""
    return (
        f"{head}PCI_CLASS={cls:X}\nPCI_ID={v:04X}:{d:04X}\nPCI_SUBSYS_ID={sv:04X}:{sd:04X}\n"
        f"PCI_SLOT_NAME={addr}\nMODALIAS={modalias(ids, cls)}\n"
    )


def res_line(start: int, size: int, flags: int) -> str:
    """One line of the `resource` file."""
    if not size:
        return ZERO_RES
    return f"0x{start:016x} 0x{start + size - 1:016x} 0x{flags:016x}\n"


def resource_text(
    bars: list[BarSpec],
    rom: BarSpec | None,
    iov: list[BarSpec],
    iov_count: int,
    windows: list[tuple[int, int, int] | None] | None = None,
) -> str:
    """The `resource` file: 6 BARs, ROM, 6 SR-IOV BARs, and for bridges 4 window lines."""
    lines = [ZERO_RES] * (17 if windows is not None else 13)
    for bar in bars:
        lines[bar.index] = res_line(bar.start, bar.size, resource_flags(bar.kind))
    if rom is not None:
        lines[6] = res_line(rom.start, rom.size, 0x46200)
    for bar in iov:
        lines[7 + bar.index] = res_line(
            bar.start, bar.size * iov_count, resource_flags(bar.kind) & ~0x40000
        )
    for i, win in enumerate(windows or []):
        if win is not None:
            lines[13 + i] = res_line(win[0], win[1] - win[0] + 1, win[2])
    return "".join(lines)


def cpu_mask(node: int, cpus_per_node: int, nodes: int) -> tuple[str, str]:
    """(local_cpulist, local_cpus) of a NUMA node; node -1 means every CPU."""
    total = cpus_per_node * nodes
    if node < 0:
        lo, hi = 0, total - 1
    else:
        lo, hi = node * cpus_per_node, (node + 1) * cpus_per_node - 1
    mask = ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)
    words = [(mask >> (32 * i)) & 0xFFFFFFFF for i in range((total + 31) // 32)]
    return f"{lo}-{hi}", ",".join(f"{w:08x}" for w in reversed(words))


class Tree:
    """Low-level writer for one simulated root."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def abs(self, rel: str) -> str:
        """Absolute path of root-relative `rel`."""
        return f"{self.root}/{rel}"

    def mkdir(self, rel: str) -> None:
        """mkdir -p."""
        os.makedirs(self.abs(rel), exist_ok=True)

    def file(self, rel: str, text: str | bytes, mode: int = 0o644) -> None:
        """Create or replace one attribute file."""
        data = text.encode() if isinstance(text, str) else text
        fd = os.open(self.abs(rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def read(self, rel: str) -> str | None:
        """Text of an attribute, None when absent."""
        try:
            fd = os.open(self.abs(rel), os.O_RDONLY)
        except OSError:
            return None
        try:
            return os.read(fd, 1 << 16).decode()
        finally:
            os.close(fd)

    def link(self, rel: str, target_rel: str) -> None:
        """Symlink `rel` -> `target_rel`, written relative to the link's directory."""
        target = posixpath.relpath(target_rel, posixpath.dirname(rel))
        path = self.abs(rel)
        try:
            os.symlink(target, path)
        except FileExistsError:
            os.unlink(path)
            os.symlink(target, path)

    def readlink(self, rel: str) -> str | None:
        """Root-relative target of link `rel`, None when it is no link."""
        try:
            target = os.readlink(self.abs(rel))
        except OSError:
            return None
        return posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))

    def unlink(self, rel: str) -> None:
        """Remove a file or link if present."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.abs(rel))

    def rmtree(self, rel: str) -> None:
        """Remove a directory tree (links inside are removed, never followed)."""
        top = self.abs(rel)
        if not os.path.lexists(top):
            return
        for dirpath, dirnames, filenames in os.walk(top, topdown=False):
            for name in filenames:
                os.unlink(f"{dirpath}/{name}")
            for name in dirnames:
                full = f"{dirpath}/{name}"
                if os.path.islink(full):
                    os.unlink(full)
                else:
                    os.rmdir(full)
        os.rmdir(top)

    # -- PCI functions -------------------------------------------------------------------------
    def pci_function(
        self,
        path: str,
        addr: str,
        *,
        ids: tuple[int, int, int, int],
        cls: int,
        revision: int,
        numa: int,
        cpus: tuple[str, str],
        irq: int,
        resource: str,
        config: bytes,
        link: tuple[int, int] | None,
        group: int,
        extra: dict[str, str] | None = None,
    ) -> None:
        """One function directory with its attributes and its bus / IOMMU group links."""
        v, d, sv, sd = ids
        os.mkdir(self.abs(path))
        files = {
            "uevent": uevent(None, ids, cls, addr),
            "vendor": f"0x{v:04x}\n",
            "device": f"0x{d:04x}\n",
            "subsystem_vendor": f"0x{sv:04x}\n",
            "subsystem_device": f"0x{sd:04x}\n",
            "class": f"0x{cls:06x}\n",
            "revision": f"0x{revision:02x}\n",
            "modalias": modalias(ids, cls) + "\n",
            "numa_node": f"{numa}\n",
            "local_cpulist": cpus[0] + "\n",
            "local_cpus": cpus[1] + "\n",
            "irq": f"{irq}\n",
            "resource": resource,
            "enable": "1\n",
            "driver_override": "(null)\n",
            "msi_bus": "1\n",
            "d3cold_allowed": "1\n",
            "broken_parity_status": "0\n",
            "dma_mask_bits": "64\n",
            "consistent_dma_mask_bits": "64\n",
        }
        if link is not None:
            files["current_link_speed"] = files["max_link_speed"] = SPEED_NAMES[link[0]] + "\n"
            files["current_link_width"] = files["max_link_width"] = f"{link[1]}\n"
        if extra:
            files.update(extra)
        for name, text in files.items():
            self.file(f"{path}/{name}", text)
        self.file(f"{path}/config", config)
        for name in ("remove", "rescan", "reset"):
            self.file(f"{path}/{name}", "", 0o200)
        self.link(f"{path}/subsystem", "sys/bus/pci")
        self.link(f"{PCI_DEVICES}/{addr}", path)
        self.join_group(path, addr, group)

    def join_group(self, path: str, addr: str, group: int) -> None:
        """Put the function into IOMMU group `group` (created when new)."""
        gdir = f"{IOMMU_GROUPS}/{group}"
        if not os.path.isdir(self.abs(gdir)):
            os.makedirs(self.abs(f"{gdir}/devices"))
            self.file(f"{gdir}/type", "DMA-FQ\n")
            self.file(f"{gdir}/reserved_regions", "0x00000000fee00000 0x00000000feefffff msi\n")
        self.link(f"{gdir}/devices/{addr}", path)
        self.link(f"{path}/iommu_group", gdir)

    def leave_group(self, addr: str, group: int) -> None:
        """Drop the function from its group; the group disappears with its last device."""
        gdir = f"{IOMMU_GROUPS}/{group}"
        self.unlink(f"{gdir}/devices/{addr}")
        if not os.listdir(self.abs(f"{gdir}/devices")):
            self.rmtree(gdir)

    # -- netdevs -------------------------------------------------------------------------------
    def netdev(
        self, dev_path: str, net: NetSpec, ifindex: int, up: bool, dev_port: int = 0
    ) -> None:
        """`<function>/net/<name>/` with its attributes, and the `sys/class/net` link."""
        ndir = f"{dev_path}/net/{net.name}"
        os.makedirs(self.abs(ndir))
        files = {
            "address": net.mac + "\n",
            "addr_len": "6\n",
            "mtu": "1500\n",
            "operstate": ("up" if up else "down") + "\n",
            "carrier": ("1" if up else "0") + "\n",
            "speed": f"{net.speed if up else -1}\n",
            "duplex": ("full" if up else "unknown") + "\n",
            "ifindex": f"{ifindex}\n",
            "iflink": f"{ifindex}\n",
            "type": "1\n",
            "dev_id": "0x0\n",
            "dev_port": f"{dev_port}\n",
            "broadcast": "ff:ff:ff:ff:ff:ff\n",
            "flags": "0x1003\n" if up else "0x1002\n",
            "tx_queue_len": "1000\n",
            "addr_assign_type": "0\n",
            "link_mode": "0\n",
            "name_assign_type": "4\n",
            "carrier_changes": "2\n" if up else "0\n",
            "uevent": f"INTERFACE={net.name}\nIFINDEX={ifindex}\n",
        }
        if net.phys_port_name:
            files["phys_port_name"] = net.phys_port_name + "\n"
        for name, text in files.items():
            self.file(f"{ndir}/{name}", text)
        # The kernel writes this link as ../../../<function>, not the shorter ../..
        os.symlink(f"../../../{posixpath.basename(dev_path)}", self.abs(f"{ndir}/device"))
        self.link(f"{ndir}/subsystem", "sys/class/net")
        self.link(f"{CLASS_NET}/{net.name}", ndir)

    def drop_netdevs(self, dev_path: str) -> list[str]:
        """Remove every netdev of a function; returns their names."""
        try:
            names = os.listdir(self.abs(f"{dev_path}/net"))
        except FileNotFoundError:
            return []
        for name in names:
            self.unlink(f"{CLASS_NET}/{name}")
        self.rmtree(f"{dev_path}/net")
        return names

    # -- drivers and modules ------------------------------------------------------------------
    def driver_loaded(self, driver: str) -> bool:
        """True when the driver's directory exists (its module is loaded)."""
        return os.path.isdir(self.abs(f"{PCI_DRIVERS}/{driver}"))

    def load_driver(self, driver: str) -> None:
        """Create the driver directory and its module, as `modprobe` would."""
        ddir = f"{PCI_DRIVERS}/{driver}"
        if self.driver_loaded(driver):
            return
        info = DRIVERS[driver]
        os.makedirs(self.abs(ddir))
        self.file(f"{ddir}/uevent", "", 0o200)
        for name in ("bind", "unbind", "new_id", "remove_id"):
            self.file(f"{ddir}/{name}", "", 0o200)
        if info.builtin:
            return
        mdir = f"sys/module/{info.module}"
        self.mkdir(f"{mdir}/drivers")
        self.file(f"{mdir}/initstate", "live\n")
        self.file(f"{mdir}/refcnt", "0\n")
        self.link(f"{mdir}/drivers/pci:{driver}", ddir)
        self.link(f"{ddir}/module", mdir)
        if driver == "vfio-pci":
            # vfio-pci pulls in the vfio core, the one module here that still has a version.
            self.mkdir("sys/module/vfio")
            self.file("sys/module/vfio/version", "0.3\n")
            self.file("sys/module/vfio/initstate", "live\n")
            self.mkdir("dev/vfio")
            self.file("dev/vfio/vfio", "")

    def attach(self, dev_path: str, addr: str, driver: str) -> None:
        """The `driver` links and DRIVER= of a bind."""
        self.link(f"{dev_path}/driver", f"{PCI_DRIVERS}/{driver}")
        self.link(f"{PCI_DRIVERS}/{driver}/{addr}", dev_path)
        self._set_uevent_driver(dev_path, driver)

    def detach(self, dev_path: str, addr: str, driver: str) -> None:
        """Undo `attach`."""
        self.unlink(f"{dev_path}/driver")
        self.unlink(f"{PCI_DRIVERS}/{driver}/{addr}")
        self._set_uevent_driver(dev_path, None)

    def _set_uevent_driver(self, dev_path: str, driver: str | None) -> None:
        text = self.read(f"{dev_path}/uevent") or ""
        lines = [ln for ln in text.splitlines() if not ln.startswith("DRIVER=")]
        if driver:
            lines.insert(0, f"DRIVER={driver}")
        self.file(f"{dev_path}/uevent", "\n".join(lines) + "\n")


def window_lines(
    bridge_windows: tuple[tuple[int, int] | None, ...],
) -> list[tuple[int, int, int] | None]:
    """Bridge window resources (io, mem, prefetchable mem) with their kernel flags."""
    flags = (0x101, 0x200, 0x102201)
    out: list[tuple[int, int, int] | None] = []
    for win, flag in zip(bridge_windows, flags, strict=True):
        out.append(None if win is None else (win[0], win[1], flag))
    out.append(None)
    return out


def is_io(bar: BarSpec) -> bool:
    """True for an I/O port BAR."""
    return bar.kind == IO
