"""The whole Kubernetes chain for one VF, on a simulated host and without root.

kubelet's half is played by the test kubelets (`FakeKubelet` for the device plugin API,
`FakePodResources` for what it records of each pod); sriovkit's half is real: one `sriovkit
agent --device-plugin` process serves the pools and, on its CNI socket, the `sriov` plugin,
reached through the shim `install-cni` writes, executed with CNI_* variables as a runtime does.

1. the agent registers its pool and lists the VFs; kubelet asks GetPreferredAllocation for one
   and Allocates it for the pod;
2. kubelet's PodResources then reports the pod holding that device for the resource (the fake
   is told so: the real kubelet records the answer of step 1);
3. CNI ADD with `resourceName` and no deviceID attaches exactly that VF (not the first free
   one, not another pod's); DEL gives it back.

The kubelet directory reaches the CNI only through the agent: `--kubelet-dir` is the default
every request runs with, and the shim's environment does not name it. Were the ADD run by the
shim's in-process fallback instead, it would ask /var/lib/kubelet and fail, so a success proves
the agent answered.

The pod netns is `/proc/PID/ns/net` of a child process: a live nsfs file any user may name, so
the agent's real `netns_alive` accepts it on DEL, while the simulated netlink only uses the path
as a namespace's name (nothing enters it). So no root is needed and ADD and DEL go through the
shim and the agent, not through `dispatch.execute` in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_kubelet import FakeKubelet, dp_agent, short_root, wait_cni_socket
from fake_podresources import FakePodResources

from sriovkit.cli import cli
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey
from sriovkit.sim import create_host
from sriovkit.sim.netlink import FakeNetlink

RESOURCE = "intel.com/igb_vfs"
CONFIG = {"resourceList": [{"resourceName": "igb_vfs", "selectors": {"drivers": ["igbvf"]}}]}


@pytest.fixture
def pod_netns() -> Iterator[Path]:
    """A live network namespace file without root: a sleeping child's."""
    child = subprocess.Popen(["sleep", "300"])
    try:
        yield Path(f"/proc/{child.pid}/ns/net")
    finally:
        child.kill()
        child.wait()


def install_shim(bin_dir: Path, agent_socket: Path, state: Path, root: Path) -> Path:
    """The CNI plugin as `sriovkit install-cni` installs it, pointing at the agent's socket."""
    args = ["--root", str(root), "install-cni", "--bin-dir", str(bin_dir)]
    args += ["--socket", str(agent_socket), "--state-dir", str(state)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return bin_dir / "sriov"


def run_cni(shim: Path, command: str, netns: Path, tmp: Path) -> tuple[int, Any, str]:
    """One plugin execution as a runtime does it: CNI_* in the env, the config on stdin."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "sandbox1",
        "CNI_IFNAME": "net1",
        "CNI_NETNS": str(netns),
        "CNI_PATH": str(tmp / "no-plugins"),
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1",
    }
    conf = {"cniVersion": "1.1.0", "name": "net-a", "type": "sriov", "resourceName": RESOURCE}
    proc = subprocess.run(
        [str(shim)], input=json.dumps(conf).encode(), env=env, capture_output=True,
        timeout=120, check=False,
    )  # fmt: skip
    out = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, out, proc.stderr.decode()


def test_allocate_then_cni_add_takes_that_vf_and_del_gives_it_back(
    tmp_path: Path, pod_netns: Path
) -> None:
    host = tmp_path / "host"
    sim = create_host(host, ["82576"], vfs=2, extras=False)
    vfs = sorted(v for pf in sim.pfs for v in sim.vfs(pf.address))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    state = tmp_path / "state"
    store = StateStore(state)
    with short_root("skch") as kubelet_dir:
        shim = install_shim(tmp_path / "bin", kubelet_dir / "agent.sock", state, host)
        kubelet = FakeKubelet(kubelet_dir).start()
        podres = FakePodResources(kubelet_dir).start()
        try:
            with dp_agent(host, config, kubelet_dir, state, kubelet_dir / "agent.sock"):
                (request,) = kubelet.wait_registered(1, timeout=30)
                assert request.resource_name == RESOURCE
                listed = sorted(d.id for d in kubelet.stream(RESOURCE).next(timeout=10))
                assert listed == vfs
                # Step 1: VF 0 already went to another pod; kubelet asks which of the rest.
                plugin = kubelet.plugin(RESOURCE)
                (chosen,) = plugin.preferred(vfs[1:], 1)
                assert chosen in vfs[1:]
                answer = plugin.allocate([chosen])
                envs = dict(answer.container_responses[0].envs)
                assert envs["PCIDEVICE_INTEL_COM_IGB_VFS"] == chosen
                # Step 2: what kubelet records of that Allocate, per pod and container.
                podres.assign("default", "other", {"app": {RESOURCE: [vfs[0]]}})
                podres.assign("default", "web", {"app": {RESOURCE: [chosen]}})
                # Step 3: the sriov CNI, through the shim and the agent.
                wait_cni_socket(kubelet_dir / "agent.sock")
                code, result, err = run_cni(shim, "ADD", pod_netns, tmp_path)
                assert code == 0, (result, err)
                assert [i.get("pciID") for i in result["interfaces"]] == [chosen]
                held = {v: store.read_allocation(v) for v in vfs}
                assert {v: a.ifname for v, a in held.items() if a is not None} == {chosen: "net1"}
                assert podres.calls == ["Get"]
                pod_links = {link.name for link in FakeNetlink(host).in_netns(pod_netns).links()}
                assert "net1" in pod_links
                code, result, err = run_cni(shim, "DEL", pod_netns, tmp_path)
                assert (code, result) == (0, None), err
                assert all(store.read_allocation(v) is None for v in vfs)
                assert store.read_attachment(AttachmentKey("sandbox1", "net1")) is None
                assert "net1" not in {
                    link.name for link in FakeNetlink(host).in_netns(pod_netns).links()
                }
        finally:
            podres.stop()
            kubelet.stop()
