"""`/proc/iomem` of a simulated host, nested the way the kernel's resource tree nests it.

Root bus windows ("PCI Bus 0000:3a") hold the root ports' forwarding windows ("PCI Bus 0000:3b"),
which hold the functions' BARs (named by address); a region a driver claimed carries the driver's
name one level deeper. A PF's SR-IOV BAR array holds its VFs' BARs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sriovkit.sim.profiles import IO, MEM64PF
from sriovkit.sim.spec import BarSpec, HostSpec

# Drivers that do not request their BARs at bind time (vfio-pci only does so when a user opens
# the device; pcieport owns no BARs of its own).
NON_CLAIMING = frozenset({"vfio-pci", "pcieport"})

_STATIC_LOW = (
    (0x0, 0xFFF, "Reserved"),
    (0x1000, 0x9FFFF, "System RAM"),
    (0xA0000, 0xBFFFF, "PCI Bus 0000:00"),
    (0xC0000, 0xC7FFF, "Video ROM"),
    (0xF0000, 0xFFFFF, "System ROM"),
    (0x100000, 0x6FFFFFFF, "System RAM"),
    (0x70000000, 0x7FFFFFFF, "Reserved"),
)
_STATIC_HIGH = (
    (0xFD000000, 0xFE7FFFFF, "Reserved"),
    (0xFEC00000, 0xFEC003FF, "IOAPIC 0"),
    (0xFED00000, 0xFED003FF, "HPET 0"),
    (0xFEE00000, 0xFEE00FFF, "Local APIC"),
    (0xFF000000, 0xFFFFFFFF, "Reserved"),
    (0x100000000, 0x407FFFFFFF, "System RAM"),
)


@dataclass(slots=True)
class _Node:
    start: int
    end: int
    name: str
    children: list[_Node] = field(default_factory=list)

    def add(self, node: _Node) -> _Node:
        self.children.append(node)
        return node

    def render(self, depth: int, out: list[str]) -> None:
        out.append(f"{'  ' * depth}{self.start:08x}-{self.end:08x} : {self.name}")
        for child in sorted(self.children, key=lambda n: n.start):
            child.render(depth + 1, out)


def _device_bars(
    parent: _Node, addr: str, bars: list[BarSpec], rom: BarSpec | None, driver: str | None
) -> None:
    for bar in bars:
        if bar.kind == IO:
            continue
        node = parent.add(_Node(bar.start, bar.start + bar.size - 1, addr))
        if driver and driver not in NON_CLAIMING:
            node.add(_Node(bar.start, bar.start + bar.size - 1, driver))
    if rom is not None:
        parent.add(_Node(rom.start, rom.start + rom.size - 1, addr))


def render_iomem(
    spec: HostSpec, num_vfs: Callable[[str], int], driver_of: Callable[[str], str | None]
) -> str:
    """The iomem text for the host in its current state (live VFs, bound drivers)."""
    top = [_Node(s, e, n) for s, e, n in _STATIC_LOW]
    mmcfg = _Node(0x80000000, 0x8FFFFFFF, "PCI MMCONFIG 0000 [bus 00-ff]")
    mmcfg.add(_Node(0x80000000, 0x8FFFFFFF, "Reserved"))
    top.append(mmcfg)
    wins: dict[int, tuple[_Node, _Node]] = {}
    for rb in spec.root_buses:
        name = f"PCI Bus 0000:{rb.bus:02x}"
        wins[rb.bus] = (_Node(rb.mem[0], rb.mem[1], name), _Node(rb.mem64[0], rb.mem64[1], name))
    pfs = {pf.address: pf for pf in spec.pfs}
    bridges: dict[str, tuple[_Node | None, _Node | None]] = {}
    for dev in spec.devices:
        root_bus = int(dev.path.split("/")[2][len("pci0000:") :], 16)
        mem_root, pref_root = wins[root_bus]
        if dev.bridge is not None:
            sec = f"PCI Bus 0000:{dev.bridge.secondary:02x}"
            mem = mem_root.add(_Node(*dev.bridge.mem, sec)) if dev.bridge.mem else None
            pref = pref_root.add(_Node(*dev.bridge.pref, sec)) if dev.bridge.pref else None
            bridges[dev.path] = (mem, pref)
            continue
        parent_path = dev.path.rsplit("/", 1)[0]
        mem_p, pref_p = bridges.get(parent_path, (mem_root, pref_root))
        drv = driver_of(dev.address)
        for bar in dev.bars:
            target = pref_p if bar.kind == MEM64PF else mem_p
            if target is not None:
                _device_bars(target, dev.address, [bar], None, drv)
        if dev.rom is not None and mem_p is not None:
            _device_bars(mem_p, dev.address, [], dev.rom, None)
        pf = pfs.get(dev.address)
        if pf is None:
            continue
        count = num_vfs(pf.address)
        for vbar in pf.vf_bars:
            target = pref_p if vbar.kind == MEM64PF else mem_p
            if target is None:
                continue
            end = vbar.start + vbar.size * pf.device_total - 1
            iov = target.add(_Node(vbar.start, end, dev.address))
            for i in range(count):
                vf = str(pf.vf_address(i))
                start = vbar.start + i * vbar.size
                _device_bars(
                    iov, vf, [BarSpec(vbar.index, vbar.size, vbar.kind, start)], None, driver_of(vf)
                )
    for mem_root, pref_root in wins.values():
        top.extend((mem_root, pref_root))
    top.extend(_Node(s, e, n) for s, e, n in _STATIC_HIGH)
    out: list[str] = []
    for node in sorted(top, key=lambda n: n.start):
        node.render(0, out)
    return "\n".join(out) + "\n"
