"""Reading requests: one thread, one selector, every connection non-blocking.

A worker thread only ever sees a complete request, so a client that sends slowly or not at all
holds a connection slot and the bytes it announced, never a worker. What one client can hold
is bounded by `Limits`: the whole request within `read_timeout` (in total, not per read), at
most `max_env` + `max_stdin` bytes, reserved from a budget shared by every request in the agent
before its body is read. When the connection slots or the budget run out, the connection that
has been incomplete the longest gives way (once it has been so for `evict_age`): honest shims
send their request whole, so the ones that lose their slot are the stalled ones.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sriovkit.agent.protocol import (
    HEAD_SIZE,
    Limits,
    ProtocolError,
    encode_answer,
    parse_env,
    parse_head,
    peer_uid,
)
from sriovkit.cni.shim import error_json

log = logging.getLogger("sriovkit.agent")

_POLL = 0.5  # how often the loop looks at the stop flag, should a wake-up get lost
_ACCEPT_BACKOFF = 0.1  # after accept() failed (EMFILE and the like), instead of spinning


class Budget:
    """Bytes of requests the agent holds at once; thread-safe (workers give back)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._mu = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    def take(self, n: int) -> bool:
        """Reserve `n` bytes if they are free."""
        with self._mu:
            if self._used + n > self.total:
                return False
            self._used += n
            return True

    def give(self, n: int) -> None:
        """Return `n` reserved bytes."""
        with self._mu:
            self._used -= n


