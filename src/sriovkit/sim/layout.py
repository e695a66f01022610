"""The building blocks of a simulated host's layout: root buses, address windows, functions.

Used by `sim.plan.Planner`; kept apart so the planner itself stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sriovkit.sim.profiles import BarDef, CardProfile
from sriovkit.sim.spec import RootBus

# (root bus, NUMA node, last bus of its range)
ROOT_BUSES = (
    (0x00, 0, 0x16),
    (0x17, 0, 0x39),
    (0x3A, 0, 0x5C),
    (0x5D, 0, 0x7F),
    (0x85, 1, 0xAD),
    (0xAE, 1, 0xD6),
    (0xD7, 1, 0xFF),
)
CARD_STACKS = (0x3A, 0xAE, 0x5D, 0xD7, 0x17, 0x85)
ROOT_PORT_IDS = (0x2030, 0x2031, 0x2032, 0x2033)
MMIO32_BASE, MMIO32_STEP = 0x90000000, 0x0D800000
MMIO64_BASE, MMIO64_STEP = 0x38000000000, 0x1000000000
CPUS_PER_NODE = 16
MB = 1 << 20


def align(value: int, align: int) -> int:
    return (value + align - 1) // align * align


@dataclass(slots=True)
class Root:
    bus: int
    node: int
    last_bus: int
    index: int
    next_bus: int = 0
    next_port: int = 0
    io: int = 0
    mem: int = 0
    mem64: int = 0
    spec: RootBus | None = None

    def __post_init__(self) -> None:
        self.next_bus = self.bus + 1
        self.io = 0x1000 if self.index == 0 else 0x4000 + (self.index - 1) * 0x2000
        self.mem = MMIO32_BASE + self.index * MMIO32_STEP
        self.mem64 = MMIO64_BASE + self.index * MMIO64_STEP
        io_end = 0x3FFF if self.index == 0 else self.io + 0x1FFF
        self.spec = RootBus(
            self.bus,
            self.node,
            (0 if self.index == 0 else self.io, io_end),
            (self.mem, self.mem + MMIO32_STEP - 1),
            (self.mem64, self.mem64 + MMIO64_STEP - 1),
        )


@dataclass(slots=True)
class Fn:
    """A function to place behind a root port (or on a root bus)."""

    fn: int
    vendor: int
    device: int
    subsys: tuple[int, int]
    revision: int
    cls: int
    driver: str | None
    caps: str
    pcie: bool
    link: tuple[int, int]
    bars: tuple[BarDef, ...]
    rom_size: int = 0
    vf_bars: tuple[BarDef, ...] = ()
    vf_total: int = 0
    slot: int = 0
    multifunction: bool = False
    profile: CardProfile | None = None
    port: int = 0
    assigned: dict[tuple[str, int], int] = field(default_factory=dict)


def window(items: list[tuple[Fn, str, int, int]], start: int, gran: int) -> tuple[int, int]:
    """Place (fn, key, index, size) items naturally aligned from `start`; return the window."""
    if not items:
        return start, start
    items.sort(key=lambda it: -it[3])
    base = align(start, max(gran, items[0][3]))
    cursor = base
    for fn, key, index, size in items:
        cursor = align(cursor, size)
        fn.assigned[(key, index)] = cursor
        cursor += size
    return base, align(cursor, gran)


__all__ = [
    "CARD_STACKS",
    "CPUS_PER_NODE",
    "MB",
    "ROOT_BUSES",
    "ROOT_PORT_IDS",
    "Fn",
    "Root",
    "align",
    "window",
]
