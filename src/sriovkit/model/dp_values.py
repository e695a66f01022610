"""The value checkers of the device plugin config (pure): each names the entry and field.

Split from `dp_config` (the document's structure) so each stays readable: here are the rules for
one value (a list of strings, a flag, 4-digit hex ids, `pf#0,2-7` ranges, PCI addresses) and the
`resourceList[i] (name).field` part every error carries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.pci import PciAddress

_HEX4_RE = re.compile(r"[0-9a-fA-F]{4}")
_DIGITS_RE = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class FunctionRange:
    """One `pfNames` / `rootDevices` item: a PF, and which of its functions (all when None)."""

    pf: str
    """A PF netdev name, or for `rootDevices` a PF PCI address in its canonical form."""
    indexes: tuple[tuple[int, int], ...] | None = None
    """Inclusive (first, last) VF index ranges from `#0,2-7`; None for every function."""

    def selects(self, index: int | None) -> bool:
        """True when a function with VF index `index` (None: not a VF) is in this item."""
        if index is None:
            return False
        if self.indexes is None:
            return True
        return any(lo <= index <= hi for lo, hi in self.indexes)


def canonical(
    obj: Mapping[str, Any], known: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """Keys mapped to their canonical spelling (Go's case-insensitive match); unknown keys.

    An exact spelling wins over a case-folded one, as in encoding/json.
    """
    out: dict[str, Any] = {}
    exact: set[str] = set()
    unknown: list[str] = []
    for key, value in obj.items():
        canon = known.get(key.lower())
        if canon is None:
            unknown.append(key)
        elif key == canon or canon not in exact:
            out[canon] = value
            if key == canon:
                exact.add(canon)
    return out, unknown


class Where:
    """Builds the `resourceList[i] (name).field` part of an error."""

    def __init__(self, index: int, name: str | None) -> None:
        self.base = f"resourceList[{index}]" + (f" ({name})" if name else "")

    def error(self, field: str, reason: str) -> InvalidInput:
        """The error for `field` of this entry (the entry itself when `field` is empty)."""
        return InvalidInput(f"{self.base}.{field}" if field else self.base, reason)


def str_list(where: Where, field: str, value: Any) -> tuple[str, ...] | None:
    """A list of non-empty strings; None when absent or empty (upstream skips empty lists)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise where.error(field, f"expected a list of strings, got {kind_of(value)}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise where.error(field, f"expected non-empty strings, got {item!r}")
    return tuple(value) or None


def kind_of(value: Any) -> str:
    """What a decoded value is, in the JSON words an error uses ("an object", "null")."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def boolean(where: Where, field: str, value: Any) -> bool:
    """true or false (absent: false); nothing else, not even "true"."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise where.error(field, f"expected true or false, got {value!r}")
    return value


def hex_ids(where: Where, field: str, value: Any) -> tuple[str, ...] | None:
    """4-digit hex ids, lower-cased (sysfs spells them in lower case)."""
    items = str_list(where, field, value)
    for item in items or ():
        if not _HEX4_RE.fullmatch(item):
            raise where.error(field, f"{item!r} is not a 4-digit hex id like '8086'")
    return tuple(i.lower() for i in items) if items else None


def _indexes(where: Where, field: str, item: str, text: str) -> tuple[tuple[int, int], ...]:
    """`0,2-7,9` -> ((0, 0), (2, 7), (9, 9))."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        lo_s, dash, hi_s = part.partition("-")
        if not _DIGITS_RE.fullmatch(lo_s) or (dash and not _DIGITS_RE.fullmatch(hi_s)):
            raise where.error(field, f"{item!r}: {part!r} is not a VF index or a range like '2-7'")
        lo, hi = int(lo_s), int(hi_s) if dash else int(lo_s)
        if hi < lo:
            raise where.error(field, f"{item!r} has an empty range")
        out.append((lo, hi))
    return tuple(out)


def function_ranges(
    where: Where, field: str, value: Any, *, pci: bool
) -> tuple[FunctionRange, ...] | None:
    """`pfNames` (`pci=False`) or `rootDevices` (`pci=True`) items: `pf` or `pf#0,2-7`."""
    items = str_list(where, field, value)
    if not items:
        return None
    out = []
    for item in items:
        pf, hash_, rest = item.partition("#")
        if "#" in rest:
            raise where.error(field, f"{item!r} has more than one '#'")
        if hash_ and not rest:
            raise where.error(field, f"{item!r} has no VF indexes after '#'")
        if pci:
            addr = PciAddress.try_parse(pf)
            if addr is None:
                raise where.error(
                    field, f"{item!r}: {pf!r} is not a PCI address like '0000:86:00.0'"
                )
            pf = str(addr)
        elif not pf:
            raise where.error(field, f"{item!r} has no PF name before '#'")
        out.append(FunctionRange(pf, _indexes(where, field, item, rest) if hash_ else None))
    return tuple(out)


def pci_list(where: Where, field: str, value: Any) -> tuple[PciAddress, ...] | None:
    """Full PCI addresses (`0000:03:02.0`)."""
    items = str_list(where, field, value)
    out = []
    for item in items or ():
        addr = PciAddress.try_parse(item)
        if addr is None:
            raise where.error(field, f"{item!r} is not a PCI address like '0000:03:02.0'")
        out.append(addr)
    return tuple(out) or None


__all__ = [
    "FunctionRange", "Where", "boolean", "canonical", "function_ranges", "hex_ids", "kind_of",
    "pci_list", "str_list",
]  # fmt: skip
