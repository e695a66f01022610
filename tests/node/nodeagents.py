"""The sriovkit agent of the node tier, in one of two forms with one interface:

- `PodAgent`: deploy/daemonset.yaml's pod run by kubelet as a static pod (`nodedeploy.py` says what
  changes: the production paths become this session's), the agent image imported into
  containerd (traced) which is its parent, so its connects are in containerd's trace;
- `HostAgent`: `sriovkit agent` run from this checkout's venv with the DaemonSet's arguments
  (but the image's `--shim-binary`: the static shim is compiled on the host), under strace
  (`SRIOVKIT_NODE_AGENT=host`, or no image to be had outside CI).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nodedeploy as deploy
from nodedaemons import Traced, wait_until
from nodekit import Containerd, Kubelet

AGENT_POD = "sriovkit-agent"
AGENT_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class AgentPaths:
    """Where the agent's inputs and outputs live for this session: the DaemonSet's node paths
    (`production`) mapped to the session's."""

    root: Path  # the simulated host
    base: Path  # the session directory
    cni_bin: Path  # containerd's CNI bin dir

    @property
    def production(self) -> dict[str, Path]:
        """DaemonSet node path -> this session's path."""
        devinfo = "/var/run/k8s.cni.cncf.io/devinfo"
        return {
            "/opt/cni/bin": self.cni_bin,
            "/var/lib/cni": self.base / "cni-state",
            "/var/lib/sriovkit": self.base / "state",
            "/run/sriovkit": self.base / "run",
            "/etc/pcidp": self.base / "pcidp",
            # The agent writes these under its --root, the simulated host.
            devinfo: self.root / devinfo.lstrip("/"),
            "/var/run/cdi": self.root / "var/run/cdi",
        }

    @property
    def socket(self) -> Path:
        return Path(deploy.remap("/run/sriovkit/agent.sock", self.production))

    @property
    def state(self) -> Path:
        return self.production["/var/lib/sriovkit"]

    def prepare(self) -> None:
        """Make the directories and write the pools (the ConfigMap's config.json)."""
        for path in self.production.values():
            path.mkdir(parents=True, exist_ok=True)
        (self.production["/etc/pcidp"] / "config.json").write_text(json.dumps(deploy.pools()))


class HostAgent:
    """`sriovkit agent` from the venv, on the host, under strace."""

    kind = "host"

    def __init__(self, paths: AgentPaths) -> None:
        args = [a for a in deploy.agent_args(paths.production)
                if not a.startswith("--shim-binary")]  # fmt: skip
        argv = [sys.executable, "-m", "sriovkit.cli", "--root", str(paths.root), "agent", *args]
        self.daemon = Traced("agent", argv, paths.base)

    def start(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """Start it (kubelet is up: it registers at once)."""
        self.daemon.start()

    def stop(self, kubelet: Kubelet, containerd: Containerd) -> None:
        """SIGTERM."""
        self.daemon.stop()

    def log_text(self, containerd: Containerd) -> str:
        """What it logged."""
        return self.daemon.log_text()


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

    def __init__(self, paths: AgentPaths, archive: Path) -> None:
        self.paths = paths
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
        pod = deploy.agent_static_pod(AGENT_POD, AGENT_NAMESPACE, self.paths.production,
                                      self.paths.root, self.paths.socket)  # fmt: skip
        kubelet.add_pod(pod)
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
    image = deploy.image_name()
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


__all__ = ["AGENT_POD", "AgentPaths", "HostAgent", "PodAgent", "agent_image_archive"]
