"""The CNI dispatcher, the shim's protocol and the agent's socket, without root.

Process-level runs against a real host (veth, netns, host-local) are in
tests/integration/test_cni_shim.py; here the agent runs in a thread with a recording `run`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.protocol import HEAD_SIZE, parse_env, parse_head
from sriovkit.agent.server import Agent, encode_answer
from sriovkit.cni import shim
from sriovkit.cni.dispatch import execute
from sriovkit.cni.install import install_shim, render_shim
from sriovkit.errors import Busy, HostError
from sriovkit.host.state import default_state_dir
from sriovkit.ops.cni.context import AttachContext

# --- dispatch.execute --------------------------------------------------------------------------


def test_version_answers_from_cni_version_alone() -> None:
    code, out = execute({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.3.1", "junk": [}')
    assert code == 0
    assert json.loads(out)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    code, out = execute({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert json.loads(out)["cniVersion"] == "0.4.0"


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({}, 4),
        ({"CNI_COMMAND": "NOPE"}, 4),
        ({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a/b", "CNI_IFNAME": "x"}, 4),
    ],
)
def test_env_errors_are_code_4(env: dict[str, str], code: int) -> None:
    rc, out = execute(env, b'{"cniVersion": "0.4.0"}')
    assert rc == 1
    error = json.loads(out)
    assert (error["code"], error["cniVersion"]) == (code, "0.4.0")  # in the config's version


def test_a_bug_becomes_code_999_not_a_traceback(tmp_path: Path) -> None:
    @contextmanager
    def broken(env: Mapping[str, str]) -> Iterator[AttachContext]:
        raise ZeroDivisionError("boom")
        yield  # pragma: no cover

    conf = {"cniVersion": "1.1.0", "name": "n", "type": "sriov"}
    rc, out = execute({"CNI_COMMAND": "STATUS"}, json.dumps(conf).encode(), ctx_factory=broken)
    assert rc == 1
    error = json.loads(out)
    assert error["code"] == 999
    assert "ZeroDivisionError: boom" in error["details"]


def _del_env(tmp_path: Path, root: Path) -> dict[str, str]:
    return {
        "CNI_COMMAND": "DEL",
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/nonexistent",
        "SRIOVKIT_ROOT": str(root),
        "SRIOVKIT_STATE_DIR": str(tmp_path / "state"),
    }


def test_del_without_add_succeeds_even_with_a_broken_config(tmp_path: Path) -> None:
    from sriovkit.sim import create_host  # noqa: PLC0415

    create_host(tmp_path / "host", ["82576"], vfs=2)
    env = _del_env(tmp_path, tmp_path / "host")
    for stdin in (b"{not json", b'{"cniVersion": "9.9.9"}', b'{"cniVersion":"1.0.0","vlan":"x"}'):
        assert execute(env, stdin) == (0, b"")


def test_device_info_file_supplies_the_vf(tmp_path: Path) -> None:
    from sriovkit.cni.dispatch import read_device_info  # noqa: PLC0415
    from sriovkit.errors import InvalidInput  # noqa: PLC0415
    from sriovkit.model.cni import CniEnv, parse_netconf  # noqa: PLC0415

    info = tmp_path / "dev.json"
    info.write_text(json.dumps({"type": "pci", "pci": {"pci-address": "0000:3b:10.1"}}))
    conf = {
        "cniVersion": "1.0.0",
        "name": "n",
        "type": "sriov",
        "runtimeConfig": {"CNIDeviceInfoFile": str(info)},
    }
    env = CniEnv.from_env(
        {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "c",
            "CNI_IFNAME": "net1",
            "CNI_NETNS": "/run/netns/x",
            "CNI_PATH": "/x",
        }
    )
    parsed = parse_netconf(json.dumps(conf).encode(), env)
    assert str(read_device_info(parsed, required=True).device_id) == "0000:3b:10.1"
    info.unlink()
    with pytest.raises(InvalidInput, match="CNIDeviceInfoFile"):
        read_device_info(parsed, required=True)
    assert read_device_info(parsed, required=False).device_id is None  # DEL goes on


# --- the shim's framing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["plain", 'quo"te \\ back', "ctl\x00\n\t", "ünï €", "\U0001f600", "bad \udcff byte"]
)
def test_shim_error_json_is_json(text: str) -> None:
    error = json.loads(shim.error_json(11, text, text))
    assert (error["code"], error["msg"], error["details"]) == (11, text, text)


def test_request_round_trip_keeps_only_cni_and_sriovkit_vars() -> None:
    env = {b"CNI_COMMAND": b"ADD", b"SRIOVKIT_ROOT": b"/r", b"HOME": b"/root", b"CNI_ARGS": b"a=b"}
    frame = shim.encode_request(env, b'{"x": 1}')
    # What the agent's reader does with a frame (agent/reader.py): head, env block, stdin.
    env_len, stdin_len = parse_head(frame[:HEAD_SIZE])
    got_env = parse_env(frame[HEAD_SIZE : HEAD_SIZE + env_len])
    stdin = frame[HEAD_SIZE + env_len :]
    assert len(stdin) == stdin_len
    assert got_env == {"CNI_COMMAND": "ADD", "SRIOVKIT_ROOT": "/r", "CNI_ARGS": "a=b"}
    assert stdin == b'{"x": 1}'


# --- the agent ----------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []

    def __call__(self, env: Mapping[str, str], stdin: bytes, **kw: Any) -> tuple[int, bytes]:
        self.calls.append((dict(env), stdin))
        return 3, b"out:" + stdin


@contextmanager
def agent_thread(path: Path, run: Any, defaults: dict[str, str] | None = None) -> Iterator[Agent]:
    agent = Agent(path, defaults, run=run)
    agent.open()
    worker = threading.Thread(target=agent.serve, daemon=True)
    worker.start()
    try:
        yield agent
    finally:
        agent.stop()
        worker.join(10)
        agent.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="skut", dir="/tmp"))
    try:
        yield base / "run"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_agent_serves_the_shim_protocol(sock_dir: Path) -> None:
    path = sock_dir / "agent.sock"
    run = Recorder()
    with agent_thread(path, run, {"SRIOVKIT_STATE_DIR": "/default", "SRIOVKIT_ROOT": "/r0"}):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o700
        env = {
            b"CNI_COMMAND": b"DEL",
            b"SRIOVKIT_ROOT": b"/r1",
            b"SRIOVKIT_STATE_DIR": b"",  # empty: does not erase the agent's default
            b"SRIOVKIT_AGENT": b"on",  # the shim's business, not the plugin's
            b"SRIOVKIT_DEADLINE": b"1e300",  # the transport's, not the plugin's
            b"PATH": b"/bin",
        }
        code, out = shim.call_agent(str(path), shim.encode_request(env, b"cfg"), timeout=10)
    assert (code, out) == (3, b"out:cfg")
    # The request's settings win over the agent's defaults; nothing else gets through.
    assert run.calls == [
        ({"SRIOVKIT_STATE_DIR": "/default", "SRIOVKIT_ROOT": "/r1", "CNI_COMMAND": "DEL"}, b"cfg")
    ]
    assert not path.exists()  # removed at shutdown


def test_an_idle_worker_serves_the_next_request_and_leaves_at_shutdown(sock_dir: Path) -> None:
    """Workers outlive their request (a thread start per request costs the GIL time every
    concurrent request shares): one after another, requests run on the same thread; stopping
    the agent ends the idle ones."""
    path = sock_dir / "agent.sock"
    threads: list[int] = []

    def run(env: Mapping[str, str], stdin: bytes, **kw: Any) -> tuple[int, bytes]:
        threads.append(threading.get_ident())
        return 0, b""

    with agent_thread(path, run) as agent:
        for _ in range(3):
            request = shim.encode_request({b"CNI_COMMAND": b"DEL"}, b"{}")
            assert shim.call_agent(str(path), request, timeout=10) == (0, b"")
        assert len(set(threads)) == 1
        deadline = time.monotonic() + 5
        while agent._idle != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent._idle == 1 and len(agent._workers) == 1
    assert not agent._workers  # the idle worker left when the agent stopped
    assert not any(t.ident in threads for t in threading.enumerate())


def test_second_agent_is_refused_and_a_stale_socket_replaced(sock_dir: Path) -> None:
    path = sock_dir / "agent.sock"
    with agent_thread(path, Recorder()), pytest.raises(Busy, match="another sriovkit agent"):
        Agent(path).open()
    # A socket left by a dead agent (nobody holds the lock) is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    with agent_thread(path, Recorder()):
        code, _ = shim.call_agent(str(path), shim.encode_request({}, b""), timeout=10)
        assert code == 3


def test_agent_refuses_to_replace_a_regular_file(sock_dir: Path) -> None:
    sock_dir.mkdir(parents=True)
    path = sock_dir / "agent.sock"
    path.write_text("not a socket")
    with pytest.raises(HostError, match="not a socket"):
        Agent(path).open()
    assert path.read_text() == "not a socket"


def test_shim_reports_unreachable_and_lost_agents(sock_dir: Path) -> None:
    with pytest.raises(shim.AgentUnreachable):
        shim.call_agent(str(sock_dir / "nobody.sock"), b"", timeout=1)
    sock_dir.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_dir / "mute.sock"))
    server.listen(1)

    def hang_up() -> None:
        conn, _ = server.accept()
        conn.recv(1 << 16)
        conn.close()

    t = threading.Thread(target=hang_up, daemon=True)
    t.start()
    with server, pytest.raises(shim.AgentLost):
        shim.call_agent(str(sock_dir / "mute.sock"), shim.encode_request({}, b"x"), timeout=5)
    t.join(5)


def test_encode_answer_matches_the_shim() -> None:
    assert (
        encode_answer(1, b"{}") == b"SKR1" + (1).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"{}"
    )


# --- the installed shim ----------------------------------------------------------------------


def test_install_is_atomic_idempotent_and_executable(tmp_path: Path) -> None:
    sock = Path("/run/x/agent.sock")
    target, changed = install_shim(tmp_path / "bin", "sriov", sock)
    assert changed
    assert os.access(target, os.X_OK)
    first = target.read_bytes()
    assert first.startswith(f"#!{os.path.realpath(sys.executable)} -IS\n".encode())
    assert b"SOCKET = '/run/x/agent.sock'\n" in first
    assert install_shim(tmp_path / "bin", "sriov", sock) == (target, False)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["sriov"]  # no temp left
    baked = {"SRIOVKIT_STATE_DIR": str(default_state_dir(os.environ)), "SRIOVKIT_ROOT": "/"}
    assert render_shim(sock, settings=baked) == first


def _imports(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> set[str]:
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False, timeout=60)
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    names.discard("imported package")
    return names


@pytest.mark.parametrize("command", ["VERSION", "DEL"])
def test_shim_imports_only_built_in_modules(tmp_path: Path, sock_dir: Path, command: str) -> None:
    target, _ = install_shim(tmp_path / "bin", "sriov", sock_dir / "agent.sock")
    python = os.path.realpath(sys.executable)
    baseline = _imports([python, "-IS", "-X", "importtime", "-c", "pass"], {})
    run = Recorder()
    with agent_thread(sock_dir / "agent.sock", run):
        used = _imports(
            [python, "-IS", "-X", "importtime", str(target)], {"CNI_COMMAND": command}, b"{}"
        )
    extra = used - baseline
    assert extra <= {"_socket", "time"}, extra  # C modules; no json, re, enum or sriovkit
    assert len(run.calls) == (command != "VERSION")  # VERSION is answered without the agent


def test_state_dir_and_root_are_baked_in_and_used_by_the_fallback(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path / "root"
    target, _ = install_shim(
        tmp_path / "bin", "sriov", Path("/nonexistent/agent.sock"), state_dir=state, root=root
    )
    text = target.read_text()
    assert f"b'SRIOVKIT_STATE_DIR': b'{state}'" in text and f"b'SRIOVKIT_ROOT': b'{root}'" in text
    # No agent: the in-process fallback must work in the baked state dir, not /var/lib/sriovkit.
    conf = json.dumps({"cniVersion": "1.1.0", "name": "n", "type": "sriov"}).encode()
    proc = subprocess.run(
        [str(target)], input=conf, env={"CNI_COMMAND": "STATUS", "CNI_PATH": "/usr/lib/cni"},
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert state.is_dir(), "STATUS ran against the baked state directory"
    # What the caller's environment says does not count: a runtime may give DEL another
    # environment than ADD (podman's cleanup does), and both must use one state directory.
    other = tmp_path / "other"
    proc = subprocess.run(
        [str(target)], input=conf, capture_output=True, check=False, timeout=60,
        env={"CNI_COMMAND": "STATUS", "CNI_PATH": "/usr/lib/cni",
             "SRIOVKIT_STATE_DIR": str(other), "SRIOVKIT_ROOT": "relative/is/refused"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert not other.exists()


def test_baked_settings_win_over_the_callers_in_requests(tmp_path: Path, sock_dir: Path) -> None:
    """Through the agent too: the request carries the baked values, and the baked socket is
    the one used whatever SRIOVKIT_AGENT_SOCKET says."""
    state, root = tmp_path / "state", tmp_path / "root"
    target, _ = install_shim(
        tmp_path / "bin", "sriov", sock_dir / "agent.sock", state_dir=state, root=root
    )
    decoy_dir = Path(tempfile.mkdtemp(prefix="skdecoy", dir="/tmp"))
    run, decoy = Recorder(), Recorder()
    try:
        with agent_thread(sock_dir / "agent.sock", run), agent_thread(decoy_dir / "a.sock", decoy):
            proc = subprocess.run(
                [str(target)], input=b"cfg", capture_output=True, check=False, timeout=60,
                env={"CNI_COMMAND": "DEL", "SRIOVKIT_STATE_DIR": "/caller/state",
                     "SRIOVKIT_ROOT": "/caller/root",
                     "SRIOVKIT_AGENT_SOCKET": str(decoy_dir / "a.sock")},
            )  # fmt: skip
    finally:
        shutil.rmtree(decoy_dir, ignore_errors=True)
    assert (proc.returncode, proc.stdout) == (3, b"out:cfg")
    assert decoy.calls == []
    ((env, _stdin),) = run.calls
    assert (env["SRIOVKIT_STATE_DIR"], env["SRIOVKIT_ROOT"]) == (str(state), str(root))
