"""The agent's unix-socket server: requests read by one event loop, run by a pool of workers.

Protocol and limits in `protocol` (the shim, `sriovkit.cni.shim`, must stay free of imports);
reading in `reader`; run as one of the agent's services by `cni_service`, under the process's
`supervisor` (signals, logging, shutdown). A request's CNI_* variables and its
SRIOVKIT_STATE_DIR / SRIOVKIT_ROOT / SRIOVKIT_KUBELET_DIR are laid over the agent's defaults
(its --root, --state-dir and --kubelet-dir): the shim sends the ones baked into it at install,
which its in-process fallback uses too, so both paths always share one state and one lock per
VF. An empty or any other
SRIOVKIT_* entry changes nothing.

Rules the node agent lives by:

- Requests on different VFs run in parallel; two on the same VF serialize on the state store's
  per-VF flock() inside ops.attach (flock locks belong to open files, so threads exclude each
  other like processes do).
- A slow or silent client never holds a worker: workers get complete requests only (`reader`).
- An ADD nobody waits for is not started: ops.attach calls `still_wanted` once it holds its
  locks, and it raises `Abandoned` (code 11) when the request's deadline (SRIOVKIT_DEADLINE,
  when its shim stops waiting) has passed or the shim has closed the connection.
- No Python child is ever forked (the device plugin will run grpc here): IPAM plugins are
  exec'd, and netns-bound netlink sockets are opened by short-lived threads, never by setns() on
  the main thread.
- Access is root-only: the socket is 0600 in a 0700 directory we create, and the peer's uid is
  checked with SO_PEERCRED. A lock file beside the socket makes a second agent refuse to start
  instead of stealing the socket; a socket left by a dead agent is removed.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sriovkit.agent.protocol import (
    DEADLINE,
    DEFAULT_LIMITS,
    Limits,
    ProtocolError,
    deadline_of,
    encode_answer,
    peer_gone,
)
from sriovkit.agent.reader import Budget, Reader, Request
from sriovkit.cni import shim
from sriovkit.cni.dispatch import ContextFactory, StillWanted, execute, host_context
from sriovkit.errors import Abandoned, Busy, HostError
from sriovkit.host.process import umask

DEFAULT_SOCKET = Path(shim.DEFAULT_SOCKET)
SOCKET_ENV = shim.SOCKET_ENV.decode()
REQUEST_SETTINGS = frozenset({"SRIOVKIT_STATE_DIR", "SRIOVKIT_ROOT", "SRIOVKIT_KUBELET_DIR"})
"""The SRIOVKIT_* entries a request may set (over the agent's defaults)."""

log = logging.getLogger("sriovkit.agent")

Execute = Callable[..., tuple[int, bytes]]

_IDLE_EXIT = 30.0  # seconds an idle worker waits for another request before it exits


def merged_env(defaults: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """The environment one request runs with: its CNI_* and settings over the defaults."""
    out = dict(defaults)
    for key, value in env.items():
        if key.startswith("CNI_") or (key in REQUEST_SETTINGS and value):
            out[key] = value
    return out


def still_wanted_for(conn: socket.socket, deadline: float | None) -> StillWanted:
    """The check ADD makes before it changes anything (see `AttachContext.still_wanted`)."""

    def still_wanted() -> None:
        late = time.time() - deadline if deadline is not None else -1.0
        if late >= 0:
            raise Abandoned(f"request abandoned: its deadline passed {late:.1f} s ago; not run")
        if peer_gone(conn):
            raise Abandoned("request abandoned: its client closed the connection; not run")

    return still_wanted


class Agent:
    """A CNI server on the unix socket `path`; `open()`, then `serve()` until `stop()`."""

    def __init__(
        self,
        path: Path,
        defaults: Mapping[str, str] | None = None,
        *,
        ctx_factory: ContextFactory = host_context,
        run: Execute = execute,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.path = Path(path)
        self.defaults = dict(defaults or {})
        self.ctx_factory = ctx_factory
        self.run = run
        self.limits = limits
        self.budget = Budget(limits.budget)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._lock_fd: int | None = None
        self._inode: int | None = None
        self._workers: set[threading.Thread] = set()
        self._pending: collections.deque[Request] = collections.deque()
        self._reader: Reader | None = None
        self._mu = threading.Lock()
        self._wake = threading.Condition(self._mu)  # an idle worker waits here for a request
        self._idle = 0  # workers waiting on `_wake`

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        """Take the agent lock, replace a stale socket, bind and listen (mode 0600)."""
        directory = self.path.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise HostError(f"cannot create {directory}: {exc.strerror}", exc.errno) from None
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode):
            raise HostError(f"agent socket directory {directory} is not a directory")
        lock_path = self.path.with_name(self.path.name + ".lock")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            raise HostError(f"cannot open {lock_path}: {exc.strerror}", exc.errno) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in {errno.EWOULDBLOCK, errno.EAGAIN}:
                raise Busy(f"another sriovkit agent is serving {self.path}") from None
            raise HostError(f"cannot lock {lock_path}: {exc.strerror}", exc.errno) from None
        self._lock_fd = fd
        try:
            self._bind()
        except BaseException:
            self.close()
            raise

    def _bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(self.path)
            if not stat.S_ISSOCK(info.st_mode):
                raise HostError(f"{self.path} exists and is not a socket; refusing to replace it")
            # We hold the agent lock, so whoever made this socket is gone.
            os.unlink(self.path)
            log.info("removed stale socket %s", self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with umask(0o177):  # the socket is born 0600: no window where others can connect
                listener.bind(str(self.path))
        except OSError as exc:
            listener.close()
            raise HostError(f"cannot bind {self.path}: {exc.strerror}", exc.errno) from None
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino
        listener.listen(512)  # 64+ pods may start at once; the kernel caps at somaxconn
        self._listener = listener

    def serve(self) -> None:
        """Read and dispatch requests until `stop()`; then finish the ones already read."""
        listener = self._listener
        if listener is None:
            raise HostError("the agent socket is not open")
        self._reader = Reader(listener, self.limits, self.budget, self._submit, self._stop)
        try:
            self._reader.run()
        finally:
            self._reader = None
        self._drain()

    def stop(self) -> None:
        """Ask `serve()` to return (safe from a signal handler or another thread; idle
        workers leave once `serve()` drains)."""
        self._stop.set()
        reader = self._reader
        if reader is not None:
            reader.wake()

    def _drain(self, timeout: float = 150.0) -> None:
        if self._listener is not None:
            self._unlink()  # new shims go in-process from now on instead of queueing here
        deadline = time.monotonic() + timeout
        while True:
            with self._mu:
                self._wake.notify_all()  # idle workers see the stop flag and leave
                workers = list(self._workers)
            if not workers:
                return
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                log.warning("%d CNI request(s) still running at shutdown", len(workers))
                return

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        """Remove our socket and release the agent lock."""
        self._unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Agent:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------

    def _submit(self, request: Request) -> None:
        """Hand `request` to an idle worker, or a new one, or queue it, or (all full) close it
        unanswered."""
        with self._mu:
            if self._idle > len(self._pending):  # an idle worker takes it: no thread to start
                self._pending.append(request)
                self._wake.notify()
                return
            if len(self._workers) < self.limits.max_workers:
                worker = threading.Thread(
                    target=self._work, args=(request,), name="sriovkit-cni", daemon=True
                )
                self._workers.add(worker)
                try:
                    worker.start()
                    return
                except RuntimeError as exc:  # no thread to be had: like a full queue
                    self._workers.discard(worker)
                    why = str(exc)
            elif len(self._pending) < self.limits.max_pending:
                self._pending.append(request)
                return
            else:
                why = f"{len(self._pending)} requests already waiting"
        log.warning("closing a CNI request unanswered: %s", why)
        request.close()

    def _work(self, request: Request) -> None:
        """Run requests until none has come for `_IDLE_EXIT` seconds, or the agent stops.

        Workers stay a while once idle: starting a thread per request costs ~0.1 ms of the
        request and of the GIL every concurrent request shares.
        """
        me = threading.current_thread()
        try:
            while True:
                try:
                    self.handle(request)
                except Exception:  # a worker must never take the agent down
                    log.exception("CNI request failed in the agent")
                finally:
                    request.close()
                with self._mu:  # leaving and looking at the queue are one step for _submit
                    deadline = time.monotonic() + _IDLE_EXIT
                    while not self._pending and not self._stop.is_set():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._idle += 1
                        try:
                            self._wake.wait(left)
                        finally:
                            self._idle -= 1
                    if not self._pending:
                        self._workers.discard(me)
                        return
                    request = self._pending.popleft()
        except BaseException:
            with self._mu:
                self._workers.discard(me)
            raise

    def handle(self, request: Request) -> None:
        """Run one complete request and answer it."""
        env = dict(request.env)
        deadline = deadline_of(env)
        env.pop(DEADLINE, None)
        started = time.monotonic()
        code, out = self.run(
            merged_env(self.defaults, env),
            request.stdin,
            ctx_factory=self.ctx_factory,
            still_wanted=still_wanted_for(request.sock, deadline),
        )
        log.info(
            "%s %s/%s -> %d in %.1f ms",
            env.get("CNI_COMMAND", "?"),
            env.get("CNI_CONTAINERID", "-"),
            env.get("CNI_IFNAME", "-"),
            code,
            (time.monotonic() - started) * 1000,
        )
        request.sock.settimeout(self.limits.answer_timeout)
        try:
            request.sock.sendall(encode_answer(code, out))
        except OSError as exc:
            # The shim timed out or was killed; DEL retries and GC settle what it missed.
            log.warning("could not answer %s: %s", env.get("CNI_COMMAND", "?"), exc)


__all__ = [
    "DEFAULT_SOCKET",
    "REQUEST_SETTINGS",
    "SOCKET_ENV",
    "Agent",
    "Limits",
    "ProtocolError",
    "encode_answer",
    "merged_env",
    "still_wanted_for",
]
