"""Decode a PCI modalias (`pci:v...d...sv...sd...bc..sc..i..`), the key modules match against."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sriovkit.errors import InvalidInput

_MODALIAS = re.compile(
    r"^pci:v(?P<v>[0-9A-F]{8})d(?P<d>[0-9A-F]{8})sv(?P<sv>[0-9A-F]{8})sd(?P<sd>[0-9A-F]{8})"
    r"bc(?P<bc>[0-9A-F]{2})sc(?P<sc>[0-9A-F]{2})i(?P<i>[0-9A-F]{2})$"
)


@dataclass(frozen=True, slots=True)
class Modalias:
    """The fields of a PCI modalias."""

    vendor_id: int
    device_id: int
    subsystem_vendor_id: int
    subsystem_device_id: int
    base_class: int
    sub_class: int
    prog_if: int

    @property
    def class_code(self) -> int:
        """The 24-bit class code."""
        return self.base_class << 16 | self.sub_class << 8 | self.prog_if

    def __str__(self) -> str:
        return format_modalias(
            self.vendor_id,
            self.device_id,
            self.subsystem_vendor_id,
            self.subsystem_device_id,
            self.class_code,
        )


def parse_modalias(text: str) -> Modalias:
    """Parse the kernel's PCI modalias string (upper-case hex, as the kernel writes it)."""
    m = _MODALIAS.match(text.strip())
    if m is None:
        raise InvalidInput("modalias", f"{text.strip()!r} is not a PCI modalias")
    return Modalias(*(int(m[k], 16) for k in ("v", "d", "sv", "sd", "bc", "sc", "i")))


def format_modalias(vendor: int, device: int, sub_vendor: int, sub_device: int, cls: int) -> str:
    """The modalias the kernel would write for these ids (drivers/pci/pci-sysfs.c format)."""
    return (
        f"pci:v{vendor:08X}d{device:08X}sv{sub_vendor:08X}sd{sub_device:08X}"
        f"bc{cls >> 16 & 0xFF:02X}sc{cls >> 8 & 0xFF:02X}i{cls & 0xFF:02X}"
    )
