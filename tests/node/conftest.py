"""The node tier's world, one per test module: containerd, the kubelet, the sriovkit agent and a
veth-mode simulated 82576 (two PFs, two VFs each: a pool of four).

Tier gating (root, `sriovkit node setup` done, no other kubelet) is in tests/conftest.py. What
is started, in order: containerd (our CNI dirs, the pause and busybox images imported), kubelet,
then the agent with its device plugin registering on kubelet's socket. Teardown runs in reverse
and always: the pods' manifests removed and the pods gone (their VFs given back by the CNI DEL
that containerd runs), kubelet, agent and containerd stopped, leftover tasks and shims killed,
sysctls restored, mounts, netns and directories kubelet made removed, the veth pairs deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shim and host-snapshot helpers of the integration tier.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cnikit import CNI_BIN, CniLab
from daemons import Traced, wait_until
from nodekit import KUBELET_DIR, Containerd, HostEffects, Kubelet, healthy_devices
from nodelab import POOLS, RESOURCE, VFS_PER_PF, Node, busybox_archive, plain_conflist

from sriovkit.node.setup import NodeAssets, default_cache, ensure_node
from sriovkit.sim.veth import create_veth_host


def _assets() -> NodeAssets:
    return ensure_node(default_cache(), install=False)


def _drain(node: Node) -> None:
    """Remove every static pod and wait until containerd runs none of their containers."""
    for manifest in node.kubelet.manifests.glob("*.json"):
        manifest.unlink()
    if node.kubelet.daemon.running() and node.containerd.daemon.running():
        try:
            wait_until("kubelet to remove every pod", lambda: not node.containerd.tasks(),
                       timeout=90)  # fmt: skip
        except AssertionError as exc:
            node.notes.append(str(exc))


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """A node with the agent run on the host (`sriovkit agent --device-plugin`)."""
    assets = _assets()
    base = Path(tempfile.mkdtemp(prefix="sknode", dir="/tmp"))  # short: unix socket paths
    effects = HostEffects()
    host = create_veth_host(base / "host", "82576", vfs=VFS_PER_PF,
                            prefix="skn" + uuid.uuid4().hex[:4])  # fmt: skip
    containerd = Containerd(base, assets.pause_image)
    kubelet = Kubelet(base, assets.kubelet, containerd)
    state, ipam = base / "state", base / "ipam"
    agent_sock = base / "agent.sock"
    shim = containerd.cni_bin / "sriov"  # installed by the agent at start, as in the DaemonSet
    for plugin in ("host-local", "loopback"):
        (containerd.cni_bin / plugin).symlink_to(CNI_BIN / plugin)
    (containerd.cni_conf / "10-sriov.conflist").write_text(json.dumps(plain_conflist(ipam)))
    config = base / "pools.json"
    config.write_text(json.dumps(POOLS))
    agent = Traced("agent", [
        sys.executable, "-m", "sriovkit.cli", "--root", str(host.root), "agent", "-v",
        "--socket", str(agent_sock), "--state-dir", str(state), "--device-plugin",
        "--dp-config", str(config), "--kubelet-dir", str(KUBELET_DIR),
        "--install-cni-dir", str(containerd.cni_bin),
    ], base)  # fmt: skip
    cni = CniLab(host, state, ipam, shim, agent_sock)
    made = Node(base, host, containerd, kubelet, agent, cni,
                [containerd.daemon, kubelet.daemon, agent])  # fmt: skip
    try:
        containerd.start()
        containerd.import_image(assets.pause_archive)
        containerd.import_image(busybox_archive(base))
        kubelet.start()
        agent.start()
        wait_until(f"kubelet to hold the {len(host.pairs)} VFs of {RESOURCE} as healthy",
                   lambda: len(healthy_devices(RESOURCE) or []) == len(host.pairs))  # fmt: skip
        yield made
    finally:
        _teardown(made, effects)


def _teardown(node: Node, effects: HostEffects) -> None:
    try:
        _drain(node)
    finally:
        try:
            node.kubelet.stop()
            node.agent.stop()
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

