"""The image runs with deploy/daemonset.yaml's own command line, mounts and probes.

The container is made from the manifest itself: its args, its privileges, each volume at its
mountPath. The kernel's /sys, /dev and /run/netns are the host's; every other hostPath and the
pools ConfigMap are directories of this test (this host has no kubelet and its node paths are
not ours to write). The agent must start with those args, install the shim into what it sees as
/opt/cni/bin, and answer each probe's command with exit 0; once stopped, the probe fails.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from imagekit import IMAGE, REPO, AgentContainer
from podmankit import Podman

from sriovkit.cni.cshim import CONFIG_NAME

pytestmark = [pytest.mark.root, pytest.mark.image]

KERNEL_PATHS = {"/sys", "/dev", "/run/netns"}


def manifest() -> tuple[dict[str, Any], dict[str, Any]]:
    """The DaemonSet's pod spec and the pools ConfigMap."""
    deploy = REPO / "deploy"
    (ds,) = yaml.safe_load_all((deploy / "daemonset.yaml").read_text())
    (cm,) = yaml.safe_load_all((deploy / "pools-configmap.yaml").read_text())
    return ds["spec"]["template"]["spec"], cm


@pytest.fixture
def node() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="skid", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def run_args(
    spec: dict[str, Any], cm: dict[str, Any], node: Path
) -> tuple[list[str], dict[str, Path]]:
    """`podman run` options for the manifest's pod; the test directory behind each mountPath."""
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    options = ["--privileged"]
    if spec.get("hostNetwork"):
        options += ["--network", "host"]
    if spec.get("hostPID"):
        options += ["--pid", "host"]
    behind: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        volume, target = volumes[mount["name"]], mount["mountPath"]
        if "hostPath" in volume and volume["hostPath"]["path"] in KERNEL_PATHS:
            source = volume["hostPath"]["path"]
        else:
            local = node / mount["name"]
            local.mkdir()
            if "configMap" in volume:
                for item in volume["configMap"]["items"]:
                    (local / item["path"]).write_text(cm["data"][item["key"]])
            source, behind[target] = str(local), local
        suffix = {"HostToContainer": ":rslave"}.get(mount.get("mountPropagation", ""), "")
        suffix = suffix or (":ro" if mount.get("readOnly") else "")
        options += ["-v", f"{source}:{target}{suffix}"]
    return [*options, container["image"], *container["args"]], behind


def test_daemonset_args_mounts_and_probes_work_in_the_image(
    image_podman: Podman, node: Path
) -> None:
    spec, cm = manifest()
    (container,) = spec["containers"]
    assert container["image"] == IMAGE
    args, behind = run_args(spec, cm, node)
    name = f"skimg-ds-{uuid.uuid4().hex[:8]}"
    agent = AgentContainer(image_podman, name, Path("/"), Path(), Path(), behind["/opt/cni/bin"])
    try:
        image_podman("create", "--pull=never", "--name", name, *args)
        # As kubelet does: the startup probe's command until it succeeds.
        startup = container["startupProbe"]
        limit = startup["periodSeconds"] * startup["failureThreshold"]
        agent.start(timeout=limit, probe=startup["exec"]["command"])
        # The shim went to the node's CNI bin dir (here: the test's), with the agent's paths.
        shim = behind["/opt/cni/bin"] / "sriov"
        assert shim.read_bytes() == agent.cat("/usr/lib/sriovkit/sriov-shim")
        settings = (behind["/opt/cni/bin"] / CONFIG_NAME).read_text()
        assert "/run/sriovkit/agent.sock" in settings and "/var/lib/sriovkit" in settings
        assert (behind["/run/sriovkit"] / "agent.sock").is_socket()
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            argv = container[probe]["exec"]["command"]
            done = image_podman("exec", name, *argv, check=False)
            assert (done.returncode, done.stdout) == (0, "sriovkit agent at "
                                                       "/run/sriovkit/agent.sock: ready\n"), done
        # The probe does look at the agent: with the agent gone it fails (run in a sibling
        # container on the same socket directory, as kubelet would exec into a restarting one).
        agent.stop()
        gone = subprocess.run(
            ["podman", "run", "--rm", "--pull=never", "--network=none",
             "-v", f"{behind['/run/sriovkit']}:/run/sriovkit", "--entrypoint", "sriovkit",
             IMAGE, *container["livenessProbe"]["exec"]["command"][1:]],
            capture_output=True, text=True, check=False, timeout=120,
            env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "CONTAINERS_CONF": str(image_podman.conf),
                 "CONTAINERS_STORAGE_CONF": str(image_podman.storage)},
        )  # fmt: skip
        assert gone.returncode == 5, gone
        assert "is not serving" in gone.stderr
    finally:
        agent.remove()
