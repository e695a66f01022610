"""`DevicePluginService.resources_changed` in-process, in kubelet's plugin-watcher mode and with
CDI: an added resource gets a socket the watcher finds and a CDI spec; a removed one loses its
socket, its stream and its CDI spec."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fake_kubelet import FakeKubelet, Seen, short_root

from sriovkit.deviceplugin.model import Device, ResourceFeed
from sriovkit.deviceplugin.service import DevicePluginService

NET = "intel.com/sriov_net"
DPDK = "intel.com/sriov_dpdk"


def _eventually(ok: Callable[[], bool], what: str) -> None:
    """Wait for a state the service's thread reaches; the bound only guards a broken one."""
    deadline = time.monotonic() + 30
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _spec(cdi: Path, name: str) -> Path:
    return cdi / f"sriovkit-intel.com-net-pci-{name}.json"


def test_added_and_removed_in_watcher_mode_with_cdi() -> None:
    net = ResourceFeed(NET, [Device("0000:01:10.0", pf="pf1", numa=0)])
    dpdk = ResourceFeed(DPDK, [Device("0000:03:10.0", pf="pf3", driver="vfio-pci",
                                      iommu_group="7")])  # fmt: skip
    with short_root() as root:
        registry = root / "plugins_registry"
        registry.mkdir()
        cdi = root / "cdi"
        kubelet = FakeKubelet(root).start()
        service = DevicePluginService([net], root, registration="watcher", cdi_dir=cdi)
        exits: list[BaseException | None] = []
        service.start(exits.append)
        try:
            net_sock = registry / "sriovkit-intel.com_sriov_net.sock"
            dpdk_sock = registry / "sriovkit-intel.com_sriov_dpdk.sock"
            assert net_sock.is_socket() and _spec(cdi, "sriov_net").is_file()

            service.resources_changed([dpdk], [])
            _eventually(dpdk_sock.is_socket, "no socket for the added resource")
            infos = sorted(info.name for info, _ in kubelet.probe_registry())
            assert infos == [DPDK, NET]
            assert kubelet.stream(DPDK).next() == [Seen("0000:03:10.0", "Healthy", ())]
            assert _spec(cdi, "sriov_dpdk").is_file()

            net_stream = kubelet.stream(NET)
            service.resources_changed([], [net])
            # The CDI spec goes last (after the server stopped: no Allocate can name it then).
            _eventually(lambda: not _spec(cdi, "sriov_net").exists(), "its CDI spec stayed")
            assert not net_sock.exists() and net_stream.ended.wait(30)
            assert _spec(cdi, "sriov_dpdk").is_file()
            assert [s.feed.name for s in service.servers] == [DPDK]
            assert sorted(p.name for p in registry.iterdir()) == [dpdk_sock.name]
        finally:
            service.stop()
            kubelet.stop()
        assert exits == []
        assert list(registry.iterdir()) == []
