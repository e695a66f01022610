"""The `sriov` CNI without Multus, as a node runs it: the installed shim, through a real
`sriovkit agent` process and through the shim's in-process fallback, on a veth-mode simulated
host, finds the pod's VFs through the test kubelet's PodResources socket (named by
SRIOVKIT_KUBELET_DIR, a request setting the agent lays over its --kubelet-dir)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cnikit import (
    NO_AGENT,
    AgentProcess,
    CniLab,
    cni_plugins_missing,
    install_shim,
    ip_links,
    running_agent,
    short_dir,
)

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fake_podresources import FakePodResources  # noqa: E402

from sriovkit.sim.veth import create_veth_host  # noqa: E402

RESOURCE = "intel.com/sriov_net"


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with short_dir() as directory, running_agent(directory) as running:
        yield running


@pytest.fixture(params=["agent", "in-process"])
def lab(tmp_path: Path, shim_kind: str, request: pytest.FixtureRequest) -> Iterator[CniLab]:
    sock = request.getfixturevalue("agent").socket if request.param == "agent" else NO_AGENT
    host = create_veth_host(tmp_path / "host", "82576", vfs=3, prefix="skr" + uuid.uuid4().hex[:4])
    try:
        shim = install_shim(tmp_path / "bin", sock, tmp_path / "state", host.root, shim_kind)
        made = CniLab(host, tmp_path / "state", tmp_path / "ipam", shim, sock)
        try:
            yield made
        finally:
            made.cleanup()
    finally:
        host.cleanup()


@pytest.fixture
def kubelet() -> Iterator[FakePodResources]:
    with short_dir() as root, FakePodResources(root) as fake:
        yield fake


def pod_env(lab: CniLab, kubelet: FakePodResources, command: str, c: str, netns: Path | None,
            ifname: str) -> dict[str, str]:  # fmt: skip
    env = lab.env(command, c, netns, ifname)
    env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    env["SRIOVKIT_KUBELET_DIR"] = str(kubelet.dir.parent)
    return env


def test_two_interfaces_of_one_pod_get_its_two_vfs(
    lab: CniLab, kubelet: FakePodResources
) -> None:
    vfs = [p.vf for p in lab.host.pairs]
    kubelet.assign("default", "web", {"app": {RESOURCE: [vfs[2], vfs[0]]}})
    before = lab.snapshot()
    pod = lab.new_netns()
    c = uuid.uuid4().hex
    conf = lab.conf(None, "1.1.0", resourceName=RESOURCE)
    del conf["ipam"]["routes"]  # one route, two interfaces: the second would find it there
    got = []
    for ifname in ("net1", "net2"):
        add = lab.run(pod_env(lab, kubelet, "ADD", c, pod, ifname), conf)
        assert add.code == 0, (add.stdout, add.stderr)
        got.append(add.json["interfaces"][0]["pciID"])
    assert got == [vfs[2], vfs[0]]
    inside = ip_links(pod)
    assert "net1" in inside and "net2" in inside
    assert lab.host.pair(vfs[1]).name in ip_links()  # the VF the pod does not hold stays
    third = lab.run(pod_env(lab, kubelet, "ADD", c, pod, "net3"), conf)
    assert third.code == 1 and third.json["code"] == 7, third.stdout
    assert "pod default/web" in third.json["msg"] and RESOURCE in third.json["msg"]
    kubelet.stop()  # DEL needs only the records
    for ifname in ("net2", "net1"):
        out = lab.run(pod_env(lab, kubelet, "DEL", c, pod, ifname), conf)
        assert (out.code, out.stdout) == (0, b""), out.stderr
    assert lab.snapshot() == before
    assert kubelet.calls == ["Get", "Get", "Get"]


def test_kubelet_down_is_try_again(lab: CniLab, kubelet: FakePodResources) -> None:
    kubelet.stop()
    before = lab.snapshot()
    pod = lab.new_netns()
    conf = lab.conf(None, "1.1.0", resourceName=RESOURCE)
    add = lab.run(pod_env(lab, kubelet, "ADD", uuid.uuid4().hex, pod, "net1"), conf)
    assert add.code == 1 and add.json["code"] == 11, add.stdout
    assert str(kubelet.sock) in add.json["msg"]
    assert lab.snapshot() == before
