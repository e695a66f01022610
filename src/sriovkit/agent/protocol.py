"""The agent's side of the shim's framing (`sriovkit.cni.shim` has the other), and its limits.

A request is `b"SKC1" | u32 len(env) | u32 len(stdin) | env | stdin`, sent at once by a shim
that then half-closes; the answer is `b"SKR1" | u32 exit code | u32 len(stdout) | stdout`.
"""

from __future__ import annotations

import math
import select
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from sriovkit.cni.shim import DEADLINE_ENV, MAGIC_ANSWER, MAGIC_REQUEST
from sriovkit.errors import ProtocolError

HEAD_SIZE = 12
"""Magic and the two lengths."""

_FORWARDED = ("CNI_", "SRIOVKIT_")
DEADLINE = DEADLINE_ENV.decode()
"""The request's env entry holding the wall-clock time at which its shim stops waiting."""


@dataclass(frozen=True)
class Limits:
    """What the agent takes from its clients at most; the defaults are the production ones."""

    # CNI_ARGS (pod name, namespace, uid, infra container id), CNI_NETNS and CNI_PATH are a few
    # hundred bytes each, the rest less: a real env block is under 2 KiB.
    max_env: int = 64 << 10
    # A `sriov` config is under 1 KiB; CHECK adds prevResult, a runtime runtimeConfig: a few
    # KiB. The largest honest one is GC's cni.dev/valid-attachments, ~100 bytes per attachment
    # on the node: 1 MiB is some 10,000 of them.
    max_stdin: int = 1 << 20
    # For the whole request, not each read: a shim writes it at once right after connecting,
    # so on a local socket it is complete within milliseconds even on a loaded node.
    read_timeout: float = 10.0
    # Connections being read at once. Each costs a descriptor and at most its head until its
    # reservation (below) admits the rest, so slow clients cost little; when all are taken, a
    # new one replaces the oldest if that has been incomplete for `evict_age` (a shim's request
    # arrives whole, so one incomplete that long is stalled, not slow).
    max_reading: int = 256
    evict_age: float = 1.0
    # Bytes of requests held at once (being read, waiting or running), reserved from each head
    # before its body is read: 32 maximal requests, or thousands of real ones.
    budget: int = 32 << 20
    # Requests run at once (ADDs on different VFs run in parallel), and complete ones waiting
    # for a worker; past both a request is closed unanswered: the shim fails an ADD with code
    # 11 and runs anything else in-process.
    max_workers: int = 64
    max_pending: int = 256
    answer_timeout: float = 10.0  # a shim reads its answer as soon as it is sent

    @property
    def max_request(self) -> int:
        """The largest frame a client may send."""
        return HEAD_SIZE + self.max_env + self.max_stdin


DEFAULT_LIMITS = Limits()


def parse_head(head: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(len(env), len(stdin)) from a request's first `HEAD_SIZE` bytes."""
    if head[:4] != MAGIC_REQUEST:
        raise ProtocolError("not a sriovkit CNI request (bad magic)")
    env_len, stdin_len = struct.unpack(">II", head[4:HEAD_SIZE])
    if env_len > limits.max_env:
        raise ProtocolError(f"request env too large ({env_len} > {limits.max_env} bytes)")
    if stdin_len > limits.max_stdin:
        raise ProtocolError(f"network config too large ({stdin_len} > {limits.max_stdin} bytes)")
    return env_len, stdin_len


def parse_env(block: bytes) -> dict[str, str]:
    """The CNI_* and SRIOVKIT_* entries of an env block (bytes kept as surrogate escapes)."""
    env: dict[str, str] = {}
    for entry in block.split(b"\0") if block else ():
        key, sep, value = entry.decode("utf-8", "surrogateescape").partition("=")
        if sep and key.startswith(_FORWARDED):
            env[key] = value
    return env


def deadline_of(env: Mapping[str, str]) -> float | None:
    """The request's deadline (unix time), or None when it names none or nonsense."""
    try:
        value = float(env.get(DEADLINE, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def encode_answer(code: int, out: bytes) -> bytes:
    """The answer frame for exit code `code` and stdout `out`."""
    return MAGIC_ANSWER + struct.pack(">II", code & 0xFFFFFFFF, len(out)) + out


def peer_gone(conn: socket.socket) -> bool:
    """Whether the client has closed its end (or shut down both directions).

    The shim half-closes after sending (SHUT_WR), which reads as EOF and POLLRDHUP only; on an
    AF_UNIX stream POLLHUP means the peer can no longer read our answer either (measured:
    half-close gives POLLIN|POLLRDHUP, close or kill adds POLLHUP). We never shut down our own
    write side before answering, which would raise POLLHUP too.
    """
    poller = select.poll()
    poller.register(conn.fileno(), 0)  # POLLHUP and POLLERR are always reported
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


__all__ = [
    "DEADLINE",
    "DEFAULT_LIMITS",
    "HEAD_SIZE",
    "Limits",
    "ProtocolError",
    "deadline_of",
    "encode_answer",
    "parse_env",
    "parse_head",
    "peer_gone",
    "peer_uid",
]
