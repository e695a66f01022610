"""The node tier's world, one per test module: containerd, the kubelet, the sriovkit agent (the
agent image as a static pod, see `_agent`) and a veth-mode simulated 82576 (two PFs, two VFs
each: a pool of four).

Tier gating (root, `sriovkit node setup` done, no other kubelet) is in tests/conftest.py. What
is started, in order: containerd (our CNI dirs, the pause and busybox images imported), kubelet,
then the agent, whose device plugin registers on kubelet's socket. Teardown runs in reverse and
always: the test pods' manifests removed and the pods gone (their VFs given back by the CNI DEL
that containerd runs through the agent), the agent, kubelet and containerd stopped, leftover
tasks and shims killed, sysctls restored, mounts, netns and directories kubelet made removed,
the veth pairs deleted; anything that had to be cleaned up fails the tier.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The shim and host-snapshot helpers of the integration tier.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import nodedeploy as deploy
from cnikit import CNI_BIN, CniLab
from nodeagents import AGENT_POD, AgentPaths, HostAgent, PodAgent, agent_image_archive
from nodedaemons import wait_until
from nodekit import Containerd, HostEffects, Kubelet, healthy_devices
from nodelab import RESOURCE, VFS_PER_PF, Node, busybox_archive

from sriovkit.node.setup import NodeAssets, default_cache, ensure_node
from sriovkit.sim.veth import create_veth_host

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Clock:
    """Set-up phases and their seconds, for the log."""

    last: float
    laps: list[str] = field(default_factory=list)

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{what} {now - self.last:.1f} s")
        self.last = now

    def __str__(self) -> str:
        return ", ".join(self.laps)


def _assets() -> NodeAssets:
    return ensure_node(default_cache(), install=False)


def _drain(node: Node) -> None:
    """Remove every static pod but the agent's and wait until they are gone (the agent serves
    their CNI DELs), then stop the agent; containerd then runs no container at all."""
    for manifest in node.kubelet.manifests.glob("*.json"):
        if manifest.stem != AGENT_POD:
            manifest.unlink()
    up = node.kubelet.daemon.running() and node.containerd.daemon.running()
    agent = {node.agent.name} if isinstance(node.agent, PodAgent) else set()
    try:
        if up:
            wait_until("kubelet to remove the test pods",
                       lambda: node.containerd.pod_names() <= agent, timeout=90)  # fmt: skip
        node.agent.stop(node.kubelet, node.containerd)
        if up:
            wait_until("kubelet to remove every pod", lambda: not node.containerd.tasks())
    except AssertionError as exc:
        node.notes.append(str(exc))


def _agent(paths: AgentPaths) -> HostAgent | PodAgent:
    """The DaemonSet's pod as a static pod; on the host only when asked
    (`SRIOVKIT_NODE_AGENT=host`) or, outside CI, when the image cannot be built here (said on
    stderr)."""
    if os.environ.get("SRIOVKIT_NODE_AGENT") == "host":
        return HostAgent(paths)
    try:
        _, archive = agent_image_archive(REPO, default_cache() / "images")
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"node tier: no agent image: {exc}")
        print(f"node tier: the agent runs on the host: no agent image: {exc}", file=sys.stderr)
        return HostAgent(paths)
    return PodAgent(paths, archive)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """A node: containerd, kubelet, the agent (see `_agent`), the simulated host."""
    started = time.monotonic()
    assets = _assets()
    base = Path(tempfile.mkdtemp(prefix="sknode", dir="/tmp"))  # short: unix socket paths
    effects = HostEffects()
    host = create_veth_host(base / "host", "82576", vfs=VFS_PER_PF,
                            prefix="skn" + uuid.uuid4().hex[:4])  # fmt: skip
    containerd = Containerd(base, assets.pause_image)
    kubelet = Kubelet(base, assets.kubelet, containerd)
    paths = AgentPaths(host.root, base, containerd.cni_bin)
    paths.prepare()
    ipam = base / "ipam"
    for plugin in ("host-local", "loopback"):  # copies: the agent may run in a container
        shutil.copy2(CNI_BIN / plugin, containerd.cni_bin / plugin)
    (containerd.cni_conf / "10-sriovkit.conflist").write_text(json.dumps(deploy.conflist(ipam)))
    agent = _agent(paths)
    image_seconds = time.monotonic() - started
    # The shim is installed by the agent at start, as in the DaemonSet.
    cni = CniLab(host, paths.state, ipam, containerd.cni_bin / "sriov", paths.socket)
    daemons = [containerd.daemon, kubelet.daemon]
    if isinstance(agent, HostAgent):
        daemons.append(agent.daemon)
    made = Node(base, host, containerd, kubelet, agent, cni, daemons)
    clock = Clock(started + image_seconds, [f"host, dirs and agent image {image_seconds:.1f} s"])
    try:
        containerd.start()
        containerd.import_image(assets.pause_archive)
        containerd.import_image(busybox_archive(base))
        clock.lap("containerd + pause and busybox images")
        kubelet.start()
        clock.lap("kubelet")
        agent.start(kubelet, containerd)
        wait_until(f"kubelet to hold the {len(host.pairs)} VFs of {RESOURCE} as healthy",
                   lambda: len(healthy_devices(RESOURCE) or []) == len(host.pairs))  # fmt: skip
        clock.lap(f"agent ({agent.kind}) + pool registered")
        print(f"node tier set-up: {clock}", file=sys.stderr)
        yield made
    finally:
        _teardown(made, effects)


def _teardown(node: Node, effects: HostEffects) -> None:
    try:
        _drain(node)
    finally:
        try:
            node.kubelet.stop()
            if isinstance(node.agent, HostAgent):
                node.agent.stop(node.kubelet, node.containerd)
            node.notes += node.containerd.stop()
        finally:
            node.notes += effects.restore(node.base)
            node.host.cleanup()
            node.notes += [f"{d.name} still runs" for d in node.daemons if d.running()]
            node.notes += [f"shim {pid} still runs" for pid in node.containerd.shim_pids()]
            if os.environ.get("SRIOVKIT_NODE_KEEP"):  # the daemons' logs and traces, to read
                print(f"node tier: kept {node.base}", file=sys.stderr)
            else:
                shutil.rmtree(node.base, ignore_errors=True)
    # Anything the pods' own removal did not undo is a failure of the tier (cleaned up anyway).
    assert not node.notes, f"node tier teardown had to clean up: {'; '.join(node.notes)}"

