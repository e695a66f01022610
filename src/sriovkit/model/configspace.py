"""Parse a PCI function's configuration space (the bytes of sysfs `config`).

Capability names are the ones `lspci -vvv` prints, so our `show` output and lspci can be compared
line by line. Only reading: nothing here writes config space.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Standard capability ids (PCI Local Bus spec / PCI-SIG Code and ID Assignment spec).
CAP_NAMES: dict[int, str] = {
    0x01: "Power Management",
    0x02: "AGP",
    0x03: "Vital Product Data",
    0x04: "Slot ID",
    0x05: "MSI",
    0x06: "CompactPCI hot-swap",
    0x07: "PCI-X",
    0x08: "HyperTransport",
    0x09: "Vendor Specific Information",
    0x0A: "Debug port",
    0x0B: "CompactPCI central resource control",
    0x0C: "Hot-plug capable",
    0x0D: "Subsystem",
    0x0E: "AGP3",
    0x0F: "Secure device",
    0x10: "Express",
    0x11: "MSI-X",
    0x12: "SATA HBA",
    0x13: "PCI Advanced Features",
    0x14: "PCI Enhanced Allocation",
    0x15: "Flattening Portal Bridge",
}

# Extended capability ids (PCIe spec), living at 0x100 and above.
EXT_CAP_NAMES: dict[int, str] = {
    0x0001: "Advanced Error Reporting",
    0x0002: "Virtual Channel",
    0x0003: "Device Serial Number",
    0x0004: "Power Budgeting",
    0x0005: "Root Complex Link",
    0x0006: "Root Complex Internal Link",
    0x0007: "Root Complex Event Collector",
    0x0008: "Multi-Function Virtual Channel",
    0x0009: "Virtual Channel",
    0x000A: "Root Complex Register Block",
    0x000B: "Vendor Specific Information",
    0x000C: "Configuration Access Correlation",
    0x000D: "Access Control Services",
    0x000E: "Alternative Routing-ID Interpretation (ARI)",
    0x000F: "Address Translation Service (ATS)",
    0x0010: "Single Root I/O Virtualization (SR-IOV)",
    0x0011: "Multi-Root I/O Virtualization (MR-IOV)",
    0x0012: "Multicast",
    0x0013: "Page Request Interface (PRI)",
    0x0015: "Resizable BAR",
    0x0016: "Dynamic Power Allocation",
    0x0017: "Transaction Processing Hints",
    0x0018: "Latency Tolerance Reporting",
    0x0019: "Secondary PCI Express",
    0x001B: "Process Address Space ID (PASID)",
    0x001C: "LN Requester",
    0x001D: "Downstream Port Containment",
    0x001E: "L1 PM Substates",
    0x001F: "Precision Time Measurement",
    0x0023: "Designated Vendor-Specific",
    0x0024: "VF Resizable BAR",
    0x0025: "Data Link Feature",
    0x0026: "Physical Layer 16.0 GT/s",
    0x0027: "Lane Margining at the Receiver",
    0x002A: "Physical Layer 32.0 GT/s",
}

CAP_ID_EXPRESS = 0x10
EXT_CAP_ID_SRIOV = 0x0010

_PCIE_TYPES = {
    0: "Endpoint",
    1: "Legacy Endpoint",
    4: "Root Port",
    5: "Upstream Port",
    6: "Downstream Port",
    7: "PCI-Express to PCI/PCI-X Bridge",
    8: "PCI/PCI-X to PCI-Express Bridge",
    9: "Root Complex Integrated Endpoint",
    10: "Root Complex Event Collector",
}
_LINK_SPEEDS = {1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"}


@dataclass(frozen=True, slots=True)
class Capability:
    """One entry of the standard or extended capability list."""

    offset: int
    cap_id: int
    name: str
    extended: bool
    version: int | None = None

    @property
    def label(self) -> str:
        """The `[offset vN] Name` head lspci prints."""
        where = f"{self.offset:x}" + (f" v{self.version}" if self.extended else "")
        return f"[{where}] {self.name}"


@dataclass(frozen=True, slots=True)
class SriovCapability:
    """The SR-IOV extended capability register block, in full."""

    offset: int
    capabilities: int
    control: int
    status: int
    initial_vfs: int
    total_vfs: int
    num_vfs: int
    function_dependency_link: int
    first_vf_offset: int
    vf_stride: int
    vf_device_id: int
    supported_page_sizes: int
    system_page_size: int
    vf_bars: tuple[int, ...]
    migration_state: int

    @property
    def vf_enable(self) -> bool:
        """VF Enable bit of SR-IOV Control."""
        return bool(self.control & 0x1)

    @property
    def vf_mse(self) -> bool:
        """VF Memory Space Enable bit of SR-IOV Control."""
        return bool(self.control & 0x8)

    @property
    def ari_hierarchy(self) -> bool:
        """ARI Capable Hierarchy bit of SR-IOV Control."""
        return bool(self.control & 0x10)


@dataclass(frozen=True, slots=True)
class PcieLink:
    """The PCI Express capability's device type and link figures."""

    version: int
    port_type: str
    max_speed: str | None
    max_width: int
    speed: str | None
    width: int


