"""Process-wide switches, each behind a context manager that puts the previous state back.

A switch like the cyclic garbage collector belongs to the whole process (the agent serves other
requests on other threads meanwhile), so nothing flips one without restoring it on every exit.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC off inside the block, back on after only if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
