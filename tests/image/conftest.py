"""Fixtures of the image tier: the agent image built once per session, the podman lock held
for each test.

Tier gating (root, podman 4, runc, busybox, host-local) is in tests/conftest.py; here the image
is built for real (scripts/build-image.sh, cached), and a failure there skips the tier with the
script's own words, or fails it under CI.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The podman helpers of the runtime tier and the host helpers of the integration tier.
_TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_TESTS / "integration"))
sys.path.insert(0, str(_TESTS / "runtime"))

from imagekit import build_image, podman_lock  # noqa: E402
from podmankit import Podman, PodmanBase  # noqa: E402


@pytest.fixture(autouse=True)
def podman_locked() -> Iterator[None]:
    """/tmp/sriovkit-podman.lock for each test (other podman users on the machine wait, and so
    do we). Never held across tests, so another tier's fixture in the same session can take it;
    the session fixtures below take it for their own podman work only."""
    with podman_lock():
        yield


@pytest.fixture(scope="session")
def image_podman() -> Podman:
    """podman pointed at the storage holding the freshly built (or cached) agent image."""
    try:
        with podman_lock():
            return build_image()
    except (RuntimeError, OSError) as exc:
        reason = f"image tier: cannot build the agent image: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def workload_podman() -> Iterator[PodmanBase]:
    """The runtime tier's private podman with its busybox image: the containers the VFs go to."""
    base = PodmanBase(Path(tempfile.mkdtemp(prefix="skim", dir="/tmp")))
    try:
        with podman_lock():
            base.setup()
    except (RuntimeError, AssertionError, OSError) as exc:
        with podman_lock():
            base.teardown()
        reason = f"image tier: cannot set up podman with the busybox image: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield base
    finally:
        with podman_lock():
            base.teardown()
