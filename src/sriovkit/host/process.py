"""Process-wide switches, each behind a context manager that puts the previous state back.

A switch like the cyclic garbage collector belongs to the whole process (the agent serves other
requests on other threads meanwhile), so nothing flips one without restoring it on every exit.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc", "umask"]


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


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process umask set to `mask` inside the block, the previous one back after.

    Only for a file the kernel creates with no mode argument of ours (a unix socket's bind):
    everything else passes its mode to open() and fchmod()s it. Other threads creating files
    meanwhile get `mask` too, so the block must be as short as one system call.
    """
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
