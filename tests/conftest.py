"""Tier gating shared by every test: `root` tests need root, network namespaces and veth."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

import pytest


@cache
def root_tier_missing() -> str | None:
    """Why the integration tier cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "integration tier needs root (network namespaces and veth)"
    if shutil.which("ip") is None:
        return "integration tier needs iproute2's `ip`"
    name = f"sriovkit-probe-{os.getpid()}"
    probe = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `root` tests with the reason where the tier cannot run; in CI that is a failure."""
    if not any("root" in item.keywords for item in items):
        return
    reason = root_tier_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the integration tier, but {reason}")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
