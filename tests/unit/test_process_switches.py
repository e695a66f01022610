"""Process-wide switches (host/process.py) are scoped: the previous state always comes back."""

from __future__ import annotations

import gc
import os

import pytest

from sriovkit.host.process import paused_gc, umask


@pytest.mark.parametrize("enabled", [True, False])
def test_paused_gc_restores_the_previous_state(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(RuntimeError), paused_gc():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_umask_restores_the_previous_mask_also_on_error() -> None:
    before = os.umask(0o022)
    try:
        with pytest.raises(RuntimeError), umask(0o177):
            assert os.umask(0o177) == 0o177  # read it back (umask() only sets and returns)
            raise RuntimeError
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
