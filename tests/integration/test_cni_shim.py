"""The `sriov` CNI plugin as a runtime runs it: the installed shim executed as a process.

Each test runs twice: through a real `sriovkit agent` process (started once for the module) and
with no agent listening (the shim's in-process fallback). The host is a veth-mode simulated
igb host, IPAM is Debian's Go `host-local` in a per-test data dir, pods are throwaway netns.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cnikit import (
    NO_AGENT,
    AgentProcess,
    CniLab,
    agent_argv,
    cni_plugins_missing,
    install_shim,
    ip_addrs,
    ip_links,
    running_agent,
    short_dir,
    wait_for_socket,
)

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

from sriovkit.sim.netlink import FakeNetlink  # noqa: E402
from sriovkit.sim.veth import create_veth_host  # noqa: E402


def cid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with short_dir() as directory, running_agent(directory) as running:
        yield running


@pytest.fixture(params=["agent", "in-process"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_lab(
    tmp_path: Path, agent_socket: Path, kind: str, vfs: int = 4, fallback: str | None = None
) -> CniLab:
    host = create_veth_host(tmp_path / "host", "82576", vfs=vfs, prefix="sk" + uuid.uuid4().hex[:4])
    try:
        shim = install_shim(
            tmp_path / "bin", agent_socket, tmp_path / "state", host.root, kind, fallback
        )
    except BaseException:
        host.cleanup()  # real veth pairs: never leak them when set-up fails half-way
        raise
    return CniLab(host, tmp_path / "state", tmp_path / "ipam", shim, agent_socket)


@pytest.fixture
def lab(
    tmp_path: Path, mode: str, shim_kind: str, request: pytest.FixtureRequest
) -> Iterator[CniLab]:
    # Without an agent, connect() fails and the shim goes in-process.
    sock = request.getfixturevalue("agent").socket if mode == "agent" else NO_AGENT
    made = make_lab(tmp_path, sock, shim_kind)
    try:
        yield made
    finally:
        made.cleanup()
        made.host.cleanup()


def pf_vf(lab: CniLab, vf: str) -> Any:
    pair = lab.host.pair(vf)
    pf = next(p.netdev for p in lab.host.sim.pfs if p.address == pair.pf)
    assert pf is not None
    fake = FakeNetlink(lab.host.root)
    try:
        return fake.vfs(pf)[pair.index]
    finally:
        fake.close()


def test_add_check_del_restores_everything(lab: CniLab) -> None:
    vf = lab.host.pairs[1].vf
    before = lab.snapshot()
    pod = lab.new_netns()
    c = cid()
    conf = lab.conf(
        vf,
        "1.0.0",
        vlan=100,
        vlanQoS=3,
        mac="02:00:00:aa:bb:01",
        spoofchk="off",
        trust="on",
        mtu=1400,
    )
    add = lab.run(lab.env("ADD", c, pod), conf)
    assert add.code == 0, (add.stdout, add.stderr)
    assert b"Traceback" not in add.stderr
    result = add.json
    (iface,) = result["interfaces"]
    assert (iface["name"], iface["mac"], iface["sandbox"]) == (
        "net1",
        "02:00:00:aa:bb:01",
        str(pod),
    )
    (ip,) = result["ips"]
    assert ip["address"].startswith("10.56.0.")
    # The pod really has it, as asked; the host netns no longer does.
    seen = ip_links(pod)["net1"]
    assert (seen["address"], seen["mtu"], "UP" in seen["flags"]) == (
        "02:00:00:aa:bb:01",
        1400,
        True,
    )
    assert ip_addrs(pod, "net1") == [ip["address"]]
    assert lab.host.pair(vf).name not in ip_links()
    info = pf_vf(lab, vf)
    assert (info.vlan, info.qos, info.mac, info.spoofchk, info.trust) == (
        100,
        3,
        "02:00:00:aa:bb:01",
        False,
        True,
    )
    assert lab.records()

    check = lab.run(lab.env("CHECK", c, pod), {**conf, "prevResult": result})
    assert (check.code, check.stdout) == (0, b""), check.stdout

    delete = lab.run(lab.env("DEL", c, pod), conf)
    assert (delete.code, delete.stdout) == (0, b""), delete.stdout
    assert lab.snapshot() == before
    assert "net1" not in ip_links(pod)


def test_cni_1_1_result_names_the_vf(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    pod = lab.new_netns()
    c = cid()
    before = lab.snapshot()
    conf = lab.conf(vf, "1.1.0", mtu=1400)
    add = lab.run(lab.env("ADD", c, pod), conf)
    assert add.code == 0, add.stdout
    (iface,) = add.json["interfaces"]
    assert (iface["pciID"], iface["mtu"]) == (vf, 1400)  # 1.1.0 only
    check = lab.run(lab.env("CHECK", c, pod), {**conf, "prevResult": add.json})
    assert (check.code, check.stdout) == (0, b""), check.stdout
    assert lab.run(lab.env("DEL", c, pod), conf).code == 0
    assert lab.snapshot() == before


def test_result_in_the_version_asked(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    pod = lab.new_netns()
    c = cid()
    add = lab.run(lab.env("ADD", c, pod), lab.conf(vf, "0.3.1"))
    assert add.code == 0, add.stdout
    result = add.json
    assert result["cniVersion"] == "0.3.1"
    assert result["ips"][0]["version"] == "4"  # 0.x has it, 1.x dropped it
    assert "pciID" not in result["interfaces"][0]  # 1.1.0 only
    assert lab.run(lab.env("DEL", c, pod), lab.conf(vf, "0.3.1")).code == 0


def test_check_fails_when_the_pod_lost_its_mtu(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    pod = lab.new_netns()
    c = cid()
    conf = lab.conf(vf, mtu=1400)
    add = lab.run(lab.env("ADD", c, pod), conf)
    assert add.code == 0, add.stdout
    subprocess.run(["ip", "-n", pod.name, "link", "set", "net1", "mtu", "1300"], check=True)
    check = lab.run(lab.env("CHECK", c, pod), {**conf, "prevResult": add.json})
    assert check.code != 0
    assert "mtu" in check.json["msg"].lower()
    assert lab.run(lab.env("DEL", c, pod), conf).code == 0


def test_version(lab: CniLab) -> None:
    out = lab.run(lab.env("VERSION"), {"cniVersion": "0.4.0"})
    assert out.code == 0, out.stdout
    assert out.json == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_status_ready(lab: CniLab) -> None:
    out = lab.run(lab.env("STATUS"), lab.conf(None, "1.1.0"))
    assert (out.code, out.stdout) == (0, b""), out.stdout


def test_del_twice_and_del_without_add(lab: CniLab) -> None:
    vf = lab.host.pairs[2].vf
    before = lab.snapshot()
    pod = lab.new_netns()
    never = lab.run(lab.env("DEL", cid(), pod), lab.conf(vf))
    assert (never.code, never.stdout) == (0, b"")
    c = cid()
    assert lab.run(lab.env("ADD", c, pod), lab.conf(vf)).code == 0
    for _ in range(2):
        out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
        assert (out.code, out.stdout) == (0, b""), out.stdout
        assert lab.snapshot() == before
    # DEL with no netns at all (the runtime lost it) is fine too.
    assert lab.run(lab.env("DEL", c), lab.conf(vf)).code == 0


def test_add_on_a_busy_vf_is_refused_and_its_del_keeps_the_owner(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod_a, pod_b = lab.new_netns(), lab.new_netns()
    a, b = cid(), cid()
    assert lab.run(lab.env("ADD", a, pod_a), lab.conf(vf)).code == 0
    refused = lab.run(lab.env("ADD", b, pod_b), lab.conf(vf))
    assert refused.code != 0
    assert (
        refused.json["code"] == 11 and refused.json["msg"]
    )  # try again: the owner's DEL may be due
    # The runtime DELs a failed ADD: that must not take the VF from its owner.
    assert lab.run(lab.env("DEL", b, pod_b), lab.conf(vf)).code == 0
    assert "net1" in ip_links(pod_a)
    assert lab.run(lab.env("DEL", a, pod_a), lab.conf(vf)).code == 0
    assert lab.snapshot() == before


def test_gc_releases_what_is_not_listed(lab: CniLab) -> None:
    keep_pair, leak_pair = lab.host.pairs[0], lab.host.pairs[1]
    keep_pod, leak_pod = lab.new_netns(), lab.new_netns()
    keep, leak = cid(), cid()
    assert lab.run(lab.env("ADD", keep, keep_pod), lab.conf(keep_pair.vf, "1.1.0")).code == 0
    assert lab.run(lab.env("ADD", leak, leak_pod), lab.conf(leak_pair.vf, "1.1.0")).code == 0
    valid = [{"containerID": keep, "ifname": "net1"}]
    gc = lab.run(lab.env("GC"), lab.conf(None, "1.1.0", **{"cni.dev/valid-attachments": valid}))
    assert (gc.code, gc.stdout) == (0, b""), gc.stdout
    assert "net1" in ip_links(keep_pod)
    assert "net1" not in ip_links(leak_pod)
    assert leak_pair.name in ip_links()  # back home under its own name
    assert lab.records() == sorted(
        [f"allocations/{keep_pair.vf}.json", f"attachments/{keep}@net1.json"]
    )
    assert len(lab.leases()) == 1
    assert lab.run(lab.env("DEL", keep, keep_pod), lab.conf(keep_pair.vf, "1.1.0")).code == 0
    assert lab.records() == []


# --- concurrency (through the agent) ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["agent"])
def test_concurrent_adds_on_different_vfs(lab: CniLab) -> None:
    before = lab.snapshot()
    jobs = []
    for pair in lab.host.pairs:  # 8 VFs on the two ports
        pod = lab.new_netns()
        c = cid()
        jobs.append((pair, pod, c, lab.popen(lab.env("ADD", c, pod), lab.conf(pair.vf))))
    ips = []
    for pair, pod, _c, proc in jobs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, (pair.vf, out, err)
        ips.append(json.loads(out)["ips"][0]["address"])
        assert "net1" in ip_links(pod)
    assert len(set(ips)) == len(jobs)
    dels = [lab.popen(lab.env("DEL", c, pod), lab.conf(pair.vf)) for pair, pod, c, _ in jobs]
    for proc in dels:
        proc.communicate(timeout=180)
        assert proc.returncode == 0
    assert lab.snapshot() == before


@pytest.mark.parametrize("mode", ["agent"])
def test_concurrent_adds_on_one_vf_exactly_one_wins(lab: CniLab) -> None:
    vf = lab.host.pairs[3].vf
    before = lab.snapshot()
    runs = []
    for _ in range(2):
        pod, c = lab.new_netns(), cid()
        runs.append((pod, c, lab.popen(lab.env("ADD", c, pod), lab.conf(vf))))
    codes = []
    for _pod, _c, proc in runs:
        out, _err = proc.communicate(timeout=180)
        codes.append(proc.returncode)
        if proc.returncode:
            assert json.loads(out)["code"] == 11
    assert sorted(codes)[0] == 0 and sorted(codes)[1] != 0, codes
    winners = [(pod, c) for (pod, c, _), code in zip(runs, codes, strict=True) if code == 0]
    losers = [(pod, c) for (pod, c, _), code in zip(runs, codes, strict=True) if code != 0]
    (win_pod, win_c), (lose_pod, lose_c) = winners[0], losers[0]
    assert "net1" in ip_links(win_pod) and "net1" not in ip_links(lose_pod)
    assert lab.run(lab.env("DEL", lose_c, lose_pod), lab.conf(vf)).code == 0
    assert "net1" in ip_links(win_pod)
    assert lab.run(lab.env("DEL", win_c, win_pod), lab.conf(vf)).code == 0
    assert lab.snapshot() == before


# --- the agent going away ------------------------------------------------------------------------


def test_killed_agent_leaves_a_stale_socket_and_the_shim_goes_in_process(
    tmp_path: Path, shim_kind: str
) -> None:
    with short_dir() as directory:
        killed_agent_then_new_one(tmp_path, directory, shim_kind)


def killed_agent_then_new_one(tmp_path: Path, directory: Path, kind: str) -> None:
    with running_agent(directory) as running:
        lab = make_lab(tmp_path, running.socket, kind)
        try:
            vf = lab.host.pairs[0].vf
            before = lab.snapshot()
            pod, c = lab.new_netns(), cid()
            assert lab.run(lab.env("ADD", c, pod), lab.conf(vf)).code == 0
            running.kill()
            assert running.socket.exists()  # stale: connect() is refused
            out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
            assert (out.code, out.stdout) == (0, b""), out.stdout
            assert lab.snapshot() == before
        finally:
            lab.cleanup()
            lab.host.cleanup()
    # A new agent replaces the stale socket.
    with running_agent(directory) as again:
        assert stat.S_IMODE(again.socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # SIGTERM is a clean stop: exit 0, socket removed.
    assert again.proc.returncode == 0, again.log.read_text()
    assert not again.socket.exists()


class HangUp:
    """A fake agent that accepts every connection, reads the request and closes unanswered."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1 << 20)

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()


