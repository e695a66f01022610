"""Kernel-level hardware vocabulary of the simulator: resource flags, BARs, capability layouts
and the PCI drivers it knows (ids they claim, what they create when they bind).
"""

from __future__ import annotations

from dataclasses import dataclass

# Kernel `struct resource` flag bits, as the `resource` sysfs file prints them.
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_READONLY = 0x4000
IORESOURCE_SIZEALIGN = 0x40000
IORESOURCE_MEM_64 = 0x100000

MEM32 = "mem32"  # 32-bit non-prefetchable memory BAR
MEM64 = "mem64"  # 64-bit non-prefetchable memory BAR
MEM64PF = "mem64pf"  # 64-bit prefetchable memory BAR
IO = "io"

K = 1024
M = 1024 * 1024


def resource_flags(kind: str) -> int:
    """The flags word the kernel shows for a BAR of `kind` (low bits: the BAR's own type bits)."""
    if kind == IO:
        return IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1
    flags = IORESOURCE_MEM | IORESOURCE_SIZEALIGN
    if kind in (MEM64, MEM64PF):
        flags |= IORESOURCE_MEM_64 | 0x4
    if kind == MEM64PF:
        flags |= IORESOURCE_PREFETCH | 0x8
    return flags


@dataclass(frozen=True, slots=True)
class BarDef:
    """One BAR of a function: register index, size in bytes and kind."""

    index: int
    size: int
    kind: str


@dataclass(frozen=True, slots=True)
class CapLayout:
    """Where a function's capabilities sit: (offset, name) for the list at 0x34 and at 0x100."""

    std: tuple[tuple[int, str], ...]
    ext: tuple[tuple[int, str], ...] = ()
    msix: int = 0  # MSI-X table size
    port_type: int = 0  # PCIe device/port type: 0 endpoint, 4 root port, 9 RC integrated
    flr: bool = True


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """A PCI driver: its module, the ids it claims and what it creates when it binds."""

    module: str
    ids: tuple[tuple[int, int], ...] = ()
    classes: tuple[int, ...] = ()  # full 24-bit class codes it claims (nvme, ahci, pcieport)
    netdev: bool = False
    sriov: bool = False  # has sriov_configure (writes to sriov_numvfs work)
    phys_port_name: bool = False  # provides ndo_get_phys_port_name ("p0") in legacy mode
    builtin: bool = False


DRIVERS: dict[str, DriverInfo] = {
    "igb": DriverInfo("igb", ((0x8086, 0x10C9), (0x8086, 0x1533)), netdev=True, sriov=True),
    "igbvf": DriverInfo("igbvf", ((0x8086, 0x10CA),), netdev=True),
    "ixgbe": DriverInfo("ixgbe", ((0x8086, 0x10FB),), netdev=True, sriov=True),
    "ixgbevf": DriverInfo("ixgbevf", ((0x8086, 0x10ED),), netdev=True),
    "i40e": DriverInfo("i40e", ((0x8086, 0x1572),), netdev=True, sriov=True),
    "ice": DriverInfo(
        "ice", ((0x8086, 0x1592), (0x8086, 0x1593), (0x8086, 0x159B)), netdev=True, sriov=True
    ),
    "iavf": DriverInfo("iavf", ((0x8086, 0x154C), (0x8086, 0x1889)), netdev=True),
    "mlx5_core": DriverInfo(
        "mlx5_core",
        ((0x15B3, 0x1017), (0x15B3, 0x1018), (0x15B3, 0x101D), (0x15B3, 0x101E)),
        netdev=True,
        sriov=True,
        phys_port_name=True,
    ),
    "bnxt_en": DriverInfo(
        "bnxt_en",
        ((0x14E4, 0x16D7), (0x14E4, 0x16DC)),
        netdev=True,
        sriov=True,
        phys_port_name=True,
    ),
    "nvme": DriverInfo("nvme", classes=(0x010802,)),
    "ahci": DriverInfo("ahci", classes=(0x010601,)),
    "i801_smbus": DriverInfo("i2c_i801", ((0x8086, 0xA1A3),)),
    "mgag200": DriverInfo("mgag200", ((0x102B, 0x0536),)),
    "pcieport": DriverInfo("pcieport", classes=(0x060400,), builtin=True),
    # vfio-pci claims nothing by id: only driver_override or new_id bring devices to it.
    "vfio-pci": DriverInfo("vfio_pci"),
}
