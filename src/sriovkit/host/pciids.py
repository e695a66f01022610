"""Names from the pci.ids database (Debian package `pci.ids`), looked up lazily.

Parsing all ~40k lines of pci.ids costs tens of milliseconds in Python; the inventory needs a
handful of vendors. So the file is read once as text and each lookup searches only the block
of the vendor (or class) it needs. Results are cached per instance.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from sriovkit.model.device import Names

DEFAULT_PATHS = (
    Path("/usr/share/misc/pci.ids"),
    Path("/usr/share/hwdata/pci.ids"),
    Path("/usr/share/pci.ids"),
)
# A top-level line starts a vendor ("8086  Intel") or a class ("C 02  Network controller").
_TOP = re.compile(r"\n(?=[0-9a-fA-F]{4}  |C [0-9a-fA-F]{2}  )")


class PciIds:
    """Name lookups against one pci.ids file; every lookup returns None when it has no entry."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else find_pci_ids()
        self._text: str | None = None
        self.missing_reason: str | None = None
        if self.path is None:
            self.missing_reason = (
                "pci.ids not found (looked in "
                + ", ".join(str(p) for p in DEFAULT_PATHS)
                + "); install Debian package pci.ids or set SRIOVKIT_PCI_IDS"
            )
        self._block = lru_cache(maxsize=256)(self._block_uncached)
        self._device_block = lru_cache(maxsize=1024)(self._device_block_uncached)

    @property
    def available(self) -> bool:
        """True when a database was found and could be read."""
        return self._load() != ""

    def _load(self) -> str:
        if self._text is None:
            self._text = ""
            if self.path is not None:
                try:
                    self._text = "\n" + self.path.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    self.missing_reason = f"cannot read {self.path}: {exc.strerror}"
        return self._text

    def _block_uncached(self, head: str) -> str | None:
        text = self._load()
        # Classes live at the end of the file: searching backwards finds them without scanning
        # the ~1.3 MB of vendors first.
        start = text.rfind("\n" + head) if head.startswith("C ") else text.find("\n" + head)
        if start < 0:
            return None
        m = _TOP.search(text, start + 1)
        return text[start + 1 : m.start() if m else len(text)]

    @staticmethod
    def _first_line_name(block: str) -> str:
        return block.split("\n", 1)[0].split("  ", 1)[1].strip()

    @staticmethod
    def _child(block: str, prefix: str) -> str | None:
        i = block.find("\n" + prefix)
        if i < 0:
            return None
        line = block[i + 1 : block.find("\n", i + 1) if block.find("\n", i + 1) > 0 else None]
        return line[len(prefix) :].strip()

    def vendor(self, vendor_id: int) -> str | None:
        """Vendor name, e.g. 0x8086 -> "Intel Corporation"."""
        block = self._block(f"{vendor_id:04x}  ")
        return self._first_line_name(block) if block else None

    def _device_block_uncached(self, vendor_id: int, device_id: int) -> str | None:
        """The device's line and its subsystem lines, so subsystem lookups scan only those."""
        block = self._block(f"{vendor_id:04x}  ")
        if not block:
            return None
        dev_at = _find_device(block, f"{device_id:04x}")
        if dev_at < 0:
            return None
        end = block.find("\n\t", dev_at + 1)
        while end >= 0 and block.startswith("\n\t\t", end):
            end = block.find("\n\t", end + 1)
        return block[dev_at : end if end >= 0 else len(block)]

    def device(self, vendor_id: int, device_id: int) -> str | None:
        """Device name within its vendor's block."""
        block = self._device_block(vendor_id, device_id)
        return self._child(block, f"\t{device_id:04x}  ") if block else None

    def subsystem(
        self, vendor_id: int, device_id: int, sub_vendor: int, sub_device: int
    ) -> str | None:
        """Subsystem name: listed under the device as `\\t\\tSVID SDID  name`."""
        block = self._device_block(vendor_id, device_id)
        return self._child(block, f"\t\t{sub_vendor:04x} {sub_device:04x}  ") if block else None

    def class_name(self, class_code: int) -> str | None:
        """Subclass name (`Ethernet controller`), else the base class name."""
        block = self._block(f"C {class_code >> 16 & 0xFF:02x}  ")
        if not block:
            return None
        sub = self._child(block, f"\t{class_code >> 8 & 0xFF:02x}  ")
        return sub or self._first_line_name(block)

    def names(
        self, vendor_id: int, device_id: int, sub_vendor: int, sub_device: int, class_code: int
    ) -> Names:
        """All names of one function at once."""
        return Names(
            vendor=self.vendor(vendor_id),
            device=self.device(vendor_id, device_id),
            subsystem=self.subsystem(vendor_id, device_id, sub_vendor, sub_device),
            class_name=self.class_name(class_code),
        )


def _find_device(block: str, device: str) -> int:
    """Offset of the line `\t<device>  name` in a vendor's block, or -1.

    pci.ids lists a vendor's devices sorted by id, so a binary search over line starts finds
    it in ~20 short steps; a plain `find` over Intel's ~360 KB block took ~0.2 ms, since the
    needle's characters are everywhere in the text. A miss in the search window falls back to
    the plain search, so an unsorted file still gives the right answer.
    """
    needle = f"\n\t{device}  "
    lo, hi = 0, len(block)
    while hi - lo > 2048:
        mid = (lo + hi) // 2
        at = block.find("\n\t", mid, hi)
        while at >= 0 and block.startswith("\n\t\t", at):  # a subsystem line: next one
            at = block.find("\n\t", at + 1, hi)
        if at < 0:
            hi = mid
            continue
        here = block[at + 2 : at + 6]
        if here < device:
            lo = at + 1
        elif here > device:
            hi = at + 1
        else:
            return at if block.startswith(needle, at) else block.find(needle)
    found = block.find(needle, max(lo - 1, 0), hi + len(needle))
    return found if found >= 0 else block.find(needle)


def find_pci_ids() -> Path | None:
    """$SRIOVKIT_PCI_IDS if set, else the first of the usual Debian/Fedora locations that exists."""
    env = os.environ.get("SRIOVKIT_PCI_IDS")
    if env:
        return Path(env)
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)
