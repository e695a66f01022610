"""The installed CNI plugin executable: forward one invocation to the node agent.

`sriovkit install-cni` writes this file into the CNI bin dir behind `#!<python> -IS`, with
SOCKET, SITE and SETTINGS filled in. It imports only modules built into the interpreter: `json`
alone would cost ~7 ms of a ~30 ms budget (it pulls in `re` and `enum`), so requests and
answers use a small binary framing (big-endian), answers being what `dispatch.execute` returns:

    request  b"SKC1" | u32 len(env) | u32 len(stdin) | env | stdin
             env = b"\\0".join(b"KEY=VALUE") of the CNI_* and SRIOVKIT_* variables only
    answer   b"SKR1" | u32 exit code | u32 len(stdout) | stdout

Settings baked in at install (SOCKET; SRIOVKIT_STATE_DIR and SRIOVKIT_ROOT in SETTINGS) win over
the caller's environment: runtimes do not give every verb the same one (podman runs DEL from
conmon's cleanup with a reduced one), and an ADD and its DEL must share one state directory.
Only `SRIOVKIT_AGENT=off` (run in-process: tests, benchmarks) is read from it.

VERSION, which libcni runs before every ADD and DEL, is answered here byte for byte as `execute`
answers it (`version_answer` reads the config as strictly as json.loads; what it cannot be sure
of, very deep nesting, goes the ordinary way).

When the agent cannot be reached (no socket, refused, or it died, timed out or was overloaded
before answering anything but an ADD), the shim puts SITE on sys.path and runs `execute` in this
process: slow (pyroute2 is imported) but the same code on the same state. Without that fallback
(installed with `--fallback none`, or sriovkit not importable) the rules of the static C shim
(shim.c) apply, equal on every verb: VERSION is answered here, ADD, CHECK and GC fail with code 11
and STATUS with 50, naming the socket, and DEL is written durably to the pending-DEL journal
(`<state dir>/pending-del/<containerID>@<ifname>.del`, the request frame without its deadline)
and succeeds; the agent replays the journal at start, before it serves (`agent/journal.py`).
Both shims hold `locks/pending-del.lock` shared while they decide and write, and try the agent
once more under it: the agent takes it exclusively to replay, once it listens, so an entry is
either replayed or never written.

A lost ADD (sent, never answered) is not repeated here: it fails with code 11 (try again). Each
request carries SRIOVKIT_DEADLINE, the wall-clock time at which this shim stops waiting; ADD,
once it holds the attachment's and the VF's locks and before it changes anything, checks that
the deadline has not passed and that this shim has not closed the connection, so an ADD the
agent had not started never starts (`Abandoned`). One already past that check completes or rolls
itself back; what it attached is given back by the DEL runtimes send for a sandbox whose set-up
failed (it waits for the ADD on the attachment's lock, so it sees its records), or else by GC,
or by the next ADD of that VF once the pod's netns is gone.
"""

import _codecs
import _socket
import posix
import sys
import time

DEFAULT_SOCKET = "/run/sriovkit/agent.sock"
"""The agent's socket unless told otherwise. Defined here, once: this file cannot import the
package, so the agent, `sriovkit agent` and `install-cni` take it from here."""
SOCKET_ENV = b"SRIOVKIT_AGENT_SOCKET"
"""Names another socket for `sriovkit agent` and `install-cni`; never read by the shim itself."""
# `install-cni` replaces the next line with the socket it bakes in (it looks for it verbatim).
SOCKET = DEFAULT_SOCKET
SITE: tuple[str, ...] = ()
# False: installed with `--fallback none`; no in-process path, the no-agent rules apply.
FALLBACK = True
# SRIOVKIT_STATE_DIR / SRIOVKIT_ROOT fixed at install time and sent with every request, so the
# agent and the in-process fallback always use one state directory and one set of VF locks.
SETTINGS: dict[bytes, bytes] = {}
TIMEOUT = 120.0  # seconds for one agent round trip: lock waits 2 x 30 s + IPAM 10 s + slack
CONNECT_TIMEOUT = 5.0  # seconds to get past a full listen backlog

