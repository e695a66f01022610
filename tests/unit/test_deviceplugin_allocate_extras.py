"""Allocate beyond env and vfio: device-info files (and the `sriov` CNI reading them back),
vhost-net, RDMA character devices from a fake sysfs, CDI spec files and CDI names, and what
follows a feed update. The pure parts directly, the wiring over gRPC with the test kubelet."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet, short_root

from sriovkit.deviceplugin import cdi, devinfo
from sriovkit.deviceplugin.allocate import AllocationError, Rdma, Spec, allocate
from sriovkit.deviceplugin.extras import AllocateExtras
from sriovkit.deviceplugin.model import Device, Resource, ResourceFeed
from sriovkit.deviceplugin.pools import feeds_from_pools
from sriovkit.deviceplugin.service import DevicePluginService
from sriovkit.host.rdma import RdmaReader
from sriovkit.model.cni import parse_device_info
from sriovkit.model.dp_config import DeviceType, parse_config
from sriovkit.model.dp_pool import Pool, PoolDevice
from sriovkit.model.pci import PciAddress

NET = "intel.com/sriov_net"
DPDK = "intel.com/sriov_dpdk"
A, B, C = "0000:03:02.0", "0000:03:02.1", "0000:03:02.2"


def fake_rdma(root: Path, pci: str, dev: str, n: int) -> None:
    """A VF's RDMA entries as mlx5 makes them in sysfs."""
    base = root / "sys/bus/pci/devices" / pci
    (base / "infiniband" / dev).mkdir(parents=True)
    (base / "infiniband_verbs" / f"uverbs{n}").mkdir(parents=True)
    (base / "infiniband_mad" / f"umad{n}").mkdir(parents=True)
    (base / "infiniband_mad" / f"issm{n}").mkdir(parents=True)


# --- RDMA reader -------------------------------------------------------------------------

def test_rdma_reader_names_and_nodes(tmp_path: Path) -> None:
    fake_rdma(tmp_path, A, "mlx5_3", 3)
    reader = RdmaReader(tmp_path)
    assert reader.names(A) == ("mlx5_3",)
    assert reader.char_devices(A) == (
        "/dev/infiniband/uverbs3", "/dev/infiniband/umad3", "/dev/infiniband/issm3",
        "/dev/infiniband/rdma_cm",
    )
    assert reader.names(B) == () and reader.char_devices(B) == ()


# --- device specs and _INFO ----------------------------------------------------------------

def test_vhost_net_specs_and_info() -> None:
    res = Resource(NET, (Device(A, vhost_net=True), Device(B, vhost_net=True), Device(C)))
    got = allocate(res, [A, B])
    assert got.specs == (Spec("/dev/vhost-net"), Spec("/dev/net/tun"))
    info = json.loads(got.envs["PCIDEVICE_INTEL_COM_SRIOV_NET_INFO"])
    assert info[A]["vhost"] == {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}
    assert allocate(res, [C]).specs == ()


def test_vfio_with_vhost_orders_vfio_first() -> None:
    res = Resource(DPDK, (Device(A, driver="vfio-pci", iommu_group="7", vhost_net=True),))
    assert [s.path for s in allocate(res, [A]).specs] == [
        "/dev/vfio/vfio", "/dev/vfio/7", "/dev/vhost-net", "/dev/net/tun",
    ]


