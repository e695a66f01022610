"""The CLI's one error boundary (`cli.main`): errors are one line and an exit code, bugs too."""

from __future__ import annotations

import pytest

from sriovkit import cli
from sriovkit.ops import discover


def _boom(*args: object, **kwargs: object) -> None:
    raise KeyError("a bug")


def test_an_unexpected_error_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.delenv("SRIOVKIT_DEBUG", raising=False)
    monkeypatch.setattr(discover, "collect", _boom)
    code = cli.main(["--root", str(tmp_path), "inventory"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (
        "sriovkit: internal error: KeyError: 'a bug' (set SRIOVKIT_DEBUG=1 for the traceback)\n"
    )
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("SRIOVKIT_DEBUG", "1")
    monkeypatch.setattr(discover, "collect", _boom)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["--root", str(tmp_path), "inventory"])
