"""Text the kernel writes in sysfs: `uevent` files and device paths.

Pure helpers of the inventory's hot path (thousands of VFs): no OS access here.
"""

from __future__ import annotations

from sriovkit.model.modalias import format_modalias
from sriovkit.model.pci import PciAddress


def ids_from_uevent(
    pci_id: str, subsys_id: str, pci_class: str, modalias: str
) -> tuple[int, int, int, int, int, str]:
    """Vendor, device, subsystem ids, class code and modalias from `uevent` values."""
    vendor, _, device = pci_id.partition(":")
    sub_vendor, _, sub_device = subsys_id.partition(":")
    vid, did, svid, sdid = (
        int(vendor, 16),
        int(device, 16),
        int(sub_vendor, 16),
        int(sub_device, 16),
    )
    class_code = int(pci_class, 16)
    return (
        vid,
        did,
        svid,
        sdid,
        class_code,
        modalias or format_modalias(vid, did, svid, sdid, class_code),
    )


def parse_uevent(text: str) -> dict[str, str]:
    """`KEY=value` lines of a uevent file as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def is_pci_name(name: str) -> bool:
    """Cheap shape test for `DDDD:BB:SS.F` before any parsing."""
    return len(name) == 12 and name[4] == ":" and name[7] == ":" and name[10] == "."


def pci_name_in_path(target: str) -> str | None:
    """The last PCI address among the components of a device path, as text."""
    # Usual shape `.../<pci>/net/<ifname>`: checked without splitting the whole path.
    tail = target.rsplit("/", 3)
    if len(tail) == 4 and tail[2] == "net" and is_pci_name(tail[1]):
        return tail[1]
    for part in reversed(target.split("/")):
        if is_pci_name(part) and PciAddress.try_parse(part) is not None:
            return part
    return None


__all__ = ["ids_from_uevent", "is_pci_name", "parse_uevent", "pci_name_in_path"]
