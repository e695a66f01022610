"""An ADD nobody waits for is not started: the agent's `still_wanted`, and dispatch handing it on.

The agent runs in a thread with a `run` that waits for the test, then asks `still_wanted` what
ops.attach.add would ask once it holds its locks. The dispatch half runs a real ADD on a
simulated host (fake netlink) and checks that an abandoned one leaves the host as it was.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_agent_socket import read_request, serving

from sriovkit.agent.protocol import Limits
from sriovkit.agent.server import Agent
from sriovkit.cni import shim
from sriovkit.cni.dispatch import execute
from sriovkit.errors import Abandoned, NotFound
from sriovkit.host.ipam import Ipam
from sriovkit.host.state import StateStore
from sriovkit.model.pci import PciAddress
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.vf.device import resolve_vf
from sriovkit.ops.vfconfig import read_vf
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.sim.netlink import FakeNetlink


class Gate:
    """A `run` that blocks until `release()`, then records what `still_wanted` said."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started = threading.Semaphore(0)
        self.outcomes: list[str] = []

    def __call__(self, env: Mapping[str, str], stdin: bytes, **kw: Any) -> tuple[int, bytes]:
        self.started.release()
        assert self.go.wait(10)
        try:
            kw["still_wanted"]()
        except Abandoned as exc:
            self.outcomes.append(str(exc))
            return 1, b"abandoned"
        self.outcomes.append("ran")
        return 0, b"ran"

    def wait_started(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.started.acquire(timeout=10), "the agent did not start the request"

    def wait_outcomes(self, n: int) -> list[str]:
        deadline = time.monotonic() + 10
        while len(self.outcomes) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.outcomes


@contextmanager
def agent_with(run: Any, limits: Limits | None = None) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="skab", dir="/tmp"))
    agent = Agent(base / "agent.sock", run=run, limits=limits or Limits())
    agent.open()
    thread = threading.Thread(target=agent.serve, daemon=True)
    thread.start()
    try:
        yield base / "agent.sock"
    finally:
        agent.stop()
        thread.join(15)
        agent.close()
        shutil.rmtree(base, ignore_errors=True)


