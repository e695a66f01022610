"""Binary PCI configuration space of simulated functions, laid out as the PCI/PCIe specs define it.

Only what a reader (our own parser, `lspci -vvv`) looks at is filled in: type-0/type-1 headers,
the capability list at 0x34 (PM, MSI, MSI-X, PCI Express) and the extended capabilities at 0x100
(AER, DSN, ARI, ACS, SR-IOV, Secondary PCIe, TPH).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sriovkit.sim.profiles import IO, MEM64, MEM64PF, BarDef, CapLayout

SRIOV_NUM_VFS = 0x10  # offset of NumVFs inside the SR-IOV capability
SRIOV_CTRL = 0x08
EXT_IDS = {
    "aer": 0x01,
    "dsn": 0x03,
    "acs": 0x0D,
    "ari": 0x0E,
    "sriov": 0x10,
    "tph": 0x17,
    "sec": 0x19,
}
STD_IDS = {"pm": 0x01, "msi": 0x05, "exp": 0x10, "msix": 0x11}


@dataclass(frozen=True, slots=True)
class SriovRegs:
    """What goes into a PF's SR-IOV capability."""

    device_total: int
    num_vfs: int
    offset: int
    stride: int
    vf_device: int
    function_link: int
    page_sizes: int
    vf_bars: tuple[tuple[BarDef, int], ...]  # (definition, base address of the VF BAR array)
    ari_hierarchy: bool


@dataclass(frozen=True, slots=True)
class BridgeRegs:
    """Bus numbers and forwarding windows of a type-1 (bridge) header."""

    primary: int
    secondary: int
    subordinate: int
    io: tuple[int, int] | None
    mem: tuple[int, int] | None
    pref: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class ConfigInput:
    """Everything a function's configuration space is computed from."""

    vendor: int
    device: int
    subsys: tuple[int, int]
    revision: int
    cls: int
    caps: CapLayout
    pcie: bool
    link: tuple[int, int]
    bars: tuple[tuple[BarDef, int], ...] = ()  # (definition, assigned address)
    rom: tuple[int, int] | None = None  # (size, address)
    multifunction: bool = False
    irq_line: int = 0
    irq_pin: int = 1
    bound: bool = True
    bridge: BridgeRegs | None = None
    sriov: SriovRegs | None = None
    serial: int = 0
    ari_next: int = 0
    port_number: int = 0
    is_vf: bool = False


def _bar_words(bar: BarDef, addr: int) -> list[int]:
    if bar.kind == IO:
        return [addr | 0x1]
    if bar.kind in (MEM64, MEM64PF):
        low = (addr & 0xFFFFFFF0) | 0x4 | (0x8 if bar.kind == MEM64PF else 0)
        return [low, addr >> 32]
    return [addr & 0xFFFFFFF0]


def _pack(buf: bytearray, fmt: str, off: int, *vals: int) -> None:
    struct.pack_into("<" + fmt, buf, off, *vals)


def _header0(buf: bytearray, ci: ConfigInput) -> None:
    for bar, addr in ci.bars:
        for i, word in enumerate(_bar_words(bar, addr)):
            _pack(buf, "I", 0x10 + 4 * (bar.index + i), word)
    _pack(buf, "HH", 0x2C, *ci.subsys)
    if ci.rom is not None:
        _pack(buf, "I", 0x30, ci.rom[1] & 0xFFFFF800)