@dataclass
class Request:
    """A complete request, for a worker to run; `close()` when done (frees its bytes)."""

    sock: socket.socket
    env: dict[str, str]
    stdin: bytes
    budget: Budget
    reserved: int
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Close the connection and give its bytes back (once)."""
        if not self._closed:
            self._closed = True
            self.sock.close()
            self.budget.give(self.reserved)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    started: float
    buf: bytearray = field(default_factory=bytearray)
    want: int = HEAD_SIZE  # bytes still to read of the head, then of the body
    env_len: int = -1  # -1 until the head is read
    size: int = 0  # of the whole request, once the head is read
    reserved: int = 0
    parked: bool = False  # waiting for budget: not read meanwhile


class Reader:
    """Accepts on `listener` and reads requests until `stop` is set; `submit` gets each one."""

    def __init__(
        self,
        listener: socket.socket,
        limits: Limits,
        budget: Budget,
        submit: Callable[[Request], None],
        stop: threading.Event,
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.budget = budget
        self.submit = submit
        self.stop = stop
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}  # by fd, oldest first (dicts keep insertion order)
        self._parked: collections.deque[_Conn] = collections.deque()
        self._listening = False
        self._backoff_until = 0.0
        self._waker, self._wakee = socket.socketpair()
        self._wakee.setblocking(False)
        self._sel.register(self._wakee, selectors.EVENT_READ)

    def wake(self) -> None:
        """Make `run` look at the stop flag now (safe from a signal handler)."""
        with contextlib.suppress(OSError):
            self._waker.send(b"\0", socket.MSG_DONTWAIT)

    @property
    def reading(self) -> int:
        """Connections being read now."""
        return len(self._conns)

    def run(self) -> None:
        """The loop; on return every connection still being read is closed unanswered."""
        self.listener.setblocking(False)
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                self._expire(now)
                self._unpark()
                self._listen(self._may_accept(now))
                for key, _ in self._sel.select(self._timeout(now)):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self._wakee:
                        with contextlib.suppress(OSError):
                            self._wakee.recv(64)
                    elif (conn := self._conns.get(key.fd)) is key.data:  # not dropped meanwhile
                        try:
                            self._read(conn)
                        except Exception:  # one client must never take the agent down
                            log.exception("reading a CNI request failed")
                            if self._conns.get(key.fd) is conn:
                                self._drop(conn, None)
        finally:
            for conn in list(self._conns.values()):
                self._drop(conn, None)
            self._sel.close()
            self._waker.close()
            self._wakee.close()

    # --- accepting ------------------------------------------------------------------------

    def _oldest(self, *, reserved: bool = False, but: _Conn | None = None) -> _Conn | None:
        for conn in self._conns.values():
            if conn is not but and (conn.reserved or not reserved):
                return conn
        return None

    def _evictable(self, conn: _Conn | None, now: float) -> bool:
        return conn is not None and now - conn.started >= self.limits.evict_age

    def _may_accept(self, now: float) -> bool:
        if now < self._backoff_until:
            return False
        if len(self._conns) < self.limits.max_reading:
            return True
        return self._evictable(self._oldest(), now)

    def _listen(self, on: bool) -> None:
        # Not accepting leaves new clients in the kernel's backlog; a shim that finds even
        # that full goes in-process after a few seconds.
        if on and not self._listening:
            self._sel.register(self.listener, selectors.EVENT_READ)
        elif not on and self._listening:
            self._sel.unregister(self.listener)
        self._listening = on

    def _timeout(self, now: float) -> float:
        wake = now + _POLL
        oldest = self._oldest()
        if oldest is not None:
            wake = min(wake, oldest.started + self.limits.read_timeout)
            if len(self._conns) >= self.limits.max_reading:
                wake = min(wake, oldest.started + self.limits.evict_age)
        if self._backoff_until > now:
            wake = min(wake, self._backoff_until)
        if self._parked:  # workers give bytes back without telling us: look again soon
            wake = min(wake, now + 0.05)
        return max(0.0, wake - now)

    def _accept(self) -> None:
        while self._may_accept(now := time.monotonic()):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: try again shortly
                log.warning("accept failed: %s", exc.strerror or exc)
                self._backoff_until = now + _ACCEPT_BACKOFF
                return
            if len(self._conns) >= self.limits.max_reading:
                self._drop(self._oldest(), "evicted: connection slots are full")
            try:
                uid = peer_uid(sock)
            except OSError:
                sock.close()
                continue
            if uid not in {0, os.geteuid()}:
                _answer_now(sock, encode_answer(1, error_json(999, "permission denied: not root")))
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, now)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    # --- reading --------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        while (oldest := self._oldest()) is not None:
            if now - oldest.started < self.limits.read_timeout:
                return
            self._drop(oldest, f"request not complete within {self.limits.read_timeout:g} s")

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(min(conn.want, 1 << 16))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(conn, f"read failed: {exc.strerror or exc}")
            return
        if not data:
            if conn.env_len < 0 and not conn.buf:
                self._drop(conn, None)  # a liveness probe: connect and close
            else:
                self._refuse(conn, ProtocolError("request truncated"))
            return
        conn.buf += data
        conn.want -= len(data)
        if conn.want:
            return
        if conn.env_len < 0:
            try:
                env_len, stdin_len = parse_head(bytes(conn.buf), self.limits)
            except ProtocolError as exc:
                self._refuse(conn, exc)
                return
            conn.env_len, conn.want, conn.buf = env_len, env_len + stdin_len, bytearray()
            conn.size = HEAD_SIZE + env_len + stdin_len
            if not self._reserve(conn):
                # Its body waits in the socket (the kernel's buffer, not ours) until bytes are
                # given back or a hoarder can be evicted; its read deadline keeps running.
                self._sel.unregister(conn.sock)
                conn.parked = True
                self._parked.append(conn)
                return
            if conn.want:
                return
        self._complete(conn)

    def _reserve(self, conn: _Conn) -> bool:
        now = time.monotonic()
        while not self.budget.take(conn.size):
            victim = self._oldest(reserved=True, but=conn)
            if not self._evictable(victim, now):
                return False
            self._drop(victim, "evicted: the request budget is spent")
        conn.reserved = conn.size
        return True

    def _unpark(self) -> None:
        while self._parked and self._reserve(conn := self._parked[0]):
            self._parked.popleft()
            conn.parked = False
            self._sel.register(conn.sock, selectors.EVENT_READ, conn)
            if not conn.want:
                self._complete(conn)

    def _complete(self, conn: _Conn) -> None:
        self._forget(conn)
        view = memoryview(conn.buf)
        env = parse_env(bytes(view[: conn.env_len]))
        stdin = bytes(view[conn.env_len :])
        view.release()
        conn.buf = bytearray()
        conn.sock.setblocking(True)
        self.submit(Request(conn.sock, env, stdin, self.budget, conn.reserved))

    def _forget(self, conn: _Conn) -> None:
        if conn.parked:
            self._parked.remove(conn)
            conn.parked = False
        else:
            self._sel.unregister(conn.sock)
        del self._conns[conn.sock.fileno()]

    def _drop(self, conn: _Conn | None, why: str | None) -> None:
        """Close unanswered: the shim fails an ADD with code 11 and runs the rest in-process."""
        if conn is None:
            return
        if why:
            log.info("dropped a CNI connection: %s", why)
        self._forget(conn)
        conn.sock.close()
        self.budget.give(conn.reserved)

    def _refuse(self, conn: _Conn, exc: ProtocolError) -> None:
        log.warning("bad request: %s", exc)
        _answer_now(conn.sock, encode_answer(1, error_json(999, "bad agent request", str(exc))))
        self._drop(conn, None)


def _answer_now(sock: socket.socket, frame: bytes) -> None:
    """Best effort, never blocking: an error answer fits an empty socket buffer."""
    with contextlib.suppress(OSError):
        sock.send(frame, socket.MSG_DONTWAIT)


__all__ = ["Budget", "Reader", "Request"]
