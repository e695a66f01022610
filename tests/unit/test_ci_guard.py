"""The CI guard (tests/ci_guard.py): a tier module skipping itself at import fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
# Exit codes that do not fail a run (scripts/test.sh): 5 is "no tests collected", which is what
# a tree whose every module skipped at import gives.
NOT_FAILED = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


def _tree(tmp_path: Path) -> Path:
    """A tiny test tree: one integration module missing its tool, one unit module skipping."""
    for tier, reason in (("integration", "needs host-local in /usr/lib/cni"),
                         ("unit", "nothing to see here")):  # fmt: skip
        (tmp_path / tier).mkdir()
        (tmp_path / tier / f"test_{tier}_skip.py").write_text(
            f"import pytest\npytest.skip({reason!r}, allow_module_level=True)\n\n"
            "def test_never(): pass\n"
        )
    return tmp_path


def _pytest(tree: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "ci_guard", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tree), *args],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_without_ci_a_module_level_skip_is_a_skip(tmp_path: Path) -> None:
    proc = _pytest(_tree(tmp_path), None, "-rs")
    assert proc.returncode in NOT_FAILED, proc.stdout + proc.stderr
    assert "2 skipped" in proc.stdout
    assert "needs host-local in /usr/lib/cni" in proc.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_an_integration_module_skip_fails_the_session(tmp_path: Path, ci: str) -> None:
    proc = _pytest(_tree(tmp_path), ci)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, proc.stdout  # collection error
    assert (
        "CI must run the integration tier, but integration/test_integration_skip.py skipped "
        "itself at import: needs host-local in /usr/lib/cni"
    ) in proc.stdout
    assert "test_unit_skip" not in proc.stdout.split("short test summary")[-1]


def test_under_ci_other_tiers_may_still_skip(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    proc = _pytest(tree, "true", "-rs", "unit")
    assert proc.returncode in NOT_FAILED, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout
