"""The non-SR-IOV functions every simulated host carries: host bridge, root ports, PCH functions
(SATA, LPC, PMC, SMBus), an onboard I210, a Matrox VGA and an NVMe drive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sriovkit.sim.hw import IO, MEM32, MEM64, BarDef, CapLayout, K, M

_INTEL_STD = ((0x40, "pm"), (0x50, "msi"), (0x70, "msix"), (0xA0, "exp"))


def _intel_pf(ext: tuple[tuple[int, str], ...], msix: int) -> CapLayout:
    return CapLayout(_INTEL_STD, ext, msix=msix)


@dataclass(frozen=True, slots=True)
class ExtraDevice:
    """A non-SR-IOV function every simulated host carries (chipset, GPU, storage, a plain NIC)."""

    role: str
    vendor: int
    device: int
    subsys: tuple[int, int]
    revision: int
    cls: int
    driver: str | None
    bars: tuple[BarDef, ...]
    caps: CapLayout
    pcie: bool = True
    link: tuple[int, int] = (3, 4)
    rom_size: int = 0
    oui: str | None = None
    speed_mbps: int = 0
    extra_files: dict[str, str] = field(default_factory=dict)


ROOT_PORT_CAPS = CapLayout(
    ((0x60, "msi"), (0x90, "exp"), (0xE0, "pm")),
    ((0x110, "acs"), (0x148, "aer")),
    port_type=4,
    flr=False,
)
HOST_BRIDGE = ExtraDevice(
    "host bridge",
    0x8086,
    0x2020,
    (0x15D9, 0x095D),
    0x04,
    0x060000,
    None,
    (),
    CapLayout(((0x90, "exp"), (0xE0, "pm")), (), port_type=9, flr=False),
)
# PCH functions on bus 0 (conventional PCI view: no PCIe capability, 256-byte config space).
PCH_FUNCTIONS: dict[tuple[int, int], ExtraDevice] = {
    (0x17, 0): ExtraDevice(
        "sata",
        0x8086,
        0xA182,
        (0x15D9, 0x095D),
        0x09,
        0x010601,
        "ahci",
        (
            BarDef(0, 8 * K, MEM32),
            BarDef(1, 256, MEM32),
            BarDef(2, 8, IO),
            BarDef(3, 4, IO),
            BarDef(4, 32, IO),
            BarDef(5, 2 * K, MEM32),
        ),
        CapLayout(((0x80, "msi"), (0x70, "pm")), flr=False),
        pcie=False,
    ),
    (0x1F, 0): ExtraDevice(
        "lpc",
        0x8086,
        0xA1C1,
        (0x15D9, 0x095D),
        0x09,
        0x060100,
        None,
        (),
        CapLayout((), flr=False),
        pcie=False,
    ),
    (0x1F, 2): ExtraDevice(
        "pmc",
        0x8086,
        0xA1A1,
        (0x15D9, 0x095D),
        0x09,
        0x058000,
        None,
        (BarDef(0, 16 * K, MEM32),),
        CapLayout((), flr=False),
        pcie=False,
    ),
    (0x1F, 4): ExtraDevice(
        "smbus",
        0x8086,
        0xA1A3,
        (0x15D9, 0x095D),
        0x09,
        0x0C0500,
        "i801_smbus",
        (BarDef(0, 256, MEM64), BarDef(4, 32, IO)),
        CapLayout((), flr=False),
        pcie=False,
    ),
}
# Devices behind PCH root ports (root port device id, device).
PCH_SLOTS: tuple[tuple[int, int, ExtraDevice], ...] = (
    (
        0x1C,
        0xA190,
        ExtraDevice(
            "nic",
            0x8086,
            0x1533,
            (0x15D9, 0x1533),
            0x03,
            0x020000,
            "igb",
            (BarDef(0, 512 * K, MEM32), BarDef(2, 32, IO), BarDef(3, 16 * K, MEM32)),
            _intel_pf(((0x100, "aer"), (0x140, "dsn"), (0x1A0, "tph")), 5),
            link=(1, 1),
            oui="ac:1f:6b",
            speed_mbps=1000,
        ),
    ),
    (
        0x1D,
        0xA198,
        ExtraDevice(
            "vga",
            0x102B,
            0x0536,
            (0x15D9, 0x0536),
            0x04,
            0x030000,
            "mgag200",
            (BarDef(0, 16 * M, MEM32), BarDef(1, 16 * K, MEM32), BarDef(2, 8 * M, MEM32)),
            CapLayout(((0xDC, "pm"),), flr=False),
            pcie=False,
        ),
    ),
)
NVME = ExtraDevice(
    "nvme",
    0x144D,
    0xA808,
    (0x144D, 0xA801),
    0x00,
    0x010802,
    "nvme",
    (BarDef(0, 16 * K, MEM64),),
    CapLayout(
        ((0x40, "pm"), (0x50, "msi"), (0x70, "exp"), (0xB0, "msix")),
        ((0x100, "aer"), (0x148, "dsn"), (0x158, "sec")),
        msix=33,
    ),
    link=(3, 4),
)