def test_rdma_specs_and_info_from_fake_sysfs(tmp_path: Path) -> None:
    fake_rdma(tmp_path, A, "mlx5_3", 3)
    fake_rdma(tmp_path, B, "mlx5_4", 4)
    reader = RdmaReader(tmp_path)
    rdma = Rdma(nodes=reader.char_devices, names=reader.names)
    res = Resource(NET, (Device(A), Device(B), Device(C)))
    got = allocate(res, [A, B, C], rdma=rdma)
    assert [s.path for s in got.specs] == [
        "/dev/infiniband/uverbs3", "/dev/infiniband/umad3", "/dev/infiniband/issm3",
        "/dev/infiniband/rdma_cm",
        "/dev/infiniband/uverbs4", "/dev/infiniband/umad4", "/dev/infiniband/issm4",
    ]
    info = json.loads(got.envs["PCIDEVICE_INTEL_COM_SRIOV_NET_INFO"])
    assert info[A]["rdma"] == {
        "issm": "/dev/infiniband/issm3", "rdma_cm": "/dev/infiniband/rdma_cm",
        "rdma_dev": "mlx5_3", "umad": "/dev/infiniband/umad3", "uverbs": "/dev/infiniband/uverbs3",
    }
    assert "rdma" not in info[C]


def test_feeds_from_pools_carries_vhost_net() -> None:
    entry = {"resourceName": "sriov_net", "selectors": {}}
    config = parse_config(json.dumps({"resourceList": [entry]}))

    def dev(pci: str, vhost: bool) -> PoolDevice:
        return PoolDevice(
            pci=PciAddress.parse(pci), pf_pci=None, pf_name="ens1", vf_index=0, vendor="8086",
            device="154c", driver="iavf", netdev=None, numa=None, iommu_group=None,
            link_type="ether", rdma=False, vhost_net=vhost,
        )

    pool = Pool("sriov_net", "intel.com", DeviceType.NET_DEVICE, (dev(A, True), dev(B, False)))
    (feed,) = feeds_from_pools([pool], config)
    assert [d.vhost_net for d in feed.current().devices] == [True, False]


# --- device-info files ---------------------------------------------------------------------

def test_device_info_name_and_exact_contents(tmp_path: Path) -> None:
    assert devinfo.file_name(NET, A) == "intel.com-sriov_net-0000:03:02.0-device.json"
    files = devinfo.DeviceInfoFiles(tmp_path / "dp")
    files.write(NET, A)
    path = tmp_path / "dp" / "intel.com-sriov_net-0000:03:02.0-device.json"
    assert path.read_bytes() == (
        b'{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0"}}'
    )
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    files.write(NET, B, ("mlx5_4",))
    assert json.loads(files.path(NET, B).read_bytes())["pci"] == {
        "pci-address": B, "rdma-device": "mlx5_4",
    }


def test_device_info_parsed_back_by_the_sriov_cni(tmp_path: Path) -> None:
    files = devinfo.DeviceInfoFiles(tmp_path)
    files.write(NET, A, ("mlx5_3",))
    assert str(parse_device_info(files.path(NET, A).read_bytes(), "test")) == A


def test_device_info_rewritten_on_each_allocate_and_swept(tmp_path: Path) -> None:
    extras = AllocateExtras(devinfo_dir=tmp_path)
    res = Resource(NET, (Device(A), Device(B)))
    path = tmp_path / devinfo.file_name(NET, A)
    path.write_text("stale")
    extras.allocate(res, [A])
    assert json.loads(path.read_text())["pci"]["pci-address"] == A
    extras.allocate(res, [B])
    other = tmp_path / devinfo.file_name("intel.com/sriov_net-b", B)  # a prefix-alike resource
    other.write_text("x")
    extras.on_update(Resource(NET, (Device(B),)))
    assert not path.exists()
    assert (tmp_path / devinfo.file_name(NET, B)).exists() and other.exists()


