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

import os
import re
import subprocess
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


def agent_pod(image: str, paths: AgentPaths, session: Path, shim: str) -> dict[str, Any]:
    """The static pod: the DaemonSet's pod (privileged, hostNetwork, hostPID, its host mounts,
    issue 14's list) with this session's paths in place of the production ones.

    /sys, /dev, kubelet's device-plugins/ and pod-resources/ and /run/netns (HostToContainer:
    pod netns made after the agent started must appear in it) are the host's own. The others
    are under `session`, mounted at the same path: the simulated host (`--root`, which also
    holds the device-info dir /var/run/k8s.cni.cncf.io/devinfo and /var/run/cdi under it),
    the state dir (/var/lib/sriovkit), the agent socket (/run/sriovkit), containerd's CNI bin
    dir (/opt/cni/bin) and host-local's data dir (/var/lib/cni)."""
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
                "args": [*paths.args(), "--shim-binary", shim],
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


# Where the image keeps its static shim (Containerfile): without --shim-binary the agent would
# try to compile one, find no compiler in the image and install the Python shim, whose
# interpreter line names the image's Python, not one on the host.
IMAGE_SHIM = "/usr/lib/sriovkit/sriov-shim"


def shared_netns_dir() -> None:
    """Make /run/netns the shared mount `ip netns add` makes of it (on a fresh machine it may
    not exist yet). The agent pod mounts it with HostToContainer propagation, which carries
    the pods' netns made later into the agent's container only from a shared mount: from a
    plain directory (what hostPath DirectoryOrCreate would make) they never appear there."""
    netns = Path("/run/netns")
    if any(line.split()[4] == str(netns)
           for line in Path("/proc/self/mountinfo").read_text().splitlines()):  # fmt: skip
        return
    name = f"sknode-probe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "del", name], check=True, capture_output=True)


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
        shared_netns_dir()
        containerd.import_image(self.archive)
        kubelet.add_pod(agent_pod(self.image, self.paths, self.base, IMAGE_SHIM))
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


def agent_image_archive(repo: Path, directory: Path) -> tuple[str, Path]:
    """The agent image's name and an OCI archive of it for `ctr images import`.

    `scripts/build-image.sh` builds the image from `repo` (or finds it up to date: `make test`
    has run it) and says its id; the archive in `directory` is rewritten only when that id
    changed (`podman save` of ~235 MB takes ~15 s). RuntimeError says why it cannot be had.
    """
    script = repo / "scripts" / "build-image.sh"
    image = (repo / "deploy" / "IMAGE").read_text().strip()
    archive, stamp = directory / "agent.oci.tar", directory / "agent.oci.id"

    def build(*extra: str) -> str:
        proc = subprocess.run(["bash", str(script), *extra], cwd=repo, capture_output=True,
                              text=True, check=False, timeout=1800)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{script.name} exited {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-1500:]}")  # fmt: skip
        return proc.stdout

    said = re.search(r" is ([0-9a-f]{12}) ", build())
    if said is None:
        raise RuntimeError(f"{script.name} did not say the image's id")
    if archive.is_file() and stamp.is_file() and stamp.read_text() == said.group(1):
        return image, archive
    directory.mkdir(parents=True, exist_ok=True)
    build("--archive", str(archive))
    stamp.write_text(said.group(1))
    return image, archive


__all__ = ["AGENT_POD", "AgentPaths", "HostAgent", "PodAgent", "agent_image_archive", "agent_pod"]
