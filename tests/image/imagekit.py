"""Helpers for the image tier: build the agent image, run it as the DaemonSet runs it.

The image is built by scripts/build-image.sh (cached in /var/cache/sriovkit-image; ~0.5 s when
nothing changed) into its own podman storage; `image_podman()` is podman pointed at that
storage. The agent container gets the DaemonSet's privileges (`--privileged --network host
--pid host`) and its kernel-facing mounts (/sys, /dev, /run/netns with HostToContainer
propagation); the DaemonSet's node directories (CNI bin dir, state dir, socket dir) are the
test's own, mounted at the same path inside and out, as the DaemonSet mounts the node's (the
shim the agent installs carries the agent's paths, which must mean the same on the host).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from podmankit import Podman

REPO = Path(__file__).resolve().parents[2]
IMAGE = (REPO / "deploy/IMAGE").read_text().strip()
BUILD = REPO / "scripts/build-image.sh"
SHIM_IN_IMAGE = "/usr/lib/sriovkit/sriov-shim"
LOCK = Path("/tmp/sriovkit-podman.lock")
"""Held by whatever drives podman heavily on this machine (build-image.sh takes it too)."""
BUILD_TIMEOUT = 1800  # from nothing: debootstrap, .debs, wheels, build ~6-7 min here


@contextmanager
def podman_lock() -> Iterator[None]:
    """The machine's podman lock, for as long as the block runs."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_image() -> Podman:
    """Build (or find up to date) the image; podman pointed at the storage that holds it.
    Called with the podman lock held (the script is told so and does not take it again)."""
    env = {**os.environ, "SRIOVKIT_PODMAN_LOCK_HELD": "1"}
    proc = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/build-image.sh exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    printed = subprocess.run(
        ["bash", str(BUILD), "--print-env"], capture_output=True, text=True, env=env, check=True
    ).stdout
    settings = dict(line.split("=", 1) for line in printed.splitlines() if "=" in line)
    assert settings["IMAGE"] == IMAGE, settings
    return Podman(Path(settings["CONTAINERS_CONF"]), Path(settings["CONTAINERS_STORAGE_CONF"]))


@dataclass
class AgentContainer:
    """The image's `sriovkit agent` in a container, against a simulated host at `root`."""

    podman: Podman
    name: str
    root: Path
    socket: Path
    state: Path
    bin_dir: Path

    @classmethod
    def create(
        cls, podman: Podman, base: Path, root: Path, *, extra_mounts: tuple[str, ...] = ()
    ) -> AgentContainer:
        """`podman create` the agent container (not started) with everything under `base`."""
        agent = cls(
            podman, f"skimg-agent-{uuid.uuid4().hex[:8]}", root,
            base / "run/agent.sock", base / "state", base / "bin",
        )  # fmt: skip
        agent.bin_dir.mkdir(parents=True, exist_ok=True)
        mounts = [
            # The kernel-facing mounts of deploy/daemonset.yaml.
            "/sys:/sys",
            "/dev:/dev",
            "/run/netns:/run/netns:rslave",
            # The node's directories: this test's, at the same path inside and out.
            f"{base}:{base}",
            *extra_mounts,
        ]
        podman(
            "create", "--pull=never", "--name", agent.name,
            "--privileged", "--network", "host", "--pid", "host",
            *(arg for m in mounts for arg in ("-v", m)),
            # The simulated host: the agent's --root (a global option, so by its variable).
            "-e", f"SRIOVKIT_ROOT={root}",
            IMAGE,
            # The image's entry point is `sriovkit agent`; these are the DaemonSet's args with
            # the node paths moved under `base`.
            "-v", "--socket", str(agent.socket), "--state-dir", str(agent.state),
            "--install-cni-dir", str(agent.bin_dir), "--shim-binary", SHIM_IN_IMAGE,
        )  # fmt: skip
        return agent

    def logs(self) -> str:
        """Everything the agent wrote (stderr: its log) since the container was created."""
        proc = self.podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def start(self, timeout: float = 120.0, probe: list[str] | None = None) -> None:
        """Start it; return once it serves (after its replay and the install): once it logs so
        (`-v`), or with `probe`, once that command exits 0 in the container (as kubelet runs
        a startup probe)."""
        served_before = self.logs().count("serving CNI requests")
        self.podman("start", self.name)
        deadline = time.monotonic() + timeout
        while True:
            if probe is not None:
                if self.podman("exec", self.name, *probe, check=False).returncode == 0:
                    return
            elif self.logs().count("serving CNI requests") > served_before:
                return
            state = self.podman("inspect", "--format", "{{.State.Status}}", self.name).stdout
            if state.strip() != "running" or time.monotonic() > deadline:
                raise AssertionError(
                    f"the agent container is {state.strip()} and does not serve:\n{self.logs()}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM to the agent (PID 1 in the container); it removes its socket as it goes."""
        self.podman("stop", "--time", "20", self.name)

    def remove(self) -> None:
        """Remove the container, running or not."""
        self.podman("rm", "--force", "--time", "5", self.name, check=False)

    def cat(self, path: str) -> bytes:
        """A file of the image (a throwaway container with the image's own file system)."""
        proc = subprocess.run(
            ["podman", "run", "--rm", "--pull=never", "--network=none", "--entrypoint", "cat",
             IMAGE, path],
            capture_output=True, check=True, timeout=120, stdin=subprocess.DEVNULL,
            env={**os.environ, "CONTAINERS_CONF": str(self.podman.conf),
                 "CONTAINERS_STORAGE_CONF": str(self.podman.storage)},
        )  # fmt: skip
        return proc.stdout


__all__ = ["IMAGE", "SHIM_IN_IMAGE", "AgentContainer", "build_image", "podman_lock"]