@dataclass(frozen=True, slots=True)
class ConfigSpace:
    """The decoded parts of a configuration space we use."""

    vendor_id: int
    device_id: int
    command: int
    status: int
    revision: int
    class_code: int
    header_type: int
    multifunction: bool
    subsystem_vendor_id: int | None
    subsystem_device_id: int | None
    interrupt_pin: int
    capabilities: tuple[Capability, ...]
    sriov: SriovCapability | None
    pcie: PcieLink | None
    size: int


def _u8(b: bytes, off: int) -> int:
    return b[off]


def _u16(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<H", b, off)[0])


def _u32(b: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", b, off)[0])


def _standard_caps(data: bytes) -> list[Capability]:
    caps: list[Capability] = []
    if not _u16(data, 0x06) & 0x10:  # Status: Capabilities List bit
        return caps
    ptr = _u8(data, 0x34) & 0xFC
    seen: set[int] = set()
    # A broken or hostile list can loop; 48 is the most that fits in 256 bytes.
    while ptr and ptr not in seen and ptr + 2 <= min(len(data), 256) and len(seen) < 48:
        seen.add(ptr)
        cap_id = _u8(data, ptr)
        caps.append(
            Capability(ptr, cap_id, CAP_NAMES.get(cap_id, f"Capability ID {cap_id:#x}"), False)
        )
        ptr = _u8(data, ptr + 1) & 0xFC
    return caps


def _extended_caps(data: bytes) -> list[Capability]:
    caps: list[Capability] = []
    if len(data) < 0x104:
        return caps  # only root sees past 256 bytes (or 64 on a real host for non-root)
    ptr = 0x100
    seen: set[int] = set()
    while ptr and ptr not in seen and ptr + 4 <= len(data) and len(seen) < 960:
        seen.add(ptr)
        header = _u32(data, ptr)
        if header in (0, 0xFFFFFFFF):
            break
        cap_id, version, nxt = header & 0xFFFF, (header >> 16) & 0xF, (header >> 20) & 0xFFC
        name = EXT_CAP_NAMES.get(cap_id, f"Extended Capability ID {cap_id:#x}")
        caps.append(Capability(ptr, cap_id, name, True, version))
        ptr = nxt if nxt >= 0x100 else 0
    return caps


def _sriov(data: bytes, off: int) -> SriovCapability | None:
    if off + 0x40 > len(data):
        return None
    return SriovCapability(
        offset=off,
        capabilities=_u32(data, off + 0x04),
        control=_u16(data, off + 0x08),
        status=_u16(data, off + 0x0A),
        initial_vfs=_u16(data, off + 0x0C),
        total_vfs=_u16(data, off + 0x0E),
        num_vfs=_u16(data, off + 0x10),
        function_dependency_link=_u8(data, off + 0x12),
        first_vf_offset=_u16(data, off + 0x14),
        vf_stride=_u16(data, off + 0x16),
        vf_device_id=_u16(data, off + 0x1A),
        supported_page_sizes=_u32(data, off + 0x1C),
        system_page_size=_u32(data, off + 0x20),
        vf_bars=tuple(_u32(data, off + 0x24 + 4 * i) for i in range(6)),
        migration_state=_u32(data, off + 0x3C),
    )


def _pcie(data: bytes, off: int) -> PcieLink | None:
    if off + 0x14 > len(data):
        return None
    flags = _u16(data, off + 0x02)
    linkcap = _u32(data, off + 0x0C)
    linksta = _u16(data, off + 0x12)
    return PcieLink(
        version=flags & 0xF,
        port_type=_PCIE_TYPES.get((flags >> 4) & 0xF, f"Unknown type {(flags >> 4) & 0xF}"),
        max_speed=_LINK_SPEEDS.get(linkcap & 0xF),
        max_width=(linkcap >> 4) & 0x3F,
        speed=_LINK_SPEEDS.get(linksta & 0xF),
        width=(linksta >> 4) & 0x3F,
    )


def parse_config(data: bytes) -> ConfigSpace:
    """Decode header, capability lists, the SR-IOV block and the PCIe link of `data`.

    `data` may be 64, 256 or 4096 bytes long: the kernel hands non-root readers only the first 64.
    """
    if len(data) < 64:
        raise ValueError(f"config space is {len(data)} bytes, the header alone needs 64")
    header_type = _u8(data, 0x0E)
    type0 = header_type & 0x7F == 0
    caps = _standard_caps(data) if len(data) > 0x40 else []
    ext = _extended_caps(data)
    sriov_cap = next((c for c in ext if c.cap_id == EXT_CAP_ID_SRIOV), None)
    pcie_cap = next((c for c in caps if c.cap_id == CAP_ID_EXPRESS), None)
    return ConfigSpace(
        vendor_id=_u16(data, 0x00),
        device_id=_u16(data, 0x02),
        command=_u16(data, 0x04),
        status=_u16(data, 0x06),
        revision=_u8(data, 0x08),
        class_code=_u32(data, 0x08) >> 8,
        header_type=header_type & 0x7F,
        multifunction=bool(header_type & 0x80),
        subsystem_vendor_id=_u16(data, 0x2C) if type0 else None,
        subsystem_device_id=_u16(data, 0x2E) if type0 else None,
        interrupt_pin=_u8(data, 0x3D),
        capabilities=tuple(caps + ext),
        sriov=_sriov(data, sriov_cap.offset) if sriov_cap else None,
        pcie=_pcie(data, pcie_cap.offset) if pcie_cap else None,
        size=len(data),
    )
