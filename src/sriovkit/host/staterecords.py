"""The state store's record files: their names and how their bytes become records.

`host/state.py` owns the directory, the atomic writes and the locks; this module only names
record files (an attachment's from its key, an allocation's from its VF) and decodes what was
read, refusing a record of another schema or of an unknown kind, and telling an undecodable one
(`CorruptRecord`: the store may remove it as an earlier boot's leftover) from the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote, unquote

import msgspec

from sriovkit.errors import HostError, InvalidInput
from sriovkit.model.attachment import (
    ATTACHMENT_KINDS,
    LEGACY_KIND,
    SCHEMA,
    AllocationRecord,
    Attachment,
    AttachmentKey,
)
from sriovkit.model.pci import PciAddress

R = TypeVar("R", Attachment, AllocationRecord)
_TEMP_PREFIX = "."  # the store's temp files start with it; never a record's name


class CorruptRecord(HostError):
    """A record whose bytes cannot be decoded (empty, truncated, not JSON, bad fields)."""


class _Head(msgspec.Struct):
    """The part of a record read first: its layout version and, for attachments, its kind."""

    schema: int = 0
    kind: str | None = None


def attachment_file_name(key: AttachmentKey) -> str:
    """`<containerID>@<ifname>.json`; the ifname is %-quoted (it may hold any byte but / and :).

    A container id cannot contain `@`, so the first `@` always splits the name unambiguously.
    """
    return f"{key.container_id}@{quote(key.ifname, safe='-_.')}.json"


def key_of(name: str) -> AttachmentKey | None:
    """The key an attachment record file name stands for; None for any other name."""
    if name.startswith(_TEMP_PREFIX) or not name.endswith(".json") or "@" not in name:
        return None
    cid, _, quoted = name[: -len(".json")].partition("@")
    try:
        key = AttachmentKey(cid, unquote(quoted, errors="strict"))
    except (InvalidInput, UnicodeDecodeError):
        return None
    return key if attachment_file_name(key) == name else None


def pci_name(pci: PciAddress | str) -> str:
    """The canonical PCI address an allocation record and a VF lock are named by."""
    addr = pci if isinstance(pci, PciAddress) else PciAddress.parse(pci, "VF PCI address")
    return str(addr)


def decode_record(path: Path, data: bytes, kind: type[R]) -> R:
    """The record of class `kind` in `data`, read from `path` (named in errors).

    Raises `CorruptRecord` when the bytes do not decode, HostError for a record of another
    schema or (attachments) of a kind this sriovkit does not know.
    """
    try:
        head = msgspec.json.decode(data, type=_Head)
    except msgspec.DecodeError as exc:
        raise CorruptRecord(f"state record {path} is corrupt: {exc}") from None
    if head.schema != SCHEMA:
        raise HostError(
            f"state record {path} has schema {head.schema}; this sriovkit reads schema {SCHEMA}"
        )
    cls: type[Any] = kind
    if kind is Attachment:
        # The union's tag picks the record class; records from before kinds have none.
        found = ATTACHMENT_KINDS.get(head.kind or LEGACY_KIND)
        if found is None:
            raise HostError(
                f"state record {path} is of kind {head.kind!r}, which this sriovkit does not "
                f"know ({', '.join(sorted(ATTACHMENT_KINDS))})"
            )
        cls = found
    try:
        return cast(R, msgspec.json.decode(data, type=cls))
    except (msgspec.DecodeError, InvalidInput) as exc:
        raise CorruptRecord(f"state record {path} is corrupt: {exc}") from None


__all__ = [
    "CorruptRecord",
    "R",
    "attachment_file_name",
    "decode_record",
    "key_of",
    "pci_name",
]
