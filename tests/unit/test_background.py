"""ops.background: a call on a thread, collected later with its value or its exception."""

from __future__ import annotations

import threading

import pytest

from sriovkit.ops.background import Background


def test_result_is_the_calls_value_computed_on_another_thread() -> None:
    seen: list[str] = []

    def work(a: int, b: int) -> int:
        seen.append(threading.current_thread().name)
        return a + b

    job = Background("adder", work, 2, 3)
    assert job.result() == 5
    assert seen == ["adder"]


def test_result_raises_the_calls_exception_and_wait_does_not() -> None:
    def fail() -> None:
        raise ValueError("plugin said no")

    job = Background("failing", fail)
    job.wait()  # waiting is not collecting: nothing raised here
    with pytest.raises(ValueError, match="plugin said no"):
        job.result()


def test_caller_runs_while_the_call_is_blocked() -> None:
    started, release = threading.Event(), threading.Event()

    def blocked() -> str:
        started.set()
        release.wait(10)
        return "done"

    job = Background("blocked", blocked)
    assert started.wait(10)
    release.set()  # only reachable because Background returned before the call ended
    assert job.result() == "done"
