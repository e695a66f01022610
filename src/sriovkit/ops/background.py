"""Run one blocking call on a thread while the caller does something else, then collect it.

Used to overlap an IPAM plugin's process with the VF's netns move: both wait in the kernel (a
child process; an RCU grace period under RTNL) and hold no GIL while they wait, so ADD and DEL
pay the longer of the two instead of their sum.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """`fn(*args)` started on a daemon thread now; `result()` waits for it and returns or raises."""

    def __init__(self, name: str, fn: Callable[..., T], *args: Any) -> None:
        self._fn = fn
        self._args = args
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as exc:  # handed to whoever collects the result
            self._error = exc

    def wait(self) -> None:
        """Wait for the call to end, whatever its outcome."""
        self._thread.join()

    def result(self) -> T:
        """The call's return value; its exception, raised here, if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


__all__ = ["Background"]
