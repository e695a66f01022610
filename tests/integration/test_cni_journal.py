"""No agent and no fallback: the rules both shims follow, and the pending-DEL journal's replay.

Each test runs through both installed shims (`shim_kind`), installed with `--fallback none`:
VERSION is answered by the shim, ADD/CHECK fail with code 11 and STATUS with 50 naming the
socket, DEL is journaled and succeeds, and the agent (a real `sriovkit agent` process with this
test's state directory) replays the journal at start, before it serves, giving the VF back
exactly. The host is a veth-mode simulated igb host; IPAM is Debian's Go `host-local`.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cnikit import (
    AgentProcess,
    CniLab,
    cni_plugins_missing,
    install_shim,
    short_dir,
    static_shim_binary,
    wait_for_socket,
)

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

from sriovkit.cni import cshim  # noqa: E402
from sriovkit.cni.dispatch import execute  # noqa: E402
from sriovkit.model.journal import encode_entry  # noqa: E402
from sriovkit.sim.veth import create_veth_host  # noqa: E402


def cid() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def directory() -> Iterator[Path]:
    with short_dir() as made:
        yield made


@pytest.fixture
def lab(tmp_path: Path, directory: Path, shim_kind: str) -> Iterator[CniLab]:
    host = create_veth_host(tmp_path / "host", "82576", vfs=3, prefix="skj" + uuid.uuid4().hex[:4])
    sock = directory / "agent.sock"
    try:
        shim = install_shim(
            tmp_path / "bin", sock, tmp_path / "state", host.root, shim_kind, "none"
        )
        made = CniLab(host, tmp_path / "state", tmp_path / "ipam", shim, sock)
        try:
            yield made
        finally:
            made.cleanup()
    finally:
        host.cleanup()


@contextmanager
def agent(lab: CniLab, *extra: str) -> Iterator[AgentProcess]:
    """`sriovkit --root ROOT agent --socket SOCK --state-dir STATE ...` until the block ends."""
    log = lab.agent_socket.with_name(f"agent-{uuid.uuid4().hex[:6]}.log")
    argv = [sys.executable, "-m", "sriovkit.cli", "--root", str(lab.host.root), "agent", "-v"]
    argv += ["--socket", str(lab.agent_socket), "--state-dir", str(lab.state), *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    running = AgentProcess(lab.agent_socket, proc, log)
    try:
        # It listens before it replays (shims wait in the backlog); it serves after.
        wait_for_socket(lab.agent_socket, proc)
        deadline = time.monotonic() + 60
        while b"serving CNI requests" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield running
    finally:
        running.stop()


def journal(lab: CniLab) -> list[str]:
    d = lab.state / "pending-del"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def test_agent_down_add_is_code_11_naming_the_socket(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod = lab.new_netns()
    for command, code in (("ADD", 11), ("CHECK", 11), ("STATUS", 50)):
        out = lab.run(lab.env(command, cid(), pod), lab.conf(vf, "1.1.0"))
        assert (out.code, out.stderr) == (1, b""), out
        error = out.json
        assert error["code"] == code, error
        assert str(lab.agent_socket) in error["msg"], error
    version = lab.run(lab.env("VERSION"), lab.conf(vf, "0.4.0"))
    assert (version.code, version.json["cniVersion"]) == (0, "0.4.0")
    assert lab.snapshot() == before
    assert journal(lab) == []


def test_del_is_journaled_and_replayed_at_agent_start(lab: CniLab) -> None:
    vf = lab.host.pairs[1].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), cid()
    conf = lab.conf(vf, vlan=42, mac="02:00:00:aa:bb:02", mtu=1400)
    with agent(lab):
        add = lab.run(lab.env("ADD", c, pod), conf)
        assert add.code == 0, add.stdout
    attached = lab.snapshot()
    out = lab.run(lab.env("DEL", c, pod), conf)
    assert (out.code, out.stdout, out.stderr) == (0, b"", b"")
    assert journal(lab) == [f"{c}@net1.del"]
    entry = lab.state / "pending-del" / f"{c}@net1.del"
    assert stat.S_IMODE(entry.lstat().st_mode) == 0o600
    # Pending: nothing changed yet, the VF stays recorded (no ADD can take it).
    assert lab.snapshot() == attached
    # A second DEL of the same attachment replaces the entry.
    assert lab.run(lab.env("DEL", c, pod), conf).code == 0
    assert journal(lab) == [f"{c}@net1.del"]
    with agent(lab) as running:
        assert journal(lab) == []
        assert lab.snapshot() == before
        assert f"pending DEL {c}@net1.del replayed" in running.log.read_text()


def test_replay_after_the_pod_netns_is_gone(lab: CniLab) -> None:
    pair = lab.host.pairs[2]
    before = lab.snapshot()
    pod, c = lab.new_netns(), cid()
    conf = lab.conf(pair.vf, vlan=7, trust="on")
    with agent(lab):
        assert lab.run(lab.env("ADD", c, pod), conf).code == 0
    assert lab.run(lab.env("DEL", c, pod), conf).code == 0
    subprocess.run(["ip", "netns", "del", pod.name], check=True)
    with agent(lab):
        assert journal(lab) == []
    after = lab.snapshot()
    # veth caveat: deleting the netns destroyed the stand-in netdev (a real VF comes back);
    # everything else is back exactly.
    assert after["vfs"] == before["vfs"]
    assert (after["records"], after["leases"]) == ([], [])


def test_replay_of_an_attachment_gc_released_meanwhile_is_a_no_op(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), cid()
    with agent(lab):
        assert lab.run(lab.env("ADD", c, pod), lab.conf(vf)).code == 0
    assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
    assert journal(lab) == [f"{c}@net1.del"]
    # GC (in-process here) releases everything not listed; then another pod takes the VF.
    gc_conf = lab.conf(vf, "1.1.0", **{"cni.dev/valid-attachments": []})
    code, out = execute(lab.env("GC"), json.dumps(gc_conf).encode())
    assert code == 0, out
    assert lab.snapshot() == before
    pod2, c2 = lab.new_netns(), cid()
    code, out = execute(lab.env("ADD", c2, pod2), json.dumps(lab.conf(vf)).encode())
    assert code == 0, out
    taken = lab.snapshot()
    with agent(lab):
        assert journal(lab) == []
        assert lab.snapshot() == taken  # the replayed DEL did not touch the new owner
        assert lab.run(lab.env("DEL", c2, pod2), lab.conf(vf)).code == 0
    assert lab.snapshot() == before


def test_journal_refuses_symlinks_and_bad_names(lab: CniLab, tmp_path: Path) -> None:
    vf = lab.host.pairs[0].vf
    pod, c = lab.new_netns(), cid()
    with agent(lab):
        assert lab.run(lab.env("ADD", c, pod), lab.conf(vf)).code == 0
    attached = lab.snapshot()
    pending = lab.state / "pending-del"
    pending.mkdir(mode=0o700, exist_ok=True)
    # The shim does not write through a symlink planted under the entry's name.
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    (pending / f"{c}@net1.del").symlink_to(outside)
    out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
    assert (out.code, out.json["code"]) == (1, 11), out
    assert "not a regular file" in out.json["details"]
    assert outside.read_bytes() == b"untouched"
    # Names that are no attachment are refused before anything is written.
    for var, value in (("CNI_CONTAINERID", "../etc"), ("CNI_IFNAME", "a/b")):
        env = lab.env("DEL", c, pod)
        env[var] = value
        bad = lab.run(env, lab.conf(vf))
        assert (bad.code, bad.json["code"]) == (1, 4), bad
        assert var in bad.json["msg"]
    # The agent refuses (and leaves) what is not a well-formed DEL named for its attachment,
    # and does not follow the symlink even though its target is a valid entry of this pod.
    env = {k: v for k, v in lab.env("DEL", c, pod).items() if k.startswith(("CNI_", "SRIOVKIT_"))}
    env["SRIOVKIT_STATE_DIR"] = str(lab.state)
    outside.write_bytes(encode_entry(env, json.dumps(lab.conf(vf)).encode()))
    (pending / "not-an-entry.txt").write_bytes(b"x")
    (pending / "other@net1.del").write_bytes(encode_entry(env, b"{}"))  # for c, named other
    with agent(lab) as running:
        log = running.log.read_text()
    assert journal(lab) == sorted([f"{c}@net1.del", "not-an-entry.txt", "other@net1.del"])
    assert lab.snapshot() == attached
    assert "is a symlink; refusing" in log and "not-an-entry.txt" in log
    assert f"a DEL of {c}/net1, not of other/net1" in log
    # Once the planted files go, the real DEL works (through the agent).
    for name in journal(lab):
        (pending / name).unlink()
    with agent(lab):
        assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
    assert lab.records() == []


def test_agent_installs_the_shims_at_start(lab: CniLab, tmp_path: Path) -> None:
    bin_dir = tmp_path / "agent-bin"
    binary = static_shim_binary()
    with agent(lab, "--install-cni-dir", str(bin_dir), "--shim-binary", str(binary)):
        shim = bin_dir / "sriov"
        assert shim.read_bytes() == binary.read_bytes()
        assert stat.S_IMODE(shim.stat().st_mode) == 0o755
        config = (bin_dir / cshim.CONFIG_NAME).read_text().splitlines()
        assert config[1:] == [
            f"socket={lab.agent_socket}",
            f"state_dir={lab.state}",
            f"root={Path(lab.host.root).resolve()}",
        ]
        lab.shim = shim
        vf, pod, c = lab.host.pairs[0].vf, lab.new_netns(), cid()
        before = lab.snapshot()
        assert lab.run(lab.env("ADD", c, pod), lab.conf(vf)).code == 0
        assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
        assert lab.snapshot() == before


def test_an_agent_that_hangs_up_gets_add_11_and_the_del_is_journaled(lab: CniLab) -> None:
    """Accepted, read, closed unanswered: ADD may have run in part (try again); DEL is
    journaled after one more try (not retried forever)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(lab.agent_socket))
    server.listen(8)

    def hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1 << 20)

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        vf, pod, c = lab.host.pairs[0].vf, lab.new_netns(), cid()
        before = lab.snapshot()
        add = lab.run(lab.env("ADD", c, pod), lab.conf(vf))
        assert (add.code, add.json["code"]) == (1, 11), add
        assert "failed during ADD" in add.json["msg"]
        out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
        assert (out.code, out.stdout) == (0, b""), out
        assert journal(lab) == [f"{c}@net1.del"]
        assert lab.snapshot() == before
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
