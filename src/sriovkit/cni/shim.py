"""The installed CNI plugin executable: forward one invocation to the node agent.

`sriovkit install-cni` writes this file into the CNI bin dir behind `#!<python> -IS`, with
SOCKET and SITE filled in. It imports only modules built into the interpreter (`_socket`,
`posix`, `sys`, `time`): `json` alone would cost ~7 ms of a ~30 ms budget (it pulls in `re` and
`enum`), so requests and answers use a small binary framing instead:

    request  b"SKC1" | u32 len(env) | u32 len(stdin) | env | stdin
             env = b"\\0".join(b"KEY=VALUE") of the CNI_* and SRIOVKIT_* variables only
    answer   b"SKR1" | u32 exit code | u32 len(stdout) | stdout

(big-endian). The agent answers with exactly what `sriovkit.cni.dispatch.execute` returns.

When the agent cannot be reached (no socket, refused, or it died or timed out before answering
anything but an ADD), the shim puts SITE on sys.path and runs `execute` in this process: slow
(pyroute2 is imported) but the same code on the same state, so DEL always works. An ADD the agent
may have half done is not repeated here: it fails with code 11 (try again), and the runtime's
DEL cleans up. `SRIOVKIT_AGENT=off` skips the agent (tests, benchmarks), and
`SRIOVKIT_AGENT_SOCKET` overrides the socket baked in at install time.
"""

import _socket
import posix
import sys
import time

SOCKET = "/run/sriovkit/agent.sock"
SITE: tuple[str, ...] = ()
# SRIOVKIT_STATE_DIR / SRIOVKIT_ROOT fixed at install time and sent with every request, so the
# agent and the in-process fallback always use one state directory and one set of VF locks.
SETTINGS: dict[bytes, bytes] = {}
TIMEOUT = 120.0  # seconds for one agent round trip: lock wait 30 s + IPAM 10 s + slack
CONNECT_TIMEOUT = 5.0  # seconds to get past a full listen backlog

MAGIC_REQUEST = b"SKC1"
MAGIC_ANSWER = b"SKR1"
MAX_ANSWER = 1 << 24
_FORWARDED = (b"CNI_", b"SRIOVKIT_")


class AgentUnreachable(Exception):
    """No agent accepted the request: nothing was done, the in-process path may run it."""


class AgentLost(Exception):
    """The agent accepted the request but gave no answer: it may have done part of it."""


def _env() -> dict[bytes, bytes]:
    return {k: v for k, v in posix.environ.items() if k.startswith(_FORWARDED)}


def _setting(env: dict[bytes, bytes], name: bytes, default: str) -> str:
    value = env.get(name)
    return value.decode("utf-8", "surrogateescape") if value else default


def _quote(text: str) -> str:
    """`text` as a JSON string (json is not imported here)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or "\ud800" <= ch <= "\udfff":
            # Controls must be escaped; a lone surrogate (from surrogateescape) cannot be UTF-8.
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def error_json(code: int, msg: str, details: str = "") -> bytes:
    """The CNI spec's error object, built without json."""
    text = '{"cniVersion":"1.1.0","code":%d,"msg":%s' % (code, _quote(msg))  # noqa: UP031
    if details:
        text += ',"details":' + _quote(details)
    return (text + "}\n").encode()


def encode_request(env: dict[bytes, bytes], stdin: bytes) -> bytes:
    """The request frame for `env` and `stdin`."""
    block = b"\0".join(k + b"=" + v for k, v in env.items())
    return (
        MAGIC_REQUEST
        + len(block).to_bytes(4, "big")
        + len(stdin).to_bytes(4, "big")
        + block
        + stdin
    )


def _recv_exact(sock: "_socket.socket", n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 16))
        if not chunk:
            raise AgentLost("the agent closed the connection before answering")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _connect(path: str) -> "_socket.socket":
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            # A unix socket's full listen backlog says EAGAIN to a non-blocking connect.
            if time.monotonic() > deadline:
                sock.close()
                raise AgentUnreachable(f"agent socket {path}: backlog full") from None
            time.sleep(0.005)
        except OSError as exc:
            sock.close()
            raise AgentUnreachable(f"agent socket {path}: {exc.strerror or exc}") from None


def call_agent(path: str, request: bytes, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    """Send `request` to the agent at `path`; (exit code, stdout) of the invocation."""
    sock = _connect(path)
    try:
        sock.settimeout(timeout)
        try:
            sock.sendall(request)
            sock.shutdown(_socket.SHUT_WR)
            head = _recv_exact(sock, 12)
            if head[:4] != MAGIC_ANSWER:
                raise AgentLost("the agent answered with an unknown frame")
            code = int.from_bytes(head[4:8], "big")
            size = int.from_bytes(head[8:12], "big")
            if size > MAX_ANSWER:
                raise AgentLost(f"the agent's answer is too large ({size} bytes)")
            return code, _recv_exact(sock, size)
        except TimeoutError:
            raise AgentLost(f"the agent did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise AgentLost(f"lost the agent: {exc.strerror or exc}") from None
    finally:
        sock.close()


def in_process(env: dict[bytes, bytes], stdin: bytes) -> tuple[int, bytes]:
    """Run the plugin in this process (the agent is not there)."""
    for entry in reversed(SITE):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        from sriovkit.cni.dispatch import execute  # noqa: PLC0415 - the slow path only
    except ImportError as exc:
        return 1, error_json(
            999, "sriovkit agent unreachable and sriovkit not importable", str(exc)
        )
    text = {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in env.items()
    }
    return execute(text, stdin)


def run(env: dict[bytes, bytes], stdin: bytes) -> tuple[int, bytes]:
    """The plugin: through the agent when it answers, in-process otherwise."""
    for key, value in SETTINGS.items():
        env.setdefault(key, value)
    path = _setting(env, b"SRIOVKIT_AGENT_SOCKET", SOCKET)
    command = env.get(b"CNI_COMMAND", b"")
    if _setting(env, b"SRIOVKIT_AGENT", "") == "off":
        return in_process(env, stdin)
    try:
        return call_agent(path, encode_request(env, stdin))
    except AgentUnreachable:
        return in_process(env, stdin)
    except AgentLost as exc:
        if command == b"ADD":
            return 1, error_json(11, "sriovkit agent failed during ADD; try again", str(exc))
        return in_process(env, stdin)


def main() -> int:
    """Entry point: read stdin, run, write the answer, return the exit code."""
    try:
        stdin = sys.stdin.buffer.read()
        code, out = run(_env(), stdin)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # the boundary: JSON, never a traceback
        code, out = 1, error_json(999, "internal error", type(exc).__name__ + ": " + str(exc))
    try:
        sys.stdout.buffer.write(out)
        sys.stdout.buffer.flush()
    except OSError:
        return code or 1
    return code


def _exit(code: int) -> None:
    """Exit without interpreter finalization, ~1 ms of a ~30 ms budget (and more after the
    in-process path's imports). Safe because nothing is left to flush: the answer went out
    through a flushed stdout, the log file is written with unbuffered os.write, the agent
    socket and any netlink socket are closed by the kernel, and no thread is still running."""
    try:  # noqa: SIM105 - contextlib is not built in; importing it costs more than this saves
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    posix._exit(code)


if __name__ == "__main__":
    _exit(main())
