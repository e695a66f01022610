"""Under CI, a test module of the integration, runtime, image or node tier that skips itself at
import fails.

Those modules skip at import when a host prerequisite is missing (`pytest.skip(...,
allow_module_level=True)`: no root, no `ip`, no Go `host-local`). Locally that is the right
answer; in CI it would turn a whole module into one quiet "skipped" line, and CI must run every
tier (DESIGN: "CI runs every tier and fails instead of skipping"). The per-test gating of the
root and runtime tiers (tests/conftest.py) already fails under CI; this covers what happens at
import, before any test exists. Loaded by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

# Directories under tests/ whose modules need host tools, as the tiers are laid out.
GUARDED_TIERS = ("integration", "runtime", "image", "node")


def guarded_tier(path: Path, rootpath: Path) -> str | None:
    """The guarded tier a test module belongs to (by its directory), or None."""
    try:
        parts = path.resolve().relative_to(rootpath.resolve()).parts[:-1]
    except ValueError:
        parts = path.parts[:-1]
    return next((p for p in parts if p in GUARDED_TIERS), None)


def _skip_reason(report: pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Turn a guarded module's import-time skip into a collection error when CI is set."""
    report = yield
    if not (report.skipped and os.environ.get("CI") and isinstance(collector, pytest.Module)):
        return report
    tier = guarded_tier(collector.path, collector.config.rootpath)
    if tier is None:
        return report
    report.outcome = "failed"
    report.longrepr = (
        f"CI must run the {tier} tier, but {collector.nodeid} skipped itself at import: "
        f"{_skip_reason(report)}"
    )
    return report
