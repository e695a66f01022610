"""The device plugin service against a test kubelet (fake_kubelet.py) over real gRPC on unix
sockets in a short temporary directory: registration, ListAndWatch, Allocate,
GetPreferredAllocation, kubelet restart, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fake_kubelet import FakeKubelet, Seen, short_root

from sriovkit.agent.supervisor import Supervisor
from sriovkit.deviceplugin.model import Device, ResourceFeed
from sriovkit.deviceplugin.service import DevicePluginService

NET = "intel.com/sriov_net"
DPDK = "intel.com/sriov_dpdk"


def vf(pf: int, n: int, numa: int = 0, **kw: object) -> Device:
    return Device(id=f"0000:0{pf}:10.{n}", pf=f"pf{pf}", numa=numa, **kw)  # type: ignore[arg-type]


@dataclass
class Rig:
    root: Path
    kubelet: FakeKubelet
    service: DevicePluginService
    net: ResourceFeed
    dpdk: ResourceFeed
    exits: list[BaseException | None]


@pytest.fixture
def rig() -> Iterator[Rig]:
    net = ResourceFeed(NET, [vf(1, 0), vf(1, 1), vf(2, 0, numa=1), vf(2, 1, numa=1)],
                       policy="spread")
    dpdk = ResourceFeed(DPDK, [vf(3, 0, driver="vfio-pci", iommu_group="7")], policy="pack")
    with short_root() as root:
        kubelet = FakeKubelet(root).start()
        # interval 60: only inotify can make the restart test's 2 s
        service = DevicePluginService([net, dpdk], root, interval=60)
        exits: list[BaseException | None] = []
        service.start(exits.append)
        r = Rig(root, kubelet, service, net, dpdk, exits)
        try:
            yield r
        finally:
            service.stop()
            r.kubelet.stop()
        assert exits == []


def test_registers_each_resource(rig: Rig) -> None:
    reqs = rig.kubelet.wait_registered(2)
    by_name = {r.resource_name: r for r in reqs}
    assert set(by_name) == {NET, DPDK}
    for name, req in by_name.items():
        assert req.version == "v1beta1"
        assert req.endpoint == "sriovkit-" + name.replace("/", "_") + ".sock"
        assert "/" not in req.endpoint
        assert (rig.root / "device-plugins" / req.endpoint).is_socket()
        assert req.options.get_preferred_allocation_available
        assert not req.options.pre_start_required
    opts = rig.kubelet.plugin(NET).options()
    assert opts.get_preferred_allocation_available


def test_list_and_watch_first_answer_update_and_health(rig: Rig) -> None:
    rig.kubelet.wait_registered(2)
    stream = rig.kubelet.stream(NET)
    first = stream.next()
    assert first == [
        Seen("0000:01:10.0", "Healthy", (0,)), Seen("0000:01:10.1", "Healthy", (0,)),
        Seen("0000:02:10.0", "Healthy", (1,)), Seen("0000:02:10.1", "Healthy", (1,)),
    ]
    rig.net.update([vf(1, 0), Device("0000:05:00.1")])  # one gone, one new without topology
    assert stream.next() == [Seen("0000:01:10.0", "Healthy", (0,)),
                             Seen("0000:05:00.1", "Healthy", ())]
    rig.net.update([vf(1, 0, healthy=False), Device("0000:05:00.1")])
    assert stream.next()[0] == Seen("0000:01:10.0", "Unhealthy", (0,))
    assert rig.kubelet.stream(DPDK).next() == [Seen("0000:03:10.0", "Healthy", (0,))]
    assert stream.answers.empty()


def test_allocate_envs_specs_and_errors(rig: Rig) -> None:
    rig.kubelet.wait_registered(2)
    got = rig.kubelet.plugin(DPDK).allocate(["0000:03:10.0"])
    c = got.container_responses[0]
    assert dict(c.envs)["PCIDEVICE_INTEL_COM_SRIOV_DPDK"] == "0000:03:10.0"
    assert json.loads(c.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK_INFO"]) == {
        "0000:03:10.0": {"generic": {"deviceID": "0000:03:10.0"},
                         "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/7"}}}
    assert [(d.host_path, d.container_path, d.permissions) for d in c.devices] == [
        ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"), ("/dev/vfio/7", "/dev/vfio/7", "rw")]
    net = rig.kubelet.plugin(NET)
    two = net.allocate(["0000:01:10.0"], ["0000:02:10.0", "0000:02:10.1"])
    assert [dict(r.envs)["PCIDEVICE_INTEL_COM_SRIOV_NET"] for r in two.container_responses] == [
        "0000:01:10.0", "0000:02:10.0,0000:02:10.1"]
    assert list(two.container_responses[0].devices) == []
    with pytest.raises(grpc.RpcError) as e:
        net.allocate(["0000:01:10.0", "0000:0f:00.0"])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "0000:0f:00.0" in e.value.details()
    rig.net.update([vf(1, 0, healthy=False)])
    with pytest.raises(grpc.RpcError) as e:
        net.allocate(["0000:01:10.0"])
    assert "0000:01:10.0 is unhealthy" in e.value.details()
    net.pre_start(["0000:01:10.0"])


def test_preferred_allocation(rig: Rig) -> None:
    rig.kubelet.wait_registered(2)
    net = rig.kubelet.plugin(NET)
    ids = [d.id for d in rig.net.current().devices]
    assert net.preferred(ids, 2) == ["0000:01:10.0", "0000:01:10.1"]  # NUMA 0 holds both
    assert net.preferred(ids, 2, must=["0000:02:10.1"]) == ["0000:02:10.1", "0000:02:10.0"]
    rig.net.update([vf(pf, n) for pf in (1, 2, 3) for n in (0, 1)])
    ids = [d.id for d in rig.net.current().devices]
    assert net.preferred(ids, 3) == ["0000:01:10.0", "0000:02:10.0", "0000:03:10.0"]  # spread


def test_kubelet_restart_reregisters_with_the_full_list(rig: Rig) -> None:
    rig.kubelet.wait_registered(2)
    rig.net.update([vf(1, 0), vf(1, 1, healthy=False)])
    old_sock = rig.root / "device-plugins" / "sriovkit-intel.com_sriov_net.sock"
    rig.kubelet.stop()
    began = time.monotonic()
    rig.kubelet = FakeKubelet(rig.root).start(wipe=True)  # deletes our sockets, as kubelet does
    reqs = rig.kubelet.wait_registered(2, timeout=2.0)  # the bound: fails past it
    took = time.monotonic() - began
    print(f"re-registered {took * 1000:.0f} ms after kubelet.sock came back")
    assert {r.resource_name for r in reqs} == {NET, DPDK}
    assert rig.kubelet.stream(NET).next(timeout=2.0) == [
        Seen("0000:01:10.0", "Healthy", (0,)), Seen("0000:01:10.1", "Unhealthy", (0,))]
    assert old_sock.is_socket()
    rig.net.update([vf(1, 0)])
    assert rig.kubelet.stream(NET).next() == [Seen("0000:01:10.0", "Healthy", (0,))]


def test_waits_for_kubelet_and_stop_removes_sockets() -> None:
    feed = ResourceFeed(NET, [vf(1, 0)])
    with short_root() as root:
        service = DevicePluginService([feed], root)
        exits: list[BaseException | None] = []
        # no device-plugins directory yet: nothing to watch, the 1 s re-check finds it
        service.start(exits.append)
        kubelet = FakeKubelet(root).start()
        try:
            kubelet.wait_registered(1, timeout=2.0)
            assert kubelet.stream(NET).next() == [Seen("0000:01:10.0", "Healthy", (0,))]
            assert sorted(p.name for p in kubelet.plugin_dir.iterdir()) == [
                "kubelet.sock", "sriovkit-intel.com_sriov_net.sock"]
        finally:
            service.stop()
            kubelet.stop()
        assert list((root / "device-plugins").iterdir()) == []
        assert exits == []


def test_duplicate_resource_names_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        DevicePluginService([ResourceFeed(NET), ResourceFeed(NET)])


def test_runs_under_the_supervisor() -> None:
    """The agent's supervisor starts and stops it like any other service; no threads are left."""
    before = {t.ident for t in threading.enumerate()}
    with short_root() as root:
        kubelet = FakeKubelet(root).start()
        service = DevicePluginService([ResourceFeed(NET, [vf(1, 0)])], root)
        sup = Supervisor([service], signals=())
        sup.start()
        try:
            kubelet.wait_registered(1)
            assert kubelet.stream(NET).next()[0].id == "0000:01:10.0"
        finally:
            sup.stop()
            kubelet.stop()
        assert list(kubelet.plugin_dir.iterdir()) == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [t for t in threading.enumerate()
                if t.ident not in before and t.name.startswith(("dp-", "device-plugin"))]
        if not left:
            break
        time.sleep(0.05)
    assert left == []


