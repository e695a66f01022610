"""What a client can take from the agent: bounded size, time, connections, bytes and queue.

The agent runs in a thread with small `Limits` and a recording `run`; clients are raw sockets
that behave badly on purpose. Process-level runs with the production limits are in
tests/integration/test_agent_limits.py.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.protocol import HEAD_SIZE, Limits
from sriovkit.agent.server import Agent
from sriovkit.cni import shim

REQUEST = shim.encode_request({b"CNI_COMMAND": b"DEL"}, b"{}")


class Recorder:
    def __init__(self, hold: threading.Event | None = None) -> None:
        self.calls: list[Mapping[str, str]] = []
        self.hold = hold

    def __call__(self, env: Mapping[str, str], stdin: bytes, **kw: Any) -> tuple[int, bytes]:
        self.calls.append(env)
        if self.hold is not None:
            assert self.hold.wait(20)
        return 0, b"ok"


@contextmanager
def running(run: Any, limits: Limits) -> Iterator[tuple[Agent, Path]]:
    base = Path(tempfile.mkdtemp(prefix="sklim", dir="/tmp"))
    agent = Agent(base / "agent.sock", run=run, limits=limits)
    agent.open()
    thread = threading.Thread(target=agent.serve, daemon=True)
    thread.start()
    try:
        yield agent, base / "agent.sock"
    finally:
        agent.stop()
        thread.join(30)
        agent.close()
        shutil.rmtree(base, ignore_errors=True)


def connect(path: Path, data: bytes = b"") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    if data:
        sock.sendall(data)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the agent closed `sock` within `seconds`, and what it said before."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return False, data
    return True, data


def head(env_len: int, stdin_len: int) -> bytes:
    return shim.MAGIC_REQUEST + env_len.to_bytes(4, "big") + stdin_len.to_bytes(4, "big")


def test_production_limits_are_sane() -> None:
    limits = Limits()
    assert limits.max_stdin == 1 << 20 and limits.max_env == 64 << 10
    assert limits.budget >= 16 * limits.max_request  # many large requests fit at once
    assert limits.budget <= 64 << 20  # and all of them together stay small


@pytest.mark.parametrize(
    ("env_len", "stdin_len", "what"),
    [(64 << 10 | 1, 0, "request env too large"), (0, (1 << 20) + 1, "config too large")],
)
def test_oversized_requests_are_refused_from_their_head(
    env_len: int, stdin_len: int, what: str
) -> None:
    run = Recorder()
    with running(run, Limits()) as (agent, path), connect(path, head(env_len, stdin_len)) as sock:
        closed, data = closed_within(sock, 5)  # answered without waiting for the body
        assert closed and agent.budget.used == 0
    assert data[:4] == shim.MAGIC_ANSWER and what.encode() in data
    assert run.calls == []


def test_the_read_timeout_is_for_the_whole_request() -> None:
    """A client that keeps sending a byte now and then is still cut off at `read_timeout`."""
    run = Recorder()
    limits = Limits(read_timeout=0.6)
    with running(run, limits) as (_agent, path):
        frame = shim.encode_request({b"CNI_COMMAND": b"DEL"}, b"x" * 100)
        sock = connect(path)
        started = time.monotonic()
        sent = 0
        with sock:
            try:
                while time.monotonic() - started < 3 and sent < len(frame):
                    sock.sendall(frame[sent : sent + 1])
                    sent += 1
                    time.sleep(0.05)
                cut = False
            except OSError:  # EPIPE or ECONNRESET: the agent hung up on us
                cut = True
            closed, _ = closed_within(sock, 0.5)
        elapsed = time.monotonic() - started
    assert cut or closed
    assert elapsed < 1.5 and sent < len(frame)
    assert run.calls == []


def test_slow_clients_do_not_keep_a_prompt_one_waiting() -> None:
    """More slow-loris clients than connection slots: an honest request is still served
    within about `evict_age`, the slow ones only lose their own slots."""
    run = Recorder()
    limits = Limits(max_reading=16, evict_age=0.3, read_timeout=30)
    with running(run, limits) as (agent, path), ExitStack() as stack:
        slow = [stack.enter_context(connect(path, REQUEST[:5])) for _ in range(40)]
        time.sleep(0.1)
        started = time.monotonic()
        code, out = shim.call_agent(str(path), REQUEST, timeout=10)
        took = time.monotonic() - started
        assert (code, out) == (0, b"ok")
        assert agent._reader is not None and agent._reader.reading <= limits.max_reading
        for sock in slow:  # the slow ones keep trickling: it buys them nothing
            with suppress(OSError):
                sock.send(b"K")
    assert took < 3.0, took  # about evict_age; the 30 s read_timeout without eviction
    assert len(run.calls) == 1


def test_bytes_held_are_bounded_and_hoarders_give_way() -> None:
    """Clients that announce the largest request and stall hold at most the budget; an honest
    request arriving then is served."""
    run = Recorder()
    limits = Limits(max_env=1024, max_stdin=64 << 10, budget=4 * (HEAD_SIZE + 1024 + (64 << 10)),
                    evict_age=0.3, read_timeout=30)  # fmt: skip
    big = head(1024, 64 << 10) + b"\0" * 1000  # then nothing more
    with running(run, limits) as (agent, path), ExitStack() as stack:
        for _ in range(12):
            stack.enter_context(connect(path, big))
        time.sleep(0.2)
        assert agent.budget.used <= limits.budget
        code, out = shim.call_agent(str(path), REQUEST, timeout=10)
        assert (code, out) == (0, b"ok")
        assert agent.budget.used <= limits.budget
    assert agent.budget.used == 0  # every byte given back


def test_a_full_queue_closes_new_requests_unanswered() -> None:
    """Past the workers and the queue a request is closed unanswered: the shim then fails an
    ADD with code 11 and runs anything else in-process, instead of waiting."""
    hold = threading.Event()
    run = Recorder(hold)
    limits = Limits(max_workers=1, max_pending=1)
    with running(run, limits) as (_agent, path):
        first, second = connect(path, REQUEST), connect(path, REQUEST)
        time.sleep(0.2)
        with pytest.raises(shim.AgentLost):
            shim.call_agent(str(path), REQUEST, timeout=5)
        hold.set()
        for sock in (first, second):
            closed, data = closed_within(sock, 10)
            assert closed and data.endswith(b"ok")
            sock.close()
    assert len(run.calls) == 2


def test_a_liveness_probe_is_not_a_request() -> None:
    run = Recorder()
    with running(run, Limits()) as (agent, path):
        for _ in range(5):
            connect(path).close()
        assert shim.call_agent(str(path), REQUEST, timeout=10) == (0, b"ok")
        # The worker gives its bytes back just after it sent the answer the shim already read.
        deadline = time.monotonic() + 5
        while agent.budget.used and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.budget.used == 0
    assert len(run.calls) == 1
