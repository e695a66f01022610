"""Process-wide switches (host/process.py) are scoped: the previous state always comes back."""

from __future__ import annotations

import gc

import pytest

from sriovkit.host.process import paused_gc


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
