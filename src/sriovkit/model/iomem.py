"""Parse `/proc/iomem` into a tree and map its ranges to PCI functions.

The kernel prints one resource per line, `start-end : name`, nesting children two spaces deeper
than their parent (kernel/resource.c). A PCI BAR appears under its bus window named by the
function's address, and a driver that claims the region appears one level below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sriovkit.model.pci import PciAddress

_LINE = re.compile(r"^(?P<indent> *)(?P<start>[0-9a-fA-F]+)-(?P<end>[0-9a-fA-F]+) : (?P<name>.*)$")
_PCI_NAME = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


@dataclass(slots=True)
class IomemRange:
    """One resource: an inclusive address range, its owner name and nested children."""

    start: int
    end: int
    name: str
    depth: int
    children: list[IomemRange] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Length in bytes (ranges are inclusive)."""
        return self.end - self.start + 1

    def walk(self) -> list[IomemRange]:
        """This range and all below it, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def __str__(self) -> str:
        return f"{self.start:08x}-{self.end:08x} : {self.name}"


def parse_iomem(text: str) -> list[IomemRange]:
    """The top-level ranges of `/proc/iomem`, each with its children.

    Unreadable lines are skipped rather than fatal: a non-root reader sees all-zero addresses,
    which still parse, and nothing else ever appears in the file.
    """
    roots: list[IomemRange] = []
    stack: list[IomemRange] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        depth = len(m["indent"]) // 2
        node = IomemRange(int(m["start"], 16), int(m["end"], 16), m["name"], depth)
        while stack and stack[-1].depth >= depth:
            stack.pop()
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
    return roots


@dataclass(frozen=True, slots=True)
class DeviceRange:
    """A memory range owned by a PCI function, and the driver that claimed it (if any)."""

    start: int
    end: int
    claimed_by: str | None

    def __str__(self) -> str:
        owner = f" ({self.claimed_by})" if self.claimed_by else ""
        return f"{self.start:016x}-{self.end:016x}{owner}"


def ranges_by_device(roots: list[IomemRange]) -> dict[PciAddress, list[DeviceRange]]:
    """Every range named by a PCI address, grouped by that address, in file order."""
    out: dict[PciAddress, list[DeviceRange]] = {}
    for top in roots:
        for node in top.walk():
            if _PCI_NAME.match(node.name):
                claimed = node.children[0].name if node.children else None
                out.setdefault(PciAddress.parse(node.name), []).append(
                    DeviceRange(node.start, node.end, claimed)
                )
    return out
