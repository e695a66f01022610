"""The real `sriovkit agent` process against clients that leave, stall or hoard.

A request nobody waits for any more is not run (its shim was killed, or its deadline passed,
while it waited for a lock the test holds); slow-loris clients and clients announcing the
largest request and stalling neither starve an honest ADD nor grow the agent's memory past its
budget. Every test ends by checking the host: records, VF netdevs, PF-side VF attributes, leases.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

import pytest
from cnikit import AgentProcess, CniLab, cni_plugins_missing, ip_links, running_agent, short_dir

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

from click.testing import CliRunner  # noqa: E402

from sriovkit.cli import cli  # noqa: E402
from sriovkit.cni import shim  # noqa: E402
from sriovkit.host.state import StateStore  # noqa: E402
from sriovkit.model.attachment import AttachmentKey  # noqa: E402
from sriovkit.sim.veth import create_veth_host  # noqa: E402


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with short_dir() as directory, running_agent(directory) as running:
        yield running


@pytest.fixture
def lab(tmp_path: Path, agent: AgentProcess) -> Iterator[CniLab]:
    host = create_veth_host(tmp_path / "host", "82576", vfs=2, prefix="sr" + uuid.uuid4().hex[:4])
    try:
        args = ["--root", str(host.root), "install-cni", "--bin-dir", str(tmp_path / "bin")]
        args += ["--socket", str(agent.socket), "--state-dir", str(tmp_path / "state")]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        made = CniLab(host, tmp_path / "state", tmp_path / "ipam", tmp_path / "bin" / "sriov",
                      agent.socket)  # fmt: skip
        yield made
        made.cleanup()
    finally:
        host.cleanup()


def wait_for_log(agent: AgentProcess, pattern: str, timeout: float = 30.0) -> str:
    """The agent log line matching `pattern` (the agent logs every request with -v)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in agent.log.read_text(errors="replace").splitlines():
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n{agent.log.read_text()}")


def held(lab: CniLab, what: str, container: str) -> AbstractContextManager[None]:
    """The lock an ADD of `container` on VF 0 waits for, held by this test process."""
    store = StateStore(lab.state)
    if what == "attachment":
        return store.lock_attachment(AttachmentKey(container, "net1"), 5)
    return store.lock_vf(lab.host.pairs[0].vf, 5)


# --- abandoned requests ------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["attachment", "vf"])
def test_an_add_whose_shim_was_killed_while_it_waited_is_not_run(
    lab: CniLab, agent: AgentProcess, lock: str
) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), uuid.uuid4().hex
    with held(lab, lock, c):
        proc = lab.popen(lab.env("ADD", c, pod), lab.conf(vf))
        time.sleep(1.0)  # the agent has read the ADD and waits for the lock we hold
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)  # the runtime gave up on it
        proc.communicate(timeout=10)
        time.sleep(0.2)
    line = wait_for_log(agent, rf"ADD {c}/net1 -> \d+")
    assert line.endswith(" ms") and "-> 1 " in line  # answered (to nobody) with an error
    assert lab.snapshot() == before  # no records, VF untouched, no lease
    assert "net1" not in ip_links(pod)
    # The runtime's DEL (here: the retry's) still finds nothing to undo, and succeeds.
    out = lab.run(lab.env("DEL", c, pod), lab.conf(vf))
    assert (out.code, out.stdout) == (0, b"")


def test_an_add_whose_shim_still_waits_runs_once_the_lock_is_free(lab: CniLab) -> None:
    """The control for the one above: same wait, the shim stays, the ADD happens."""
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), uuid.uuid4().hex
    with held(lab, "attachment", c):
        proc = lab.popen(lab.env("ADD", c, pod), lab.conf(vf))
        time.sleep(1.0)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert "net1" in ip_links(pod)
    assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
    assert lab.snapshot() == before


def test_an_add_past_its_deadline_is_not_run(lab: CniLab) -> None:
    vf = lab.host.pairs[0].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), uuid.uuid4().hex
    env = {k.encode(): v.encode() for k, v in lab.env("ADD", c, pod).items()}
    env[b"SRIOVKIT_DEADLINE"] = repr(time.time() + 1.0).encode()  # as a shim with TIMEOUT=1
    request = shim.encode_request(env, json.dumps(lab.conf(vf)).encode())
    answer: list[tuple[int, bytes]] = []
    with held(lab, "attachment", c):
        client = threading.Thread(
            target=lambda: answer.append(shim.call_agent(str(lab.agent_socket), request, 60))
        )
        client.start()
        time.sleep(2.0)  # the deadline passes while the ADD waits for the lock
    client.join(60)
    ((code, out),) = answer
    error = json.loads(out)
    assert (code, error["code"]) == (1, 11), error
    assert "deadline passed" in error["msg"]
    assert lab.snapshot() == before


# --- slow and greedy clients -------------------------------------------------------------------


def test_slow_loris_clients_do_not_starve_an_add(lab: CniLab, agent: AgentProcess) -> None:
    """300 connections (more than the agent reads at once) trickle a byte each and stall; an
    honest ADD after them is served within seconds, not after their 10 s (or ever)."""
    vf = lab.host.pairs[1].vf
    before = lab.snapshot()
    pod, c = lab.new_netns(), uuid.uuid4().hex
    with ExitStack() as stack:
        for _ in range(300):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.connect(str(agent.socket))
            sock.send(shim.MAGIC_REQUEST[:1])
        started = time.monotonic()
        add = lab.run(lab.env("ADD", c, pod), lab.conf(vf))
        took = time.monotonic() - started
    assert add.code == 0, add.stdout
    assert took < 5.0, took
    assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
    assert lab.snapshot() == before


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


def test_hoarders_neither_grow_the_agent_nor_starve_an_add(
    lab: CniLab, agent: AgentProcess
) -> None:
    """200 clients announce the largest request (1 MiB) and send all of it but one byte: the
    agent holds at most its 32 MiB budget of them, and an honest ADD is still served. Requests
    larger than the limit are refused from their head."""
    vf = lab.host.pairs[1].vf
    before = lab.snapshot()
    rss_before = rss_kib(agent.proc.pid)
    size = 1 << 20
    payload = shim.MAGIC_REQUEST + (0).to_bytes(4, "big") + size.to_bytes(4, "big")
    payload += b" " * (size - 1)
    stop = threading.Event()

    def hoard() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(agent.socket))
                sock.sendall(payload)
            except OSError:
                return  # dropped by the agent: what it is meant to do
            stop.wait(30)

    threads = [threading.Thread(target=hoard, daemon=True) for _ in range(200)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        grown = rss_kib(agent.proc.pid) - rss_before
        pod, c = lab.new_netns(), uuid.uuid4().hex
        started = time.monotonic()
        add = lab.run(lab.env("ADD", c, pod), lab.conf(vf))
        took = time.monotonic() - started
        grown = max(grown, rss_kib(agent.proc.pid) - rss_before)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as huge:
            huge.connect(str(agent.socket))
            huge.sendall(
                shim.MAGIC_REQUEST + (0).to_bytes(4, "big") + (17 << 20).to_bytes(4, "big")
            )
            huge.settimeout(5)
            refused = huge.recv(4096)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert add.code == 0, add.stdout
    assert took < 5.0, took
    assert grown < 64 * 1024, f"the agent grew by {grown} KiB"
    assert refused[:4] == shim.MAGIC_ANSWER and b"too large" in refused
    assert lab.run(lab.env("DEL", c, pod), lab.conf(vf)).code == 0
    assert lab.snapshot() == before