JOURNAL_DIR = "pending-del"
"""The pending-DEL journal's directory under the state directory (also read by the agent)."""
JOURNAL_LOCK = "pending-del.lock"
"""Its lock file, under the state directory's `locks/`."""
JOURNAL_SUFFIX = ".del"

MAGIC_REQUEST = b"SKC1"
MAGIC_ANSWER = b"SKR1"
MAX_ANSWER = 1 << 24
DEADLINE_ENV = b"SRIOVKIT_DEADLINE"
_FORWARDED = (b"CNI_", b"SRIOVKIT_")

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""`sriovkit.model.cni_result.CNI_VERSIONS`, oldest first (a test keeps the two equal)."""


class AgentUnreachable(Exception):
    """No agent accepted the request: nothing was done, the in-process path may run it."""


class AgentLost(Exception):
    """The agent accepted the request but gave no answer: it may have done part of it."""


def _env() -> dict[bytes, bytes]:
    return {k: v for k, v in posix.environ.items() if k.startswith(_FORWARDED)}


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


# --- VERSION ----------------------------------------------------------------------------------
# What `json.loads` (with its C scanner) accepts, read only as far as the answer needs: the
# top-level object's last `cniVersion` member, or nothing when the input is not valid JSON.


class _Invalid(Exception):
    """Not JSON that json.loads accepts."""


class _Unsure(Exception):
    """Valid or not depends on the reading interpreter (its recursion or int-digit limit)."""


_MAX_DEPTH = 100  # json.loads fails with RecursionError near 1000, less what is on the stack
_MAX_INT = 600  # digits; the smallest int_max_str_digits an interpreter may be set to is 640
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_WORDS = ("null", "true", "false", "NaN", "Infinity", "-Infinity")


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in " \t\n\r":  # json's whitespace: not \f, not Unicode spaces
        i += 1
    return i


def _string(s: str, i: int) -> tuple[str, int]:
    """The string starting after the quote at i-1, decoded as far as a comparison needs it
    (a \\uXXXX surrogate stays a lone surrogate: no version or key we look for has one)."""
    out = []
    quote = -1
    while True:
        if quote < i:
            quote = s.find('"', i)
            if quote < 0:
                raise _Invalid("unterminated string")
        slash = s.find("\\", i, quote)
        stop = quote if slash < 0 else slash
        chunk = s[i:stop]
        if chunk and min(chunk) < " ":
            raise _Invalid("control character in a string")
        out.append(chunk)
        if slash < 0:
            return "".join(out), quote + 1
        esc = s[slash + 1 : slash + 2]
        if esc == "u":
            digits = s[slash + 2 : slash + 6]
            if len(digits) != 4 or not _HEX.issuperset(digits):
                raise _Invalid("bad \\u escape")
            out.append(chr(int(digits, 16)))
            i = slash + 6
        elif esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i = slash + 2
        else:
            raise _Invalid("bad escape")


def _digits(s: str, i: int) -> int:
    n = len(s)
    while i < n and "0" <= s[i] <= "9":
        i += 1
    return i


def _number(s: str, i: int) -> int:
    start = i
    if s[i] == "-":
        i += 1
    c = s[i : i + 1]
    if c == "0":
        i += 1
    elif "1" <= c <= "9":
        i = _digits(s, i + 1)
    else:
        raise _Invalid("bad number")
    is_int = True
    if s[i : i + 1] == "." and "0" <= s[i + 1 : i + 2] <= "9":
        i = _digits(s, i + 2)
        is_int = False
    if s[i : i + 1] in ("e", "E"):
        j = i + 1
        if s[j : j + 1] in ("+", "-"):
            j += 1
        end = _digits(s, j)
        if end > j:  # else the exponent is not part of the number (json backtracks too)
            i = end
            is_int = False
    if is_int and i - start > _MAX_INT:
        raise _Unsure("very long integer")
    return i


def _value(s: str, i: int, depth: int) -> int:
    c = s[i : i + 1]
    if c == '"':
        return _string(s, i + 1)[1]
    if c == "{":
        return _object(s, i + 1, depth + 1)[0]
    if c == "[":
        if depth + 1 > _MAX_DEPTH:
            raise _Unsure("deeply nested")
        i = _skip(s, i + 1)
        if s[i : i + 1] == "]":
            return i + 1
        while True:
            i = _skip(s, _value(s, i, depth + 1))
            c = s[i : i + 1]
            if c == "]":
                return i + 1
            if c != ",":
                raise _Invalid("expected , or ]")
            i = _skip(s, i + 1)
    for word in _WORDS:
        if s.startswith(word, i):
            return i + len(word)
    if c == "-" or "0" <= c <= "9":
        return _number(s, i)
    raise _Invalid("expected a value")


def _object(s: str, i: int, depth: int) -> tuple[int, str | None]:
    """(end, the last string `cniVersion` member or None) of the object whose { is at i-1."""
    if depth > _MAX_DEPTH:
        raise _Unsure("deeply nested")
    version = None
    i = _skip(s, i)
    if s[i : i + 1] == "}":
        return i + 1, None
    while True:
        if s[i : i + 1] != '"':
            raise _Invalid("expected a member name")
        key, i = _string(s, i + 1)
        i = _skip(s, i)
        if s[i : i + 1] != ":":
            raise _Invalid("expected :")
        i = _skip(s, i + 1)
        if key == "cniVersion":  # the last one wins, as in a dict
            if s[i : i + 1] == '"':
                version, i = _string(s, i + 1)
            else:
                version, i = None, _value(s, i, depth)
        else:
            i = _value(s, i, depth)
        i = _skip(s, i)
        c = s[i : i + 1]
        if c == "}":
            return i + 1, version
        if c != ",":
            raise _Invalid("expected , or }")
        i = _skip(s, i + 1)


def _decode(data: bytes) -> str:
    """`data` as json.loads decodes bytes (its detect_encoding, errors="surrogatepass")."""
    errors = "surrogatepass"
    if data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        return _codecs.utf_32_decode(data, errors, True)[0]
    if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return _codecs.utf_16_decode(data, errors, True)[0]
    if data[:3] == b"\xef\xbb\xbf":
        return _codecs.utf_8_decode(data[3:], errors, True)[0]
    decode = _codecs.utf_8_decode
    if len(data) >= 4:
        if not data[0]:
            decode = _codecs.utf_16_be_decode if data[1] else _codecs.utf_32_be_decode
        elif not data[1]:
            decode = _codecs.utf_16_le_decode if data[2] or data[3] else _codecs.utf_32_le_decode
    elif len(data) == 2:
        if not data[0]:
            decode = _codecs.utf_16_be_decode
        elif not data[1]:
            decode = _codecs.utf_16_le_decode
    return decode(data, errors, True)[0]


def version_answer(stdin: bytes) -> bytes | None:
    """VERSION's stdout: the config's cniVersion if supported (else the newest) and the
    supported versions; None when only the full plugin can tell (see `_Unsure`)."""
    version = None
    try:
        text = _decode(stdin)
        i = _skip(text, 0)
        if text[i : i + 1] == "{":  # anything but an object has no cniVersion: no need to read
            end, version = _object(text, i + 1, 1)
            if _skip(text, end) != len(text):
                version = None  # "Extra data"
    except _Unsure:
        return None
    except (_Invalid, ValueError):  # UnicodeDecodeError is a ValueError
        version = None
    return _version_json(version if version in VERSIONS else VERSIONS[-1])


def _version_json(version: str) -> bytes:
    listed = ",".join('"' + v + '"' for v in VERSIONS)
    return ('{"cniVersion":"%s","supportedVersions":[%s]}\n' % (version, listed)).encode()  # noqa: UP031


# --- the agent --------------------------------------------------------------------------------


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


def _recv_exact(sock: "_socket.socket", n: int, until: float) -> bytes:
    chunks = []
    while n > 0:
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)  # the budget is for the whole answer, not for each read
        chunk = sock.recv(min(n, 1 << 16))
        if not chunk:
            raise AgentLost("the agent closed the connection before answering")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _connect(path: str, until: float) -> "_socket.socket":
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT)
    deadline = min(time.monotonic() + CONNECT_TIMEOUT, until)
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
    """Send `request` to the agent at `path`; (exit code, stdout) of the invocation.

    `timeout` bounds the whole exchange, connecting included (AgentLost once it is spent).
    """
    until = time.monotonic() + timeout
    sock = _connect(path, until)
    try:
        try:
            sock.settimeout(max(until - time.monotonic(), 0.001))
            sock.sendall(request)
            # Half-close: the agent reads to EOF; it tells "gone" from this by POLLHUP.
            sock.shutdown(_socket.SHUT_WR)
            head = _recv_exact(sock, 12, until)
            if head[:4] != MAGIC_ANSWER:
                raise AgentLost("the agent answered with an unknown frame")
            code = int.from_bytes(head[4:8], "big")
            size = int.from_bytes(head[8:12], "big")
            if size > MAX_ANSWER:
                raise AgentLost(f"the agent's answer is too large ({size} bytes)")
            return code, _recv_exact(sock, size, until)
        except TimeoutError:
            raise AgentLost(f"the agent did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise AgentLost(f"lost the agent: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _fallback_execute() -> object | None:
    """`dispatch.execute` when the in-process path is available, else None."""
    if not FALLBACK:
        return None
    for entry in reversed(SITE):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    try:
        from sriovkit.cni.dispatch import execute  # noqa: PLC0415 - the slow path only
    except ImportError:
        return None
    return execute


def in_process(env: dict[bytes, bytes], stdin: bytes, why: str) -> tuple[int, bytes]:
    """Run the plugin in this process (the agent is not there), or the no-agent rules."""
    execute = _fallback_execute()
    if execute is None:
        return no_agent(env, stdin, why)
    text = {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in env.items()
        if k != DEADLINE_ENV  # ours to send, not a setting of the plugin
    }
    return execute(text, stdin)  # type: ignore[operator, no-any-return]


# --- no agent, no fallback: the pending-DEL journal ---------------------------------------------

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_QUOTE_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-~")


def journal_name(container_id: bytes, ifname: bytes) -> str | None:
    """`<containerID>@<ifname %-quoted>.del`, or None when either is not valid
    (`model/journal.py` holds the same rule; a test keeps the two equal)."""
    cid = container_id.decode("ascii", "replace")
    if not 0 < len(cid) <= 200 or not cid[0].isalnum() or not _ID_CHARS.issuperset(cid):
        return None
    if not 0 < len(ifname) < 16 or ifname in (b".", b".."):
        return None
    if any(c in b"/: \t\n\r\v\f\x1c\x1d\x1e\x1f\0" for c in ifname):
        return None
    quoted = "".join(chr(c) if c in _QUOTE_SAFE else "%%%02X" % c for c in ifname)  # noqa: UP031
    return cid + "@" + quoted + JOURNAL_SUFFIX


def _open_dir(name: str, dfd: int | None = None) -> int:
    """A directory (under `dfd`), created 0700 when missing; never through a symlink."""
    flags = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC
    try:
        return posix.open(name, flags, dir_fd=dfd)
    except FileNotFoundError:
        pass
    if dfd is None:
        parts = name.split("/")
        for n in range(2, len(parts)):
            try:  # noqa: SIM105 - contextlib is not built in
                posix.mkdir("/".join(parts[:n]), 0o755)
            except FileExistsError:
                pass
    try:  # noqa: SIM105
        posix.mkdir(name, 0o700, dir_fd=dfd)
    except FileExistsError:
        pass
    fd = posix.open(name, flags, dir_fd=dfd)
    posix.fchmod(fd, 0o700)
    if dfd is not None:
        posix.fsync(dfd)
    return fd


def _journal_write(dfd: int, name: str, data: bytes) -> None:
    import fcntl  # noqa: PLC0415 - not built in; only on this path

    try:
        st = posix.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if st.st_mode & 0o170000 != 0o100000:
            raise OSError(0, f"pending DEL {name} is not a regular file; refusing")
    tmp = f".{name}.{posix.getpid()}.{time.monotonic_ns()}.tmp"
    flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
    fd = posix.open(tmp, flags, 0o600, dir_fd=dfd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # the sweep tells a live writer's temp by its lock
            posix.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[posix.write(fd, view) :]
            posix.fsync(fd)
            posix.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            posix.close(fd)
    except BaseException:
        try:  # noqa: SIM105
            posix.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise
    posix.fsync(dfd)


def journal_del(
    env: dict[bytes, bytes], stdin: bytes, unavailable: str, retry: bool = True
) -> tuple[int, bytes]:
    """Write this DEL to the pending-DEL journal (or, if an agent now listens, send it there,
    once: `retry`)."""
    import fcntl  # noqa: PLC0415

    name = journal_name(env.get(b"CNI_CONTAINERID", b""), env.get(b"CNI_IFNAME", b""))
    if name is None:
        bad = "CNI_CONTAINERID is not a valid container id"
        if journal_name(env.get(b"CNI_CONTAINERID", b""), b"eth0") is not None:
            bad = "CNI_IFNAME is not a valid interface name"
        return 1, error_json(4, "cannot journal DEL: " + bad, unavailable)
    state = env.get(b"SRIOVKIT_STATE_DIR", b"").decode("utf-8", "surrogateescape")
    fds: list[int] = []
    try:
        root = _open_dir(state)
        fds.append(root)
        locks = _open_dir("locks", root)
        fds.append(locks)
        journal = _open_dir(JOURNAL_DIR, root)
        fds.append(journal)
        flags = posix.O_RDWR | posix.O_CREAT | posix.O_NOFOLLOW | posix.O_CLOEXEC
        lock = posix.open(JOURNAL_LOCK, flags, 0o600, dir_fd=locks)
        fds.append(lock)
        fcntl.flock(lock, fcntl.LOCK_SH)
        # Once more under the shared lock: an agent replays only once it holds it exclusively
        # (after it listens), so it either sees this entry or answers this DEL.
        try:
            sock = _connect(SOCKET, time.monotonic() + TIMEOUT) if retry else None
        except AgentUnreachable:
            sock = None
        if sock is not None:
            sock.close()
            for fd in reversed(fds):
                posix.close(fd)
            fds.clear()
            try:
                env[DEADLINE_ENV] = repr(time.time() + TIMEOUT).encode()
                return call_agent(SOCKET, encode_request(env, stdin), TIMEOUT)
            except (AgentUnreachable, AgentLost):
                return journal_del(env, stdin, unavailable, retry=False)
        env.pop(DEADLINE_ENV, None)
        _journal_write(journal, name, encode_request(env, stdin))
    except OSError as exc:
        where = f"state directory {state}"
        return 1, error_json(11, _unavailable(), f"{where}: {exc.strerror or exc}")
    finally:
        for fd in reversed(fds):
            posix.close(fd)
    return 0, b""


def _unavailable() -> str:
    return f"sriovkit agent at {SOCKET} unavailable"


def no_agent(env: dict[bytes, bytes], stdin: bytes, why: str) -> tuple[int, bytes]:
    """No agent and no in-process path: what shim.c does in the same case."""
    command = env.get(b"CNI_COMMAND", b"")
    if command == b"VERSION":  # only a config version_answer was unsure of gets here
        return 0, _version_json(VERSIONS[-1])
    if command == b"STATUS":
        return 1, error_json(50, _unavailable(), why)
    if command != b"DEL":
        return 1, error_json(11, _unavailable(), why)
    return journal_del(env, stdin, why)


def run(env: dict[bytes, bytes], stdin: bytes) -> tuple[int, bytes]:
    """The plugin: VERSION here, the rest through the agent when it answers, else in-process."""
    env.update(SETTINGS)  # baked in at install: the caller's environment does not get a say
    env.pop(SOCKET_ENV, None)  # nor over the socket: SOCKET is the baked one
    command = env.get(b"CNI_COMMAND", b"")
    if command == b"VERSION":
        answer = version_answer(stdin)
        if answer is not None:
            return 0, answer
    if env.get(b"SRIOVKIT_AGENT") == b"off":
        return in_process(env, stdin, "SRIOVKIT_AGENT=off")
    # The deadline is when this shim stops waiting; the agent does not start an ADD after it.
    env[DEADLINE_ENV] = repr(time.time() + TIMEOUT).encode()
    try:
        return call_agent(SOCKET, encode_request(env, stdin), TIMEOUT)
    except AgentUnreachable as exc:
        return in_process(env, stdin, str(exc))
    except AgentLost as exc:
        if command == b"ADD":
            return 1, error_json(11, "sriovkit agent failed during ADD; try again", str(exc))
        return in_process(env, stdin, str(exc))


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
