"""The sriovkit agent of the node tier, in one of two forms with one interface:

- `PodAgent`: the agent image run by kubelet as a static pod, privileged, on the host's network
  and PID namespaces, with the DaemonSet's host mounts, exactly as a node runs it; containerd
  (traced) is its parent, so its connects are in containerd's trace;
- `HostAgent`: `sriovkit agent` run from this checkout's venv, under strace (for when no agent
  image can be had here; `SRIOVKIT_NODE_AGENT=host` asks for it).

Both are started with the same arguments: the device plugin on kubelet's socket, the static CNI
shim installed into containerd's CNI bin dir at start (`--install-cni-dir`), the simulated host
as `--root`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemons import Traced, wait_until
from nodekit import KUBELET_DIR, Containerd, Kubelet

AGENT_POD = "sriovkit-agent"
AGENT_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class AgentPaths:
    """Where the agent's inputs and outputs live for this session."""

    root: Path  # the simulated host
    socket: Path
    state: Path
    config: Path
    cni_bin: Path

    def args(self) -> list[str]:
        """`sriovkit agent` arguments (the root goes in as SRIOVKIT_ROOT)."""
        return [
            "-v", "--socket", str(self.socket), "--state-dir", str(self.state),
            "--device-plugin", "--dp-config", str(self.config),
            "--kubelet-dir", str(KUBELET_DIR), "--install-cni-dir", str(self.cni_bin),
        ]  # fmt: skip


class HostAgent:
    """`sriovkit agent` from the venv, on the host, under strace."""

    kind = "host"

    def __init__(self, paths: AgentPaths, base: Path) -> None:
        argv = [sys.executable, "-m", "sriovkit.cli", "--root", str(paths.root), "agent",
                *paths.args()]  # fmt: skip
        self.daemon = Traced("agent", argv, base)

    def start(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """Start it (kubelet is up: it registers at once)."""
        self.daemon.start()

    def stop(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """SIGTERM."""
        self.daemon.stop()

    def log_text(self, containerd: Containerd) -> str:
        """What it logged."""
        return self.daemon.log_text()


def _host_path(name: str, path: Path, kind: str = "DirectoryOrCreate") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": str(path), "type": kind}}


def agent_pod(image: str, paths: AgentPaths, session: Path) -> dict[str, Any]:
    """The static pod: the DaemonSet's pod (privileged, hostNetwork, hostPID, its host mounts)
    with this session's directories (simulated host, state, socket, CNI bin dir: all under
    `session`) mounted at their own paths."""
    mounts = [
        ("sys", Path("/sys"), "Directory", None),
        ("dev", Path("/dev"), "Directory", None),
        ("device-plugins", KUBELET_DIR / "device-plugins", "DirectoryOrCreate", None),
        ("pod-resources", KUBELET_DIR / "pod-resources", "DirectoryOrCreate", None),
        # Pod netns appear here after the agent started: they must propagate into it.
        ("netns", Path("/run/netns"), "DirectoryOrCreate", "HostToContainer"),
        ("session", session, "Directory", None),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": AGENT_POD, "namespace": AGENT_NAMESPACE,
                     "labels": {"app": "sriovkit-agent"}},
        "spec": {
            "hostNetwork": True,
            "hostPID": True,
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "agent",
                "image": image,
                "imagePullPolicy": "Never",
                "args": paths.args(),
                "env": [{"name": "SRIOVKIT_ROOT", "value": str(paths.root)}],
                "securityContext": {"privileged": True},
                "volumeMounts": [
                    {"name": n, "mountPath": str(p),
                     **({"mountPropagation": prop} if prop else {})}
                    for n, p, _, prop in mounts
                ],
            }],
            "volumes": [_host_path(n, p, kind) for n, p, kind, _ in mounts],
        },
    }  # fmt: skip


class PodAgent:
    """The agent image as a static pod of the kubelet."""

    kind = "pod"
    daemon = None

    def __init__(self, paths: AgentPaths, base: Path, image: str, archive: Path) -> None:
        self.paths = paths
        self.base = base
        self.image = image
        self.archive = archive

    @property
    def name(self) -> str:
        """The pod's name on the node."""
        from nodekit import NODE_NAME  # noqa: PLC0415

        return f"{AGENT_POD}-{NODE_NAME}"

    def start(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """Import the image, write the static pod, wait until its container runs."""
        containerd.import_image(self.archive)
        kubelet.add_pod(agent_pod(self.image, self.paths, self.base))
        wait_until("the agent pod to run",
                   lambda: containerd.pod_processes(self.name).get("agent"),
                   timeout=120)  # fmt: skip

    def stop(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """Remove the static pod and wait until its container is gone."""
        kubelet.remove_pod(AGENT_POD)
        if kubelet.daemon.running() and containerd.daemon.running():
            wait_until("the agent pod to stop", lambda: not containerd.pod_processes(self.name),
                       timeout=60)  # fmt: skip

    def log_text(self, containerd: Containerd) -> str:
        """What it logged (the CRI's log files under /var/log/pods)."""
        logs = sorted(Path("/var/log/pods").glob(f"{AGENT_NAMESPACE}_{self.name}_*/agent/*.log"))
        return "".join(p.read_text(errors="replace") for p in logs)


__all__ = ["AGENT_POD", "AgentPaths", "HostAgent", "PodAgent", "agent_pod"]