def test_device_info_write_failure_refuses_allocate(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    extras = AllocateExtras(devinfo_dir=tmp_path / "file" / "dp")
    with pytest.raises(AllocationError, match="device-info"):
        extras.allocate(Resource(NET, (Device(A),)), [A])


# --- CDI -----------------------------------------------------------------------------------

def test_cdi_spec_contents(tmp_path: Path) -> None:
    fake_rdma(tmp_path, B, "mlx5_4", 4)
    reader = RdmaReader(tmp_path)
    specs = cdi.CdiSpecs(tmp_path / "cdi", rdma=Rdma(reader.char_devices, reader.names))
    res = Resource(NET, (
        Device(A, driver="vfio-pci", iommu_group="7", vhost_net=True), Device(B), Device(C),
    ))
    assert specs.write(res)
    path = tmp_path / "cdi" / "sriovkit-intel.com-net-pci-sriov_net.json"
    assert path == specs.path(NET)

    def node(p: str) -> dict[str, str]:
        return {"path": p, "hostPath": p, "permissions": "rw"}

    assert json.loads(path.read_bytes()) == {
        "cdiVersion": "0.5.0",
        "kind": "intel.com/net-pci",
        "devices": [
            {"name": A, "containerEdits": {
                "env": ["PCIDEVICE_INTEL_COM_SRIOV_NET_0000_03_02_0=0000:03:02.0"],
                "deviceNodes": [node("/dev/vfio/vfio"), node("/dev/vfio/7"),
                                node("/dev/vhost-net"), node("/dev/net/tun")]}},
            {"name": B, "containerEdits": {
                "env": ["PCIDEVICE_INTEL_COM_SRIOV_NET_0000_03_02_1=0000:03:02.1"],
                "deviceNodes": [node("/dev/infiniband/uverbs4"), node("/dev/infiniband/umad4"),
                                node("/dev/infiniband/issm4"),
                                node("/dev/infiniband/rdma_cm")]}},
            {"name": C, "containerEdits": {
                "env": ["PCIDEVICE_INTEL_COM_SRIOV_NET_0000_03_02_2=0000:03:02.2"]}},
        ],
    }


def test_cdi_names_and_annotation() -> None:
    assert cdi.qualified(NET, [A, B]) == ("intel.com/net-pci=" + A, "intel.com/net-pci=" + B)
    assert cdi.annotations_for(NET, [A, B]) == {
        "cdi.k8s.io/intel.com_net-pci_sriov_net": f"intel.com/net-pci={A},intel.com/net-pci={B}",
    }
    long = "example.com/" + "x" * 60
    key = cdi.annotation_key(long)
    assert key.startswith("cdi.k8s.io/sriovkit_") and len(key) - len("cdi.k8s.io/") <= 63


def test_cdi_allocate_answer_has_names_not_specs(tmp_path: Path) -> None:
    extras = AllocateExtras(cdi_dir=tmp_path)
    res = Resource(DPDK, (Device(A, driver="vfio-pci", iommu_group="7"),))
    got = extras.allocate(res, [A])
    assert got.specs == ()
    assert got.cdi_devices == ("intel.com/net-pci=" + A,)
    assert got.annotations == {"cdi.k8s.io/intel.com_net-pci_sriov_dpdk": "intel.com/net-pci=" + A}
    assert got.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK"] == A
    assert (tmp_path / cdi.file_name(DPDK)).exists()  # written before the answer


def test_cdi_spec_follows_feed_updates_and_stale_specs_go(tmp_path: Path) -> None:
    (tmp_path / "sriovkit-intel.com-net-pci-gone.json").write_text("{}")
    (tmp_path / "someone-else.json").write_text("{}")
    feed = ResourceFeed(NET, [Device(A)])
    extras = AllocateExtras(cdi_dir=tmp_path)
    feed.subscribe(extras.on_update)
    extras.start([feed.current()])
    assert sorted(os.listdir(tmp_path)) == [
        "someone-else.json", "sriovkit-intel.com-net-pci-sriov_net.json",
    ]

    def names() -> list[str]:
        data = json.loads((tmp_path / cdi.file_name(NET)).read_bytes())
        return [d["name"] for d in data["devices"]]

    assert names() == [A]
    feed.update([Device(A), Device(B)])
    assert names() == [A, B]
    feed.unsubscribe(extras.on_update)
    feed.update([Device(B)])
    assert names() == [A, B]


def test_failing_listener_does_not_break_update() -> None:
    feed = ResourceFeed(NET, [Device(A)])
    seen: list[int] = []

    def bad(res: Resource) -> None:
        raise RuntimeError("boom")

    feed.subscribe(bad)
    feed.subscribe(lambda res: seen.append(len(res.devices)))
    feed.update([Device(A), Device(B)])
    assert seen == [2] and len(feed.current().devices) == 2


# --- over gRPC with the test kubelet -------------------------------------------------------

@pytest.fixture
def grpc_root() -> Iterator[Path]:
    with short_root() as root:
        yield root


def run_service(root: Path, feeds: list[ResourceFeed], **kw: object) -> tuple[
    FakeKubelet, DevicePluginService
]:
    kubelet = FakeKubelet(root).start()
    service = DevicePluginService(feeds, root, interval=60, **kw)  # type: ignore[arg-type]
    service.start(lambda exc: None)
    kubelet.wait_registered(len(feeds))
    return kubelet, service


def test_grpc_allocate_writes_device_info_and_rdma_specs(grpc_root: Path) -> None:
    host = grpc_root / "host"
    fake_rdma(host, A, "mlx5_3", 3)
    feed = ResourceFeed(NET, [Device(A, vhost_net=True), Device(B)])
    kubelet, service = run_service(
        grpc_root, [feed], devinfo_dir=grpc_root / "devinfo", host_root=host,
    )
    try:
        plugin = kubelet.plugin(NET)
        answer = plugin.allocate([A]).container_responses[0]
        assert [d.host_path for d in answer.devices] == [
            "/dev/vhost-net", "/dev/net/tun", "/dev/infiniband/uverbs3", "/dev/infiniband/umad3",
            "/dev/infiniband/issm3", "/dev/infiniband/rdma_cm",
        ]
        assert not answer.cdi_devices and not answer.annotations
        data = (grpc_root / "devinfo" / devinfo.file_name(NET, A)).read_bytes()
        assert str(parse_device_info(data)) == A
        assert json.loads(data)["pci"]["rdma-device"] == "mlx5_3"
        feed.update([Device(B)])  # A left the pool: its file goes
        assert not (grpc_root / "devinfo" / devinfo.file_name(NET, A)).exists()
    finally:
        service.stop()
        kubelet.stop()


def test_grpc_allocate_with_cdi(grpc_root: Path) -> None:
    feed = ResourceFeed(DPDK, [Device(A, driver="vfio-pci", iommu_group="7")])
    kubelet, service = run_service(grpc_root, [feed], cdi_dir=grpc_root / "cdi")
    try:
        spec_path = grpc_root / "cdi" / cdi.file_name(DPDK)
        assert json.loads(spec_path.read_bytes())["devices"][0]["name"] == A  # at start
        answer = kubelet.plugin(DPDK).allocate([A]).container_responses[0]
        assert [d.name for d in answer.cdi_devices] == ["intel.com/net-pci=" + A]
        assert dict(answer.annotations) == {
            "cdi.k8s.io/intel.com_net-pci_sriov_dpdk": "intel.com/net-pci=" + A,
        }
        assert not answer.devices
        assert answer.envs["PCIDEVICE_INTEL_COM_SRIOV_DPDK"] == A
        feed.update([Device(A, driver="vfio-pci", iommu_group="7"), Device(B)])
        assert [d["name"] for d in json.loads(spec_path.read_bytes())["devices"]] == [A, B]
    finally:
        service.stop()
        kubelet.stop()


def test_defaults_touch_no_file(grpc_root: Path) -> None:
    feed = ResourceFeed(NET, [Device(A)])
    kubelet, service = run_service(grpc_root, [feed])
    try:
        answer = kubelet.plugin(NET).allocate([A]).container_responses[0]
        assert not answer.devices and not answer.cdi_devices and not answer.annotations
    finally:
        service.stop()
        kubelet.stop()
    assert [p.name for p in grpc_root.iterdir()] == ["device-plugins"]  # the test kubelet's
