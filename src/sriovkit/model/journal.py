"""The pending-DEL journal's names and entries (pure: the files are `host/journal.py`'s).

When no agent answers and a shim has no in-process path, it writes a DEL it was given to
`<state dir>/pending-del/<containerID>@<ifname>.del` and succeeds (pod deletion never waits for
the agent); the agent replays every entry at start, before it serves. An entry is the request
frame the shim would have sent the agent, without its deadline:

    b"SKC1" | u32 len(env) | u32 len(stdin) | env | stdin      (big-endian)

The name is the attachment's key, with the ifname %-quoted as the state store quotes it, so a
second DEL of one attachment replaces the first. The shims build the name themselves (`shim.c`,
`shim.py`'s `journal_name`; a test keeps them equal to `entry_name`); here a name is read back
and checked both ways, and an entry must be a DEL of exactly the attachment its name says.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from urllib.parse import quote, unquote

from sriovkit.errors import InvalidInput
from sriovkit.model.attachment import AttachmentKey

SUFFIX = ".del"
MAGIC = b"SKC1"
HEAD = struct.Struct(">4sII")
MAX_ENV = 64 << 10
MAX_STDIN = 1 << 20
MAX_ENTRY = HEAD.size + MAX_ENV + MAX_STDIN
"""The largest entry read: the agent's own request limits (`agent/protocol.Limits`)."""
DEADLINE = "SRIOVKIT_DEADLINE"
_FORWARDED = ("CNI_", "SRIOVKIT_")


class BadEntry(ValueError):
    """A journal file that is not an entry sriovkit wrote: refused, never run."""


def entry_name(key: AttachmentKey) -> str:
    """`<containerID>@<ifname %-quoted>.del`."""
    return f"{key.container_id}@{quote(key.ifname, safe='-_.')}{SUFFIX}"


def key_of(name: str) -> AttachmentKey:
    """The attachment a journal file name stands for (BadEntry when it is no such name)."""
    if not name.endswith(SUFFIX) or "@" not in name:
        raise BadEntry(f"{name!r} is not <containerID>@<ifname>{SUFFIX}")
    cid, _, quoted = name[: -len(SUFFIX)].partition("@")
    try:
        key = AttachmentKey(cid, unquote(quoted, errors="strict"))
    except (InvalidInput, UnicodeDecodeError) as exc:
        raise BadEntry(f"{name!r} does not name an attachment: {exc}") from None
    if entry_name(key) != name:
        raise BadEntry(f"{name!r} is not the canonical name of {key}")
    return key


@dataclass(frozen=True, slots=True)
class PendingDel:
    """One journaled DEL: the attachment, the environment it was asked with, its config."""

    key: AttachmentKey
    env: dict[str, str]
    stdin: bytes


def encode_entry(env: dict[str, str], stdin: bytes) -> bytes:
    """An entry as the shims write it (for tests and tools)."""
    block = b"\0".join(
        f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items() if k != DEADLINE
    )
    return HEAD.pack(MAGIC, len(block), len(stdin)) + block + stdin


def decode_entry(name: str, data: bytes) -> PendingDel:
    """The DEL in the journal file `name` holding `data` (BadEntry when it is not one)."""
    key = key_of(name)
    if len(data) < HEAD.size:
        raise BadEntry(f"{name}: {len(data)} bytes is shorter than an entry's head")
    magic, env_len, stdin_len = HEAD.unpack_from(data)
    if magic != MAGIC:
        raise BadEntry(f"{name}: not a sriovkit request frame (bad magic)")
    if env_len > MAX_ENV or stdin_len > MAX_STDIN:
        raise BadEntry(f"{name}: env or config larger than a request may be")
    if len(data) != HEAD.size + env_len + stdin_len:
        want = HEAD.size + env_len + stdin_len
        raise BadEntry(f"{name}: {len(data)} bytes, its head says {want}")
    block = data[HEAD.size : HEAD.size + env_len]
    env: dict[str, str] = {}
    for entry in block.split(b"\0") if block else ():
        k, sep, v = entry.decode("utf-8", "surrogateescape").partition("=")
        if sep and k.startswith(_FORWARDED) and k != DEADLINE:
            env[k] = v
    if env.get("CNI_COMMAND") != "DEL":
        raise BadEntry(f"{name}: CNI_COMMAND is {env.get('CNI_COMMAND')!r}, not DEL")
    asked = (env.get("CNI_CONTAINERID"), env.get("CNI_IFNAME"))
    if asked != (key.container_id, key.ifname):
        raise BadEntry(f"{name}: the entry is a DEL of {asked[0]}/{asked[1]}, not of {key}")
    return PendingDel(key, env, data[HEAD.size + env_len :])


__all__ = [
    "MAX_ENTRY",
    "SUFFIX",
    "BadEntry",
    "PendingDel",
    "decode_entry",
    "encode_entry",
    "entry_name",
    "key_of",
]
