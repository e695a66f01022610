"""The node tier's world as the tests see it: the `Node` record, the pool, the conflist, the
pods' image and manifests."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nodedeploy as deploy
from cnikit import CniLab
from nodeagents import HostAgent, PodAgent
from nodedaemons import Traced
from nodekit import Containerd, Kubelet

# The rootfs builder of the runtime tier.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from podmankit import build_rootfs

from sriovkit.node.oci import Entry, write_archive
from sriovkit.sim.veth import VethHost

# The pool the conflist draws from, and its subnet: deploy/'s, as a cluster would have them.
RESOURCE = deploy.netdevice_resource()
SUBNET = str(deploy.conflist(Path("/unused"))["plugins"][0]["ipam"]["subnet"])
BUSYBOX_IMAGE = "localhost/sriovkit/busybox:node"
VFS_PER_PF = 2


@dataclass
class Node:
    """A running node: the daemons, the simulated host, and the CNI's state on it."""

    base: Path
    host: VethHost
    containerd: Containerd
    kubelet: Kubelet
    agent: HostAgent | PodAgent
    cni: CniLab  # snapshot(), records(), leases() of the host, state dir and IPAM data dir
    daemons: list[Traced] = field(default_factory=list)  # the traced ones
    notes: list[str] = field(default_factory=list)


def _rootfs_entries(rootfs: Path) -> list[Entry]:
    entries = []
    for path in sorted(rootfs.rglob("*")):
        rel = str(path.relative_to(rootfs))
        if path.is_symlink():
            entries.append(Entry(rel, link=str(path.readlink())))
        elif path.is_dir():
            entries.append(Entry(rel))
        else:
            entries.append(Entry(rel, source=path, mode=path.stat().st_mode & 0o7777))
    return entries


def busybox_archive(directory: Path) -> Path:
    """The test pods' image: busybox and its applets, one layer."""
    rootfs = directory / "busybox-rootfs"
    build_rootfs(rootfs)
    archive = directory / "busybox.oci.tar"
    write_archive(archive, BUSYBOX_IMAGE, _rootfs_entries(rootfs), cmd=["sh"])
    shutil.rmtree(rootfs)
    return archive


def vf_pod(name: str, vfs: int = 1) -> dict[str, Any]:
    """A static pod with one container asking for `vfs` VFs of the pool."""
    limits = {RESOURCE: str(vfs)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                "resources": {"limits": limits, "requests": limits},
            }],
        },
    }  # fmt: skip


__all__ = ["BUSYBOX_IMAGE", "RESOURCE", "SUBNET", "Node", "busybox_archive", "vf_pod"]
