"""The `sriov` CNI without Multus: a `resourceName` config gets the pod's VF from kubelet's
PodResources API (the test kubelet's, `fake_podresources`), through `dispatch.execute` on a
simulated host, with the kubelet directory taken from SRIOVKIT_KUBELET_DIR as in production."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_kubelet import short_root
from fake_podresources import FakePodResources

from sriovkit.cni.dispatch import execute, host_context
from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.ipam import Ipam
from sriovkit.host.podresources import SOCKET, PodResources, default_kubelet_dir
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.pci import PciAddress
from sriovkit.ops.cni.context import AttachContext
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.sim.netlink import FakeNetlink

RESOURCE = "intel.com/sriov_net"


class Node:
    """A simulated host with 3 VFs, a kubelet directory and a pod `default/web` with a netns."""

    def __init__(self, root: Path, kubelet: Path) -> None:
        sim = create_host(root / "host", ["82576"], vfs=3, extras=False)
        self.root = root
        self.kubelet = kubelet
        self.vfs = [str(PciAddress.parse(v)) for v in sim.vfs(sim.pfs[0].address)]
        self.netns = root / "netns" / "web"
        self.netns.parent.mkdir()
        self.netns.touch()
        self.store = StateStore(root / "state")
        self.ctx = AttachContext(
            sysfs=SimSysfs(root / "host"),
            netlink=FakeNetlink(root / "host"),
            ipam=Ipam([root / "no-plugins"]),
            store=self.store,
            lock_timeout=5.0,
            netns_alive=lambda p: p.exists(),
            announce=False,
            return_timeout=0.0,
        )
        self.wrap: Any = None  # wraps the PodResources client (a barrier, a call counter)

    @contextmanager
    def factory(self, env: Mapping[str, str]) -> Iterator[AttachContext]:
        """The simulated seams, with the PodResources client `host_context` would build."""
        client: Any = PodResources(default_kubelet_dir(env) / SOCKET)
        if self.wrap is not None:
            client = self.wrap(client)
        yield dataclasses.replace(self.ctx, pod_devices=client)

    def env(self, command: str, ifname: str = "net1", **args: str) -> dict[str, str]:
        pod = {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web", **args}
        return {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": "sandbox1",
            "CNI_IFNAME": ifname,
            "CNI_NETNS": str(self.netns),
            "CNI_PATH": str(self.root / "no-plugins"),
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in pod.items() if v),
            "SRIOVKIT_KUBELET_DIR": str(self.kubelet),
        }

    def run(self, command: str, ifname: str = "net1", **extra: Any) -> tuple[int, Any]:
        args = {k: extra.pop(k) for k in list(extra) if k.startswith("K8S_")}
        conf = {"cniVersion": "1.1.0", "name": "net-a", "type": "sriov", "resourceName": RESOURCE}
        conf.update(extra)
        code, out = execute(
            self.env(command, ifname, **args), json.dumps(conf).encode(), ctx_factory=self.factory
        )
        return code, json.loads(out) if out else None

    def holder(self, vf: str) -> str | None:
        alloc = self.store.read_allocation(vf)
        return None if alloc is None else alloc.ifname


@pytest.fixture
def kubelet_dir() -> Iterator[Path]:
    with short_root("skpr") as root:  # a socket path must fit in 108 bytes
        yield root


@pytest.fixture
def node(tmp_path: Path, kubelet_dir: Path) -> Node:
    return Node(tmp_path, kubelet_dir)


@pytest.fixture
def kubelet(kubelet_dir: Path) -> Iterator[FakePodResources]:
    with FakePodResources(kubelet_dir) as fake:
        yield fake


def test_add_takes_the_pods_device_and_a_second_ifname_the_next(
    node: Node, kubelet: FakePodResources
) -> None:
    # kubelet's order, not the PCI order: the pod got VF 2 then VF 1 (VF 0 is another pod's).
    kubelet.assign("default", "web", {"app": {RESOURCE: [node.vfs[2], node.vfs[1]]}})
    kubelet.assign("default", "other", {"app": {RESOURCE: [node.vfs[0]]}})
    code, result = node.run("ADD", "net1")
    assert code == 0, result
    assert result["interfaces"][0]["pciID"] == node.vfs[2]
    code, result = node.run("ADD", "net2")
    assert code == 0, result
    assert result["interfaces"][0]["pciID"] == node.vfs[1]
    assert [node.holder(v) for v in node.vfs] == [None, "net2", "net1"]
    assert kubelet.calls == ["Get", "Get"]
    # A third interface of the resource: the pod holds only two.
    code, error = node.run("ADD", "net3")
    assert (code, error["code"]) == (1, 7), error
    assert "pod default/web holds 2 intel.com/sriov_net device(s)" in error["msg"]
    assert "all attached to its other interfaces" in error["msg"]


def test_a_retried_add_gets_its_own_device_back(node: Node, kubelet: FakePodResources) -> None:
    kubelet.assign("default", "web", {"app": {RESOURCE: [node.vfs[0], node.vfs[1]]}})
    first = node.run("ADD", "net1")
    again = node.run("ADD", "net1")
    assert first[0] == again[0] == 0
    assert again[1] == first[1]  # the recorded result, same VF
    assert [node.holder(v) for v in node.vfs] == ["net1", None, None]


def test_devices_from_every_container_and_list_on_an_old_kubelet(
    node: Node, kubelet_dir: Path
) -> None:
    with FakePodResources(kubelet_dir, has_get=False) as old:
        old.assign(
            "default",
            "web",
            {"init": {"example.com/other": ["x"]}, "app": {RESOURCE: [node.vfs[1]]}},
        )
        code, result = node.run("ADD")
        assert code == 0, result
        assert result["interfaces"][0]["pciID"] == node.vfs[1]
        assert old.calls == ["List"]  # Get answered UNIMPLEMENTED, as kubelet 1.20 does


def test_the_pod_holds_none_of_the_resource(node: Node, kubelet: FakePodResources) -> None:
    kubelet.assign("default", "web", {"app": {"example.com/gpu": ["gpu0"]}})
    code, error = node.run("ADD")
    assert (code, error["code"]) == (1, 7), error
    assert "pod default/web holds no intel.com/sriov_net device" in error["msg"]
    # A pod kubelet does not know at all (Get fails, List has no such pod): the same.
    code, error = node.run("ADD", K8S_POD_NAME="ghost")
    assert (code, error["code"]) == (1, 7), error
    assert "pod default/ghost holds no intel.com/sriov_net device" in error["msg"]
    assert [node.holder(v) for v in node.vfs] == [None, None, None]


def test_kubelet_not_running_is_try_again_naming_the_socket(node: Node) -> None:
    code, error = node.run("ADD")
    assert (code, error["code"]) == (1, 11), error
    assert str(node.kubelet / "pod-resources/kubelet.sock") in error["msg"]
    assert [node.holder(v) for v in node.vfs] == [None, None, None]


def test_a_dead_kubelet_socket_is_try_again(node: Node, kubelet_dir: Path) -> None:
    fake = FakePodResources(kubelet_dir).start()
    fake._server.stop(0).wait()  # the socket file stays, nobody listens: kubelet died
    code, error = node.run("ADD")
    assert (code, error["code"]) == (1, 11), error
    assert "pod-resources/kubelet.sock" in error["msg"]


def test_the_pod_must_be_named_in_cni_args(node: Node, kubelet: FakePodResources) -> None:
    code, error = node.run("ADD", K8S_POD_NAME="")
    assert (code, error["code"]) == (1, 4), error
    assert "K8S_POD_NAME not set" in error["msg"] and RESOURCE in error["msg"]
    assert kubelet.calls == []


def test_a_bad_resource_name_is_invalid_config(node: Node) -> None:
    code, error = node.run("ADD", resourceName="sriov_net")
    assert (code, error["code"]) == (1, 7), error
    assert "resourceName" in error["msg"]


def test_a_device_id_wins_over_the_resource_name(node: Node, kubelet: FakePodResources) -> None:
    code, result = node.run("ADD", deviceID=node.vfs[2])
    assert code == 0, result
    assert result["interfaces"][0]["pciID"] == node.vfs[2]
    assert kubelet.calls == []


def test_two_concurrent_adds_of_one_pod_take_different_vfs(
    node: Node, kubelet: FakePodResources
) -> None:
    kubelet.assign("default", "web", {"app": {RESOURCE: [node.vfs[0], node.vfs[1]]}})
    both_asked = threading.Barrier(2, timeout=10)

    class AskTogether:
        """Both ADDs have kubelet's answer before either chooses: the race the pod lock closes."""

        def __init__(self, inner: PodResources) -> None:
            self.inner = inner

        def devices(self, namespace: str, name: str, resource: str) -> Sequence[str]:
            ids = self.inner.devices(namespace, name, resource)
            both_asked.wait()
            return ids

    node.wrap = AskTogether
    answers: dict[str, tuple[int, Any]] = {}

    def add(ifname: str) -> None:
        answers[ifname] = node.run("ADD", ifname)

    threads = [threading.Thread(target=add, args=(n,)) for n in ("net1", "net2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [answers[n][0] for n in ("net1", "net2")] == [0, 0], answers
    picked = {answers[n][1]["interfaces"][0]["pciID"] for n in ("net1", "net2")}
    assert picked == {node.vfs[0], node.vfs[1]}
    assert sorted(str(node.holder(v)) for v in node.vfs[:2]) == ["net1", "net2"]


def test_check_and_del_work_from_the_record_without_kubelet(
    node: Node, kubelet: FakePodResources
) -> None:
    kubelet.assign("default", "web", {"app": {RESOURCE: [node.vfs[1]]}})
    code, result = node.run("ADD")
    assert code == 0, result
    kubelet.stop()  # kubelet restarting: CHECK and DEL must not need it
    code, out = node.run("CHECK", prevResult=result)
    assert (code, out) == (0, None), out
    code, out = node.run("DEL")
    assert (code, out) == (0, None), out
    assert [node.holder(v) for v in node.vfs] == [None, None, None]
    assert node.store.read_attachment(AttachmentKey("sandbox1", "net1")) is None
    assert kubelet.calls == ["Get"]


def test_host_context_asks_the_kubelet_dir_of_the_env(tmp_path: Path) -> None:
    env = {"SRIOVKIT_STATE_DIR": str(tmp_path / "state"), "CNI_PATH": ""}
    with host_context({**env, "SRIOVKIT_KUBELET_DIR": "/k"}) as ctx:
        assert isinstance(ctx.pod_devices, PodResources)
        assert ctx.pod_devices.socket == Path("/k/pod-resources/kubelet.sock")
    with host_context(env) as ctx:
        assert isinstance(ctx.pod_devices, PodResources)
        assert ctx.pod_devices.socket == Path("/var/lib/kubelet/pod-resources/kubelet.sock")


def test_the_client_alone(kubelet_dir: Path, kubelet: FakePodResources) -> None:
    kubelet.assign("ns1", "p", {"a": {RESOURCE: ["0000:01:10.0"]}, "b": {RESOURCE: ["x", "y"]}})
    client = PodResources(kubelet_dir / SOCKET)
    # Every container's devices, each once, in kubelet's order; other pods' never.
    kubelet.assign("ns2", "p", {"a": {RESOURCE: ["z"]}})
    assert client.devices("ns1", "p", RESOURCE) == ("0000:01:10.0", "x", "y")
    assert client.devices("ns1", "p", "example.com/other") == ()


def test_the_client_refuses_what_is_not_a_socket(tmp_path: Path) -> None:
    (tmp_path / "pod-resources").mkdir()
    (tmp_path / "pod-resources/kubelet.sock").write_text("")
    with pytest.raises(HostError, match="is not a socket") as info:
        PodResources(tmp_path / SOCKET).devices("ns", "p", RESOURCE)
    assert info.value.cni_code == 999


def test_a_relative_kubelet_dir_is_refused() -> None:
    with pytest.raises(InvalidInput, match="SRIOVKIT_KUBELET_DIR"):
        default_kubelet_dir({"SRIOVKIT_KUBELET_DIR": "var/lib/kubelet"})