def _header1(buf: bytearray, br: BridgeRegs) -> None:
    _pack(buf, "BBBB", 0x18, br.primary, br.secondary, br.subordinate, 0)
    if br.io is not None:
        _pack(buf, "BB", 0x1C, ((br.io[0] >> 8) & 0xF0) | 1, ((br.io[1] >> 8) & 0xF0) | 1)
    else:
        _pack(buf, "BB", 0x1C, 0xF1, 0x01)
    if br.mem is not None:
        _pack(buf, "HH", 0x20, (br.mem[0] >> 16) & 0xFFF0, (br.mem[1] >> 16) & 0xFFF0)
    else:
        _pack(buf, "HH", 0x20, 0xFFF0, 0)
    if br.pref is not None:
        lo, hi = br.pref
        _pack(buf, "HH", 0x24, ((lo >> 16) & 0xFFF0) | 1, ((hi >> 16) & 0xFFF0) | 1)
        _pack(buf, "II", 0x28, lo >> 32, hi >> 32)
    else:
        _pack(buf, "HH", 0x24, 0xFFF1, 0x0001)
    _pack(buf, "H", 0x3E, 0x0012)  # bridge control: SERR forwarding, ISA


def _std_cap(buf: bytearray, off: int, name: str, nxt: int, ci: ConfigInput) -> None:
    _pack(buf, "BB", off, STD_IDS[name], nxt)
    if name == "pm":
        _pack(buf, "HH", off + 2, 0xC803, 0x0008)
    elif name == "msi":
        _pack(buf, "H", off + 2, 0x0186)
    elif name == "msix":
        table_bar, table_off, pba_off = _msix_location(ci)
        ctrl = (max(ci.caps.msix, 1) - 1) | (0x8000 if ci.bound else 0)
        _pack(buf, "HII", off + 2, ctrl, table_off | table_bar, pba_off | table_bar)
    elif name == "exp":
        _express(buf, off, ci)


def _msix_location(ci: ConfigInput) -> tuple[int, int, int]:
    indexes = [b.index for b, _ in ci.bars] if not ci.is_vf else [3, 0]
    if 3 in indexes:
        return 3, 0, 0x2000
    return (indexes[0] if indexes else 0), 0x2000, 0x3000


def _express(buf: bytearray, off: int, ci: ConfigInput) -> None:
    gen, width = ci.link
    caps = ci.caps
    root = caps.port_type == 4
    _pack(buf, "H", off + 2, 0x0002 | caps.port_type << 4 | (0x0100 if root else 0))
    devcap = 0x2 | 0x20 | (7 << 6) | (7 << 9) | 0x8000 | (0x10000000 if caps.flr else 0)
    _pack(buf, "IHH", off + 4, devcap, 0x2930 if not root else 0x0027, 0)
    lnkcap = gen | width << 4 | 3 << 10 | 4 << 12 | 6 << 15 | ci.port_number << 24
    if root:
        lnkcap |= 0x00300000  # DLActive and link bandwidth reporting
    lnksta = gen | width << 4 | 0x1000 | (0x2000 if root else 0)
    _pack(buf, "IHH", off + 0x0C, lnkcap, 0x0040, lnksta)
    if root:
        _pack(buf, "I", off + 0x14, ci.port_number << 19 | 0x60)
        _pack(buf, "H", off + 0x1A, 0x0040)  # presence detect
    devcap2 = 0x1F | (0x820 if root else 0)  # CTO ranges + disable; ARI forwarding, LTR
    _pack(buf, "II", off + 0x24, devcap2, 0x20 if root else 0)
    _pack(buf, "IHH", off + 0x2C, ((1 << gen) - 1) << 1, gen, 0x1E if gen >= 3 else 0)


def _ext_cap(buf: bytearray, off: int, name: str, nxt: int, ci: ConfigInput) -> None:
    version = 2 if name == "aer" and ci.caps.port_type == 4 else 1
    _pack(buf, "I", off, EXT_IDS[name] | version << 16 | nxt << 20)
    if name == "aer":
        _pack(buf, "IIIIII", off + 4, 0, 0, 0x00462030, 0, 0x2000, 0xA0)
    elif name == "dsn":
        _pack(buf, "Q", off + 4, ci.serial)
    elif name == "ari":
        _pack(buf, "HH", off + 4, ci.ari_next << 8, 0)
    elif name == "acs":
        _pack(buf, "HH", off + 4, *((0x007F, 0x001D) if ci.caps.port_type == 4 else (0, 0)))
    elif name == "tph":
        _pack(buf, "I", off + 4, 0x5)
    elif name == "sriov" and ci.sriov is not None:
        _sriov(buf, off, ci.sriov)


