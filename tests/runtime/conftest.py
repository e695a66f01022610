"""Fixtures of the runtime tier: one private podman per session, one veth host + shim per test.

Tier gating (podman, runc, busybox, root) is in tests/conftest.py; here the session's podman is
set up for real (image import, one container run), and a failure there skips the tier with
podman's own words, or fails it under CI.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shim, agent and host-snapshot helpers of the integration tier (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from cnikit import NO_AGENT, AgentProcess, CniLab, install_shim, running_agent
from podmankit import PodmanBase, RuntimeLab, containers_conf

from sriovkit.sim.veth import create_veth_host

VFS_PER_PF = 2  # a dual-port 82576: 4 VFs, enough for three networks and a spare


@pytest.fixture(scope="session")
def podman_base() -> Iterator[PodmanBase]:
    """The session's private podman (storage, run dir, lock files, the busybox image)."""
    # Short path: conmon's attach socket and our agent socket live under it.
    base = PodmanBase(Path(tempfile.mkdtemp(prefix="skrt", dir="/tmp")))
    try:
        base.setup()
    except (RuntimeError, AssertionError, OSError) as exc:
        base.teardown()
        reason = f"runtime tier: cannot set up podman with the busybox image: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield base
    finally:
        base.teardown()


@pytest.fixture(scope="session")
def agent() -> Iterator[AgentProcess]:
    """One real `sriovkit agent` process for the session's agent-mode tests."""
    directory = Path(tempfile.mkdtemp(prefix="skrta", dir="/tmp"))
    try:
        with running_agent(directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["agent", "in-process"])
def mode(request: pytest.FixtureRequest) -> str:
    """Through the node agent, or the shim's in-process fallback (no agent socket)."""
    return str(request.param)


@pytest.fixture
def rt(
    tmp_path: Path, mode: str, podman_base: PodmanBase, request: pytest.FixtureRequest
) -> Iterator[RuntimeLab]:
    """A veth-mode 82576 host, our shim installed for it, and podman pointed at both."""
    agent_log = None
    socket = NO_AGENT  # nobody listens: the shim runs in-process
    if mode == "agent":
        running: AgentProcess = request.getfixturevalue("agent")
        socket, agent_log = running.socket, running.log
    host = create_veth_host(
        tmp_path / "host", "82576", vfs=VFS_PER_PF, prefix="skr" + uuid.uuid4().hex[:4]
    )
    lab = None
    try:
        state, ipam, bin_dir, net_dir = (tmp_path / d for d in ("state", "ipam", "bin", "net.d"))
        net_dir.mkdir()
        shim = install_shim(bin_dir, socket, state, host.root)
        conf = tmp_path / "containers.conf"
        conf.write_text(containers_conf(podman_base.dir, net_dir, [bin_dir, Path("/usr/lib/cni")]))
        cni = CniLab(host, state, ipam, shim, socket)
        lab = RuntimeLab(host, cni, podman_base.podman(conf), net_dir, mode, agent_log)
        yield lab
    finally:
        try:
            if lab is not None:
                lab.cleanup()
        finally:
            host.cleanup()
