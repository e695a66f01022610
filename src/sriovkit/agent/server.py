"""The agent's unix-socket server: one worker thread per CNI request, `dispatch.execute` in each.

Protocol (see `sriovkit.cni.shim`, which must stay free of imports): the shim sends
`b"SKC1" | u32 len(env) | u32 len(stdin) | env | stdin` and half-closes; the agent answers
`b"SKR1" | u32 exit code | u32 len(stdout) | stdout` and closes. `env` is NUL-separated
`KEY=VALUE` entries; only CNI_* and SRIOVKIT_* keys are used, laid over the agent's defaults
(its --root and --state-dir), so a request names its own state dir exactly as the in-process
path does and both paths always share one state and one lock per VF.

Rules the node agent lives by:

- Requests on different VFs run in parallel; two on the same VF serialize on the state store's
  per-VF flock() inside ops.attach (flock locks belong to open files, so threads exclude each
  other like processes do).
- No Python child is ever forked (the device plugin will run grpc here): IPAM plugins are
  exec'd, and netns-bound netlink sockets are opened by short-lived threads, never by setns() on
  the main thread.
- Access is root-only: the socket is 0600 in a 0700 directory we create, and the peer's uid is
  checked with SO_PEERCRED. A lock file beside the socket makes a second agent refuse to start
  instead of stealing the socket; a socket left by a dead agent is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from sriovkit.cni.dispatch import ContextFactory, execute, host_context, root_of
from sriovkit.cni.shim import MAGIC_ANSWER, MAGIC_REQUEST, error_json
from sriovkit.errors import Busy, HostError, InvalidInput

DEFAULT_SOCKET = Path("/run/sriovkit/agent.sock")
SOCKET_ENV = "SRIOVKIT_AGENT_SOCKET"
MAX_ENV = 1 << 20
MAX_STDIN = 1 << 24
READ_TIMEOUT = 10.0  # a shim writes its whole request at once; a stalled peer is dropped
MAX_WORKERS = 256
_FORWARDED = ("CNI_", "SRIOVKIT_")
_POLL = 0.5  # how often the accept loop looks at the stop flag

log = logging.getLogger("sriovkit.agent")

Execute = Callable[..., tuple[int, bytes]]


class ProtocolError(Exception):
    """A request that is not a well-formed SKC1 frame."""


class EmptyRequest(ProtocolError):
    """The peer closed without sending anything (a liveness probe)."""


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise ProtocolError(f"request truncated after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def decode_request(conn: socket.socket) -> tuple[dict[str, str], bytes]:
    """Read one request frame: (CNI_*/SRIOVKIT_* env, stdin)."""
    first = conn.recv(12)
    if not first:
        raise EmptyRequest("the peer sent nothing")
    head = first + _recv_exact(conn, 12 - len(first))
    if head[:4] != MAGIC_REQUEST:
        raise ProtocolError("not a sriovkit CNI request (bad magic)")
    env_len, stdin_len = struct.unpack(">II", head[4:])
    if env_len > MAX_ENV or stdin_len > MAX_STDIN:
        raise ProtocolError(f"request too large ({env_len} + {stdin_len} bytes)")
    block = _recv_exact(conn, env_len)
    stdin = _recv_exact(conn, stdin_len)
    env: dict[str, str] = {}
    for entry in block.split(b"\0") if block else ():
        key, sep, value = entry.decode("utf-8", "surrogateescape").partition("=")
        if sep and key.startswith(_FORWARDED):
            env[key] = value
    return env, stdin


def encode_answer(code: int, out: bytes) -> bytes:
    """The answer frame for exit code `code` and stdout `out`."""
    return MAGIC_ANSWER + struct.pack(">II", code & 0xFFFFFFFF, len(out)) + out


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Agent:
    """A CNI server on the unix socket `path`; `open()`, then `serve()` until `stop()`."""

    def __init__(
        self,
        path: Path,
        defaults: Mapping[str, str] | None = None,
        *,
        ctx_factory: ContextFactory = host_context,
        run: Execute = execute,
    ) -> None:
        self.path = Path(path)
        self.defaults = dict(defaults or {})
        self.ctx_factory = ctx_factory
        self.run = run
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._lock_fd: int | None = None
        self._inode: int | None = None
        self._workers: set[threading.Thread] = set()
        self._slots = threading.BoundedSemaphore(MAX_WORKERS)
        self._mu = threading.Lock()

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
        old = os.umask(0o177)  # the socket is born 0600: no window where others can connect
        try:
            listener.bind(str(self.path))
        except OSError as exc:
            listener.close()
            raise HostError(f"cannot bind {self.path}: {exc.strerror}", exc.errno) from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino
        listener.listen(512)  # 64+ pods may start at once; the kernel caps at somaxconn
        listener.settimeout(_POLL)
        self._listener = listener

    def serve(self) -> None:
        """Accept and dispatch requests until `stop()`; then wait for the ones in flight."""
        listener = self._listener
        if listener is None:
            raise HostError("the agent socket is not open")
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    break
                log.warning("accept on %s failed: %s", self.path, exc.strerror)
                time.sleep(0.05)
                continue
            self._slots.acquire()
            worker = threading.Thread(
                target=self._worker, args=(conn,), name="sriovkit-cni", daemon=True
            )
            with self._mu:
                self._workers.add(worker)
            worker.start()
        self._drain()

    def stop(self) -> None:
        """Ask `serve()` to return (safe from a signal handler or another thread)."""
        self._stop.set()

    def _drain(self, timeout: float = 150.0) -> None:
        if self._listener is not None:
            self._unlink()  # new shims go in-process from now on instead of queueing here
        deadline = time.monotonic() + timeout
        while True:
            with self._mu:
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

    # --- one request ----------------------------------------------------------------------

    def _worker(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.handle(conn)
        except Exception:  # a worker must never take the agent down
            log.exception("CNI request failed in the agent")
        finally:
            with self._mu:
                self._workers.discard(threading.current_thread())
            self._slots.release()

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection: read the request, run it, write the answer."""
        conn.settimeout(READ_TIMEOUT)
        if _peer_uid(conn) not in {0, os.geteuid()}:
            conn.sendall(encode_answer(1, error_json(999, "permission denied: not root")))
            return
        try:
            env, stdin = decode_request(conn)
        except EmptyRequest:
            return  # a liveness probe (connect and close), e.g. from a second agent
        except (ProtocolError, OSError) as exc:
            log.warning("bad request: %s", exc)
            with contextlib.suppress(OSError):
                conn.sendall(encode_answer(1, error_json(999, "bad agent request", str(exc))))
            return
        started = time.monotonic()
        code, out = self.run({**self.defaults, **env}, stdin, ctx_factory=self.ctx_factory)
        log.info(
            "%s %s/%s -> %d in %.1f ms",
            env.get("CNI_COMMAND", "?"),
            env.get("CNI_CONTAINERID", "-"),
            env.get("CNI_IFNAME", "-"),
            code,
            (time.monotonic() - started) * 1000,
        )
        conn.settimeout(READ_TIMEOUT)
        try:
            conn.sendall(encode_answer(code, out))
        except OSError as exc:
            # The shim timed out or was killed; DEL retries and GC settle what it missed.
            log.warning("could not answer %s: %s", env.get("CNI_COMMAND", "?"), exc)


def warm(defaults: Mapping[str, str]) -> None:
    """Pay the imports (pyroute2 ~140 ms) and the first netlink socket now, not on a pod's ADD."""
    try:
        root = root_of(defaults)
    except InvalidInput:
        return
    try:
        with host_context({**defaults, "CNI_PATH": ""}):
            pass
    except Exception as exc:  # a cold cache is not fatal; requests report errors
        log.warning("warm-up on %s failed: %s", root, exc)


def run_agent(
    path: Path,
    defaults: Mapping[str, str] | None = None,
    *,
    ready: Callable[[Agent], None] | None = None,
) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (must be the main thread)."""
    agent = Agent(path, defaults)
    warm(agent.defaults)
    agent.open()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the requests in flight", signum)
        agent.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("serving CNI requests on %s", path)
        if ready is not None:
            ready(agent)
        agent.serve()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        agent.close()


__all__ = [
    "DEFAULT_SOCKET",
    "SOCKET_ENV",
    "Agent",
    "EmptyRequest",
    "ProtocolError",
    "decode_request",
    "encode_answer",
    "run_agent",
    "warm",
]
