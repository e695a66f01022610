"""The agent as a supervisor of services: start in order, stop in reverse, signals handled once,
a failing service stops the others; the CNI server as a service started and stopped alone."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.cni_service import CniService
from sriovkit.agent.server import Agent
from sriovkit.agent.supervisor import OnExit, Supervisor
from sriovkit.cni import shim
from sriovkit.errors import Busy


class Stub:
    """A service that records its start and stop in a shared list."""

    def __init__(self, name: str, calls: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.calls = calls
        self.fail_start = fail_start
        self.on_exit: OnExit | None = None

    def start(self, on_exit: OnExit) -> None:
        self.calls.append(f"start {self.name}")
        if self.fail_start:
            raise Busy(f"{self.name} cannot start")
        self.on_exit = on_exit

    def stop(self) -> None:
        self.calls.append(f"stop {self.name}")


def test_services_start_in_order_and_stop_in_reverse() -> None:
    calls: list[str] = []
    sup = Supervisor([Stub("a", calls), Stub("b", calls), Stub("c", calls)], signals=())
    sup.start()
    sup.stop()
    sup.stop()  # stopping twice stops nothing twice
    assert calls == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_a_service_that_cannot_start_stops_the_started_ones() -> None:
    calls: list[str] = []
    sup = Supervisor(
        [Stub("a", calls), Stub("b", calls, fail_start=True), Stub("c", calls)], signals=()
    )
    with pytest.raises(Busy, match="b cannot start"):
        sup.run()
    assert calls == ["start a", "start b", "stop a"]


def test_a_service_that_ends_stops_the_others_and_its_error_is_raised() -> None:
    calls: list[str] = []
    a, b = Stub("a", calls), Stub("b", calls)
    sup = Supervisor([a, b], signals=())

    def fail_b() -> None:
        assert b.on_exit is not None
        threading.Thread(target=b.on_exit, args=(OSError("b died"),)).start()

    with pytest.raises(OSError, match="b died"):
        sup.run(ready=fail_b)
    assert calls == ["start a", "start b", "stop b", "stop a"]


def test_every_service_is_stopped_even_when_one_fails_to_stop() -> None:
    calls: list[str] = []

    class BadStop(Stub):
        def stop(self) -> None:
            super().stop()
            raise RuntimeError("stuck")

    sup = Supervisor([Stub("a", calls), BadStop("b", calls), Stub("c", calls)], signals=())
    sup.start()
    with pytest.raises(RuntimeError, match="stuck"):
        sup.stop()
    assert calls[3:] == ["stop c", "stop b", "stop a"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_a_clean_stop_and_the_handlers_are_restored(signum: int) -> None:
    calls: list[str] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def ready() -> None:
        calls.append("ready")
        # From another thread, as the kernel would deliver it while the main thread waits.
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()

    Supervisor([Stub("a", calls), Stub("b", calls)]).run(ready=ready)
    assert calls == ["start a", "start b", "ready", "stop b", "stop a"]
    assert {sig: signal.getsignal(sig) for sig in before} == before


class MaskRecorder:
    """A service whose thread records the signals it blocks (its mask is inherited at start)."""

    name = "masks"

    def __init__(self) -> None:
        self.mask: set[int] = set()

    def start(self, on_exit: OnExit) -> None:
        def record() -> None:
            self.mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

        thread = threading.Thread(target=record)
        thread.start()
        thread.join()

    def stop(self) -> None:
        pass


def test_service_threads_block_the_stop_signals_so_only_the_main_thread_takes_them() -> None:
    # A SIGTERM the kernel gave a service's thread never woke the main thread from its wait
    # (the agent's container then ran until SIGKILL): only the main thread may take them.
    service = MaskRecorder()
    main_mask: set[int] = set()
    sup = Supervisor([service])

    def ready() -> None:
        main_mask.update(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        sup.request_stop("test")

    before = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    sup.run(ready=ready)
    assert {signal.SIGTERM, signal.SIGINT} <= service.mask
    assert main_mask == before  # the main thread's own mask is put back before it waits
    assert signal.SIGTERM not in main_mask


# --- the CNI server as a service ------------------------------------------------------------------


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="sksv", dir="/tmp"))
    try:
        yield base / "run" / "agent.sock"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _answer(env: Any, stdin: bytes, **kw: Any) -> tuple[int, bytes]:
    return 0, b"ok:" + stdin


def test_cni_service_starts_serves_and_stops_alone(sock_path: Path) -> None:
    service = CniService(Agent(sock_path, run=_answer), warm_up=False, replay=False)
    exits: list[BaseException | None] = []
    service.start(exits.append)
    try:
        code, out = shim.call_agent(str(sock_path), shim.encode_request({}, b"x"), timeout=10)
        assert (code, out) == (0, b"ok:x")
        with pytest.raises(Busy, match="another sriovkit agent"):
            CniService(Agent(sock_path), warm_up=False, replay=False).start(exits.append)
    finally:
        service.stop()
    assert not sock_path.exists() and exits == []
    # Started again after a stop: the socket and the lock are free.
    again = CniService(Agent(sock_path, run=_answer), warm_up=False, replay=False)
    again.start(exits.append)
    again.stop()
    assert exits == []


def test_cni_service_reports_a_server_that_dies(sock_path: Path) -> None:
    agent = Agent(sock_path, run=_answer)
    service = CniService(agent, warm_up=False, replay=False)
    died = threading.Event()
    exits: list[BaseException | None] = []

    def on_exit(error: BaseException | None) -> None:
        exits.append(error)
        died.set()

    def broken_serve() -> None:
        raise OSError("reader broke")

    agent.serve = broken_serve  # type: ignore[method-assign]
    service.start(on_exit)
    assert died.wait(10)
    service.stop()
    assert [str(e) for e in exits] == ["reader broke"]
    assert not sock_path.exists()
