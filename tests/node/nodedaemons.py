"""Daemons of the node tier, each run under `strace` so the tier can tell where they connected.

The network rule (../shared/KUBELET-NOTES.md): kubelet 1.20's built-in AWS credential provider
asks the EC2 metadata address 169.254.169.254 at start unless `AWS_EC2_METADATA_DISABLED=true`
is in its environment. Every daemon here gets that variable, and runs as
`strace -f --seccomp-bpf -e trace=connect` (only connect(2) stops the tracee, so the cost is
small): `foreign_connects()` reads every connect of the daemon and of everything it started
(containerd's shims, runc, the CNI plugins) and lists those to an address other than loopback.
Go's resolver and HTTP client connect() their UDP and TCP sockets alike, so no datagram to a
remote address leaves without a connect line in the trace.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

NETWORK_RULE = {"AWS_EC2_METADATA_DISABLED": "true"}
_INET = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')


def _loopback(address: str) -> bool:
    return (
        address.startswith("127.")
        or address in ("::1", "0.0.0.0", "::")
        or address.startswith("::ffff:127.")
    )


def foreign_connects(trace: Path) -> list[str]:
    """The connect(2) lines of an strace log whose IPv4/IPv6 destination is not loopback."""
    out = []
    try:
        text = trace.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        if "connect(" not in line:
            continue
        addresses = _INET.findall(line) + _INET6.findall(line)
        if any(not _loopback(a) for a in addresses):
            out.append(line.strip())
    return out


def connect_lines(trace: Path) -> int:
    """How many connect(2) calls the trace holds (proof that it traced something)."""
    try:
        return sum("connect(" in line for line in trace.read_text(errors="replace").splitlines())
    except FileNotFoundError:
        return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class Traced:
    """One daemon under strace: `start()`, `stop()` (SIGTERM to the daemon, not to strace,
    which would only detach), `log` holds its output, `trace` its connect(2) calls."""

    def __init__(self, name: str, argv: Sequence[str], directory: Path,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.name = name
        self.argv = list(argv)
        self.log = directory / f"{name}.log"
        self.trace = directory / f"{name}.strace"
        self.env = {**(env or {}), **NETWORK_RULE}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start it (again); the log and the trace are appended to, across restarts."""
        self.starts += 1
        argv = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-e",
                "signal=none", "-A", "-o", str(self.trace), "--", *self.argv]  # fmt: skip
        with self.log.open("ab") as out:
            out.write(f"==== start {self.starts} ====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The daemon's own pid (strace's child), once it has been forked."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = _children(self.proc.pid)
            if kids:
                return kids[0]
            time.sleep(0.02)
        return None

    def running(self) -> bool:
        """True while strace (and so the daemon) has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the daemon, SIGKILL it after `timeout`; strace exits with it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # strace itself: its tracee then runs on untraced
                self.proc.wait()

    def log_text(self) -> str:
        """Everything the daemon wrote so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def wait_until(what: str, check: object, timeout: float = 60.0, interval: float = 0.2) -> object:
    """Poll `check()` until it returns something truthy; fail naming `what` after `timeout`.

    A wait, not a timed assertion: `timeout` is a generous bound for a stuck daemon.
    """
    assert callable(check)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


__all__ = ["NETWORK_RULE", "Traced", "connect_lines", "foreign_connects", "wait_until"]
