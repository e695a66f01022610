"""Helpers for the CNI process-level tests: install the real shim, run it, start the real agent.

Everything here runs real processes: the shim installed by `install-cni`, `sriovkit agent`, and
Debian's Go `host-local`. The host is a veth-mode simulated host (`sim/veth.py`).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from sriovkit.sim.netlink import FakeNetlink
from sriovkit.sim.veth import VethHost

CNI_BIN = Path("/usr/lib/cni")


def cni_plugins_missing() -> str | None:
    """Why the Go reference plugins cannot be used here, or None."""
    if not (CNI_BIN / "host-local").is_file():
        return f"needs Debian's containernetworking-plugins ({CNI_BIN}/host-local)"
    return None


SHIM_KINDS = ("python", "static")
"""The two shims every CNI process-level test runs through (the `shim_kind` fixture)."""
_BUILT: dict[str, Path] = {}


def static_shim_binary() -> Path:
    """The static shim, compiled once per test session (then installed with --shim-binary)."""
    if "static" not in _BUILT:
        from sriovkit.cni import cshim  # noqa: PLC0415

        compiler = cshim.find_compiler()
        assert compiler is not None, "the static shim's tests need a C compiler (cc)"
        built = Path(tempfile.mkdtemp(prefix="skshim", dir="/tmp"))
        atexit.register(shutil.rmtree, built, ignore_errors=True)  # once the session ends
        out = built / "shim"
        out.write_bytes(cshim.compile_shim(compiler))
        out.chmod(0o755)
        _BUILT["static"] = out
    return _BUILT["static"]


def install_shim(
    bin_dir: Path,
    agent_socket: Path,
    state: Path,
    root: Path,
    kind: str = "python",
    fallback: str | None = None,
) -> Path:
    """`sriovkit --root ROOT install-cni --bin-dir BIN_DIR --socket SOCK --state-dir STATE
    --shim KIND [--shim-binary BUILT] --fallback PYTHON|none`.

    The settings are fixed at install and win over the environment a test (or a runtime)
    runs the plugin with; the installed plugin's path is returned. Both kinds get the
    in-process fallback unless `fallback` says otherwise (the static shim runs this
    interpreter, the venv's, which can import sriovkit), so they behave alike.
    """
    from sriovkit.cli import cli  # noqa: PLC0415

    args = ["--root", str(root), "install-cni", "--bin-dir", str(bin_dir)]
    args += ["--socket", str(agent_socket), "--state-dir", str(state), "--shim", kind]
    if kind == "static":
        args += ["--shim-binary", str(static_shim_binary())]
        args += ["--fallback", fallback or sys.executable]
    elif fallback is not None:
        args += ["--fallback", fallback]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return bin_dir / "sriov"


def agent_argv(agent_socket: Path) -> list[str]:
    """`python -m sriovkit.cli agent --socket SOCK`: the real CLI entry point."""
    return [sys.executable, "-m", "sriovkit.cli", "agent", "-v", "--socket", str(agent_socket)]


NO_AGENT = Path("/nonexistent/sriovkit-agent.sock")
"""An agent socket nobody listens on: connect() fails and the shim runs in-process."""


@contextmanager
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="skcni", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class AgentProcess:
    """A running `sriovkit agent` process."""

    socket: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the agent dies without cleaning up (stale socket stays)."""
        self.proc.kill()
        self.proc.wait()


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Until the agent accepts connections on `path` (fails if the agent exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited with {proc.returncode} before listening")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"agent did not listen on {path} within {timeout} s")


@contextmanager
def running_agent(directory: Path) -> Iterator[AgentProcess]:
    """Start `sriovkit agent` on `directory/agent.sock`; stop it at exit."""
    path = directory / "agent.sock"
    log = directory / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            agent_argv(path), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    agent = AgentProcess(path, proc, log)
    try:
        wait_for_socket(path, proc)
        yield agent
    finally:
        agent.stop()


@dataclass
class Outcome:
    """What one plugin run produced."""

    code: int
    stdout: bytes
    stderr: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class CniLab:
    """One test's world: the veth host, its state dir, the IPAM data dir, the installed shim."""

    host: VethHost
    state: Path
    ipam_dir: Path
    shim: Path
    agent_socket: Path
    netns: list[Path] = field(default_factory=list)

    def conf(self, vf: str | None, version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
        """A `sriov` network config for `vf` with host-local IPAM in this test's data dir."""
        conf: dict[str, Any] = {
            "cniVersion": version,
            "name": "sriov-test",
            "type": "sriov",
            "ipam": {
                "type": "host-local",
                "subnet": "10.56.0.0/24",
                "dataDir": str(self.ipam_dir),
                "routes": [{"dst": "10.57.0.0/16"}],
            },
        }
        if vf is not None:
            conf["deviceID"] = vf
        conf.update(fields)
        return conf

    def env(
        self,
        command: str,
        container: str | None = None,
        netns: Path | None = None,
        ifname: str = "net1",
        *,
        agent: bool = True,
    ) -> dict[str, str]:
        """The environment a runtime would give the plugin."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_PATH": str(CNI_BIN),
            "SRIOVKIT_ROOT": str(self.host.root),
            "SRIOVKIT_STATE_DIR": str(self.state),
            "SRIOVKIT_AGENT_SOCKET": str(self.agent_socket),
        }
        if not agent:
            env["SRIOVKIT_AGENT"] = "off"
        if container is not None:
            env["CNI_CONTAINERID"] = container
            env["CNI_IFNAME"] = ifname
        if netns is not None:
            env["CNI_NETNS"] = str(netns)
        return env

    def run(self, env: Mapping[str, str], stdin: bytes | Mapping[str, Any]) -> Outcome:
        """Execute the installed shim with `env` and `stdin`, as a runtime does."""
        data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
        proc = subprocess.run(
            [str(self.shim)],
            check=False,
            input=data,
            env=dict(env),
            capture_output=True,
            timeout=180,
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, env: Mapping[str, str], stdin: Mapping[str, Any]) -> subprocess.Popen[bytes]:
        """Start the shim without waiting (for concurrency tests); stdin is already written."""
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, json.dumps(stdin).encode())  # a config fits in the pipe buffer
        finally:
            os.close(write_end)
        try:
            return subprocess.Popen(
                [str(self.shim)],
                stdin=read_end,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
            )
        finally:
            os.close(read_end)

    def new_netns(self) -> Path:
        """A throwaway network namespace, deleted at teardown."""
        name = f"skpod-{uuid.uuid4().hex[:10]}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        path = Path("/run/netns") / name
        self.netns.append(path)
        return path

    def cleanup(self) -> None:
        """Delete the namespaces this test made."""
        for path in self.netns:
            subprocess.run(["ip", "netns", "del", path.name], check=False, capture_output=True)

    # --- what the host looks like ------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every VF's netdev in the host netns (name, MAC, MTU, admin up), PF-side attributes,
        records and IPAM leases: what "the host is unchanged" compares."""
        links = ip_links()
        netdevs = {}
        for pair in self.host.pairs:
            seen = links.get(pair.name)
            netdevs[pair.vf] = (
                None
                if seen is None
                else (seen["ifname"], seen["address"], seen["mtu"], "UP" in seen["flags"])
            )
        fake = FakeNetlink(self.host.root)
        try:
            vfs = {pf.netdev: fake.vfs(pf.netdev) for pf in self.host.sim.pfs if pf.netdev}
        finally:
            fake.close()
        return {
            "netdevs": netdevs,
            "vfs": {
                k: [
                    (
                        v.index,
                        v.mac,
                        v.vlan,
                        v.qos,
                        v.proto,
                        v.spoofchk,
                        v.trust,
                        v.link_state,
                        v.min_tx_rate,
                        v.max_tx_rate,
                    )
                    for v in vv
                ]
                for k, vv in vfs.items()
            },
            "records": self.records(),
            "leases": self.leases(),
        }

    def records(self) -> list[str]:
        """Attachment and allocation records in the state dir."""
        out = []
        for sub in ("attachments", "allocations"):
            d = self.state / sub
            if d.is_dir():
                out += [f"{sub}/{p.name}" for p in d.iterdir() if not p.name.startswith(".")]
        return sorted(out)

    def leases(self) -> list[str]:
        """host-local's allocations (one file per IP) in this test's data dir."""
        out = []
        if self.ipam_dir.is_dir():
            for net in self.ipam_dir.iterdir():
                out += [
                    f"{net.name}/{p.name}"
                    for p in net.iterdir()
                    if p.name[:1].isdigit() or ":" in p.name
                ]
        return sorted(out)


def ip_links(netns: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """`ip -j link show` in the host netns or in `netns`, by name."""
    ns = Path(netns).name if netns is not None else None
    args = ["ip", "-j", *(["-n", ns] if ns else []), "link", "show"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return {lk["ifname"]: lk for lk in json.loads(out)}


def ip_addrs(netns: Path, dev: str) -> list[str]:
    """IPv4 addresses (CIDR) of `dev` in `netns`."""
    out = subprocess.run(
        ["ip", "-j", "-n", netns.name, "-4", "addr", "show", "dev", dev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [
        f"{a['local']}/{a['prefixlen']}" for lk in json.loads(out) for a in lk.get("addr_info", [])
    ]


def which_ip() -> bool:
    return shutil.which("ip") is not None


__all__ = [
    "CNI_BIN",
    "NO_AGENT",
    "SHIM_KINDS",
    "AgentProcess",
    "CniLab",
    "Outcome",
    "agent_argv",
    "cni_plugins_missing",
    "install_shim",
    "ip_addrs",
    "ip_links",
    "running_agent",
    "short_dir",
    "static_shim_binary",
    "wait_for_socket",
]