def _sriov(buf: bytearray, off: int, sr: SriovRegs) -> None:
    ctrl = (0x10 if sr.ari_hierarchy else 0) | (0x9 if sr.num_vfs else 0)
    _pack(buf, "IHH", off + 4, 0, ctrl, 0)
    _pack(buf, "HHHB", off + 0x0C, sr.device_total, sr.device_total, sr.num_vfs, sr.function_link)
    _pack(buf, "HHHH", off + 0x14, sr.offset, sr.stride, 0, sr.vf_device)
    _pack(buf, "II", off + 0x1C, sr.page_sizes, 1)
    for bar, base in sr.vf_bars:
        for i, word in enumerate(_bar_words(bar, base)):
            _pack(buf, "I", off + 0x24 + 4 * (bar.index + i), word)


def build_config(ci: ConfigInput) -> bytes:
    """The configuration space bytes: 4096 for PCIe functions, 256 for conventional PCI ones."""
    buf = bytearray(4096 if ci.pcie else 256)
    has_io = any(b.kind == IO for b, _ in ci.bars)
    command = 0
    if ci.bound and not ci.is_vf:
        command = 0x0006 | (0x1 if has_io else 0) | (0x400 if ci.caps.msix else 0)
    elif ci.is_vf and ci.bound:
        command = 0x0004
    status = 0x0010 if ci.caps.std else 0
    header = (1 if ci.bridge else 0) | (0x80 if ci.multifunction else 0)
    _pack(buf, "HHHH", 0, ci.vendor, ci.device, command, status)
    _pack(buf, "I", 0x08, ci.revision | ci.cls << 8)
    _pack(buf, "BBBB", 0x0C, 0x10, 0, header, 0)
    if ci.bridge is not None:
        _header1(buf, ci.bridge)
    elif not ci.is_vf:
        _header0(buf, ci)
    else:
        _pack(buf, "HH", 0x2C, *ci.subsys)  # VF BARs read as zero: lspci marks them [virtual]
    std = [c for c in ci.caps.std if c[1] in STD_IDS and (ci.pcie or c[1] != "exp")]
    if std:
        _pack(buf, "B", 0x34, std[0][0])
    for i, (off, name) in enumerate(std):
        _std_cap(buf, off, name, std[i + 1][0] if i + 1 < len(std) else 0, ci)
    if not ci.is_vf:
        _pack(buf, "BB", 0x3C, ci.irq_line, ci.irq_pin)
    ext = list(ci.caps.ext) if ci.pcie else []
    for i, (off, name) in enumerate(ext):
        _ext_cap(buf, off, name, ext[i + 1][0] if i + 1 < len(ext) else 0, ci)
    return bytes(buf)


def serial_from_mac(mac: str) -> int:
    """Intel/Mellanox style Device Serial Number: the MAC with ff-ff in the middle (EUI-64)."""
    b = bytes.fromhex(mac.replace(":", ""))
    return int.from_bytes(b[:3] + b"\xff\xff" + b[3:], "big")


def patch_num_vfs(config: bytes, cap_offset: int, num_vfs: int, ari_hierarchy: bool) -> bytes:
    """The PF's config space with NumVFs and VF Enable/MSE updated, as sriov_numvfs does."""
    buf = bytearray(config)
    _pack(buf, "H", cap_offset + SRIOV_NUM_VFS, num_vfs)
    ctrl = (0x10 if ari_hierarchy else 0) | (0x9 if num_vfs else 0)
    _pack(buf, "H", cap_offset + SRIOV_CTRL, ctrl)
    return bytes(buf)