def test_agent_dying_mid_request(tmp_path: Path, shim_kind: str) -> None:
    with short_dir() as directory:
        agent_dying_mid_request(tmp_path, directory / "agent.sock", shim_kind)


def agent_dying_mid_request(tmp_path: Path, path: Path, kind: str) -> None:
    lab = make_lab(tmp_path, path, kind)
    hang = HangUp(path)
    try:
        vf = lab.host.pairs[0].vf
        before = lab.snapshot()
        pod, c = lab.new_netns(), cid()
        add = lab.run(lab.env("ADD", c, pod), lab.conf(vf))
        assert add.code != 0
        assert add.json["code"] == 11  # the agent may have done part of it: try again
        assert lab.snapshot() == before
        # DEL must always work: it runs in-process when the agent gives no answer.
        in_process = lab.env("ADD", c, pod, agent=False)
        assert lab.run(in_process, lab.conf(vf)).code == 0
        out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
        assert (out.code, out.stdout) == (0, b""), out.stdout
        assert lab.snapshot() == before
    finally:
        hang.close()
        lab.cleanup()
        lab.host.cleanup()


def test_second_agent_refuses_to_start(agent: AgentProcess) -> None:
    proc = subprocess.run(agent_argv(agent.socket), check=False, capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"another sriovkit agent" in proc.stderr
    assert b"Traceback" not in proc.stderr
    wait_for_socket(agent.socket, agent.proc)  # the first one still serves


# --- what the runtime's environment may and may not change --------------------------------------


def test_baked_settings_win_over_the_runtimes_environment(lab: CniLab, tmp_path: Path) -> None:
    """ADD with an environment naming another state dir, root and socket, DEL with a reduced
    one (podman runs DEL from conmon's cleanup): both use what was baked in at install."""
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), cid()
    env = lab.env("ADD", c, pod)
    env["SRIOVKIT_STATE_DIR"] = str(tmp_path / "caller-state")
    env["SRIOVKIT_ROOT"] = str(tmp_path / "caller-root")
    env["SRIOVKIT_AGENT_SOCKET"] = str(tmp_path / "caller.sock")
    add = lab.run(env, lab.conf(vf))
    assert add.code == 0, add.stdout
    assert lab.records() == sorted([f"allocations/{vf}.json", f"attachments/{c}@net1.json"])
    assert not (tmp_path / "caller-state").exists()
    reduced = {k: v for k, v in lab.env("DEL", c, pod).items() if k.startswith("CNI_")}
    out = lab.run(reduced, lab.conf(vf))
    assert (out.code, out.stdout) == (0, b""), out.stdout
    assert lab.snapshot() == before


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CNI_IFNAME", "net\udcff"),
        ("CNI_CONTAINERID", "c\udcc3("),  # a lead byte without its continuation
        ("CNI_NETNS", "/run/netns/\udcff"),
        ("CNI_ARGS", "K8S_POD_NAME=p\udcfe"),
        ("CNI_PATH", "/usr/lib/cni:/opt/\udcff"),
    ],
)
def test_bytes_that_are_not_utf8_are_code_4_naming_the_variable(
    lab: CniLab, var: str, value: str
) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    env = lab.env("ADD", cid(), lab.new_netns())
    env[var] = value  # subprocess passes it on as the raw bytes (surrogateescape)
    out = lab.run(env, lab.conf(vf))
    assert out.code == 1 and out.stderr == b""
    error = out.json
    assert error["code"] == 4, error
    assert var in error["msg"] and "UTF-8" in error["msg"]
    assert lab.snapshot() == before


def test_a_device_id_the_host_does_not_have_is_code_7(lab: CniLab) -> None:
    before = lab.snapshot()
    out = lab.run(lab.env("ADD", cid(), lab.new_netns()), lab.conf("0000:3b:11.7"))
    assert lab.snapshot() == before
    error = out.json
    assert (out.code, error["code"]) == (1, 7), error
    assert "deviceID" in error["msg"]