def send(path: Path, env: dict[bytes, bytes]) -> socket.socket:
    """Send an ADD the way the shim does (whole request, then half-close); the open socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(shim.encode_request({b"CNI_COMMAND": b"ADD", **env}, b"{}"))
    sock.shutdown(socket.SHUT_WR)
    return sock


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data[12:]


def test_a_waiting_client_is_still_wanted() -> None:
    gate = Gate()
    with agent_with(gate) as path:
        sock = send(path, {b"SRIOVKIT_DEADLINE": repr(time.time() + 60).encode()})
        gate.wait_started()
        gate.go.set()
        assert answer(sock) == b"ran"  # half-closed is not gone
        sock.close()
    assert gate.outcomes == ["ran"]


def test_a_client_that_closed_is_not() -> None:
    gate = Gate()
    with agent_with(gate) as path:
        sock = send(path, {})
        gate.wait_started()
        sock.close()  # the shim gave up (or was killed) while the ADD waited for its locks
        gate.go.set()
        (outcome,) = gate.wait_outcomes(1)
    assert "client closed the connection" in outcome


@pytest.mark.parametrize("deadline", [-0.001, -30.0])
def test_a_request_past_its_deadline_is_not(deadline: float) -> None:
    gate = Gate()
    with agent_with(gate) as path:
        sock = send(path, {b"SRIOVKIT_DEADLINE": repr(time.time() + deadline).encode()})
        gate.go.set()
        assert answer(sock) == b"abandoned"  # the client is still there, but it said until when
        sock.close()
    (outcome,) = gate.outcomes
    assert "deadline passed" in outcome


@pytest.mark.parametrize("value", [b"soon", b"nan", b"inf", b""])
def test_a_deadline_that_is_no_time_is_no_deadline(value: bytes) -> None:
    gate = Gate()
    gate.go.set()
    with agent_with(gate) as path:
        sock = send(path, {b"SRIOVKIT_DEADLINE": value})
        assert answer(sock) == b"ran"
        sock.close()


def test_a_queued_add_whose_client_left_is_not_run() -> None:
    """One worker: the second ADD waits in the queue, its shim goes away, and when a worker
    gets to it, it is abandoned; the third, whose shim still waits, runs."""
    gate = Gate()
    with agent_with(gate, Limits(max_workers=1)) as path:
        first = send(path, {})
        gate.wait_started()
        second, third = send(path, {}), send(path, {})
        time.sleep(0.2)  # both read and queued behind the first
        second.close()
        gate.go.set()
        assert answer(first) == b"ran"
        assert answer(third) == b"ran"
        first.close()
        third.close()
        outcomes = gate.wait_outcomes(3)
    assert outcomes[0] == "ran" and sorted(outcomes[1:]) == sorted(
        ["ran", "request abandoned: its client closed the connection; not run"]
    )


# --- dispatch: the check reaches ops.attach.add ----------------------------------------------


class SimHost:
    def __init__(self, root: Path) -> None:
        sim = create_host(root / "host", ["82576"], vfs=2, extras=False)
        self.root = root
        self.vf = PciAddress.parse(sim.vfs(sim.pfs[0].address)[0])
        self.netns = root / "netns" / "pod"
        self.netns.parent.mkdir()
        self.netns.touch()
        self.netlink = FakeNetlink(root / "host")
        self.ctx = AttachContext(
            sysfs=SimSysfs(root / "host"),
            netlink=self.netlink,
            ipam=Ipam([root / "no-plugins"]),
            store=StateStore(root / "state"),
            lock_timeout=1.0,
            netns_alive=lambda p: p.exists(),
            announce=False,
            return_timeout=0.0,
        )

    @contextmanager
    def factory(self, env: Mapping[str, str]) -> Iterator[AttachContext]:
        yield self.ctx

    def env(self, command: str) -> dict[str, str]:
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": "c1",
            "CNI_IFNAME": "net1",
            "CNI_NETNS": str(self.netns),
            "CNI_PATH": str(self.root / "no-plugins"),
        }

    def conf(self) -> bytes:
        conf = {"cniVersion": "1.1.0", "name": "n", "type": "sriov", "deviceID": str(self.vf)}
        return json.dumps({**conf, "vlan": 100, "mac": "02:00:00:aa:00:01"}).encode()

    def state(self) -> tuple[Any, ...]:
        """The VF as the PF reports it, its netdev in the host, and the records."""
        target = resolve_vf(self.ctx.sysfs, self.vf)
        try:
            link = self.netlink.link(target.netdev or "")
        except NotFound:
            link = None  # in the pod
        records = sorted(
            str(p.relative_to(self.root)) for p in (self.root / "state").rglob("*.json")
        )
        return read_vf(self.netlink, target.pf, target.index), link, records


def gone() -> None:
    raise Abandoned("request abandoned: its client closed the connection; not run")


def test_dispatch_hands_still_wanted_to_add(tmp_path: Path) -> None:
    host = SimHost(tmp_path)
    before = host.state()
    code, out = execute(host.env("ADD"), host.conf(), ctx_factory=host.factory, still_wanted=gone)
    error = json.loads(out)
    assert (code, error["code"]) == (1, 11), error
    assert "client closed" in error["msg"]
    assert host.state() == before  # no records, VF and netdev untouched
    # The control: the same ADD, still wanted, attaches.
    code, out = execute(host.env("ADD"), host.conf(), ctx_factory=host.factory, still_wanted=None)
    assert code == 0, out
    assert host.state() != before
    # DEL is never abandoned: giving the VF back must not depend on anyone listening.
    code, out = execute(host.env("DEL"), host.conf(), ctx_factory=host.factory, still_wanted=gone)
    assert (code, out) == (0, b"")
    assert host.state() == before


# --- the shim's side: its deadline is when it really gives up ----------------------------------


@contextmanager
def fake_agent(reply: Any) -> Iterator[tuple[Path, list[bytes]]]:
    """A socket whose every connection gets `reply(conn)` after its request was read."""
    requests: list[bytes] = []

    def on_connection(conn: socket.socket) -> None:
        requests.append(read_request(conn))
        reply(conn)

    with serving(on_connection) as path:
        yield path, requests


def test_the_shim_sends_the_time_it_gives_up_at(monkeypatch: pytest.MonkeyPatch) -> None:
    def ok(conn: socket.socket) -> None:
        conn.sendall(shim.MAGIC_ANSWER + bytes(8))

    with fake_agent(ok) as (path, requests):
        monkeypatch.setattr(shim, "SOCKET", str(path))
        monkeypatch.setattr(shim, "TIMEOUT", 7.0)
        env = {b"CNI_COMMAND": b"DEL", b"SRIOVKIT_DEADLINE": b"1e300"}  # the caller's: replaced
        before = time.time()
        assert shim.run(env, b"{}") == (0, b"")
        after = time.time()
    (request,) = requests
    env_len = int.from_bytes(request[4:8], "big")
    entries = dict(e.split(b"=", 1) for e in request[12 : 12 + env_len].split(b"\0"))
    assert before + 7.0 <= float(entries[b"SRIOVKIT_DEADLINE"]) <= after + 7.0


def test_the_shim_gives_up_on_the_whole_answer_not_on_each_read() -> None:
    """An agent answering a byte at a time never resets the shim's clock."""

    def trickle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            for byte in shim.MAGIC_ANSWER + bytes(4) + (1000).to_bytes(4, "big") + bytes(1000):
                conn.sendall(bytes([byte]))
                time.sleep(0.1)

    with fake_agent(trickle) as (path, _requests):
        started = time.monotonic()
        with pytest.raises(shim.AgentLost, match="did not answer within 1 s"):
            shim.call_agent(str(path), shim.encode_request({}, b""), timeout=1.0)
        assert time.monotonic() - started < 1.5