def test_plugin_watcher_registration() -> None:
    """registration="watcher": sockets in plugins_registry/, found and registered by kubelet's
    plugin watcher (GetInfo, GetDevicePluginOptions, NotifyRegistrationStatus); no Register."""
    feed = ResourceFeed(NET, [vf(1, 0)])
    with short_root() as root:
        (root / "plugins_registry").mkdir()
        kubelet = FakeKubelet(root).start()
        service = DevicePluginService([feed], root, registration="watcher")
        service.start(lambda error: None)
        try:
            [(info, opts)] = kubelet.probe_registry()
            sock = root / "plugins_registry" / "sriovkit-intel.com_sriov_net.sock"
            assert (info.type, info.name, info.endpoint, list(info.supported_versions)) == (
                "DevicePlugin", NET, str(sock), ["v1beta1"])
            assert opts.get_preferred_allocation_available
            assert kubelet.stream(NET).next() == [Seen("0000:01:10.0", "Healthy", (0,))]
            status = service.servers[0].watcher_registration
            assert status is not None and status.status is not None
            assert status.status.plugin_registered
            feed.update([vf(1, 0, healthy=False)])
            assert kubelet.stream(NET).next()[0].health == "Unhealthy"
            assert kubelet.requests == []
            assert not (root / "device-plugins" / sock.name).exists()
        finally:
            service.stop()
            kubelet.stop()
        assert list((root / "plugins_registry").iterdir()) == []
