"""The device plugin's answers computed from a resource: Allocate's envs and specs, preferred
allocation, the feed's generations. No gRPC here (see test_deviceplugin_grpc.py)."""

from __future__ import annotations

import json
import threading

import pytest

from sriovkit.deviceplugin.allocate import AllocationError, allocate, env_name
from sriovkit.deviceplugin.model import Device, Resource, ResourceFeed
from sriovkit.deviceplugin.preferred import preferred
from sriovkit.deviceplugin.server import socket_name


def vf(pf: int, n: int, numa: int | None = 0, **kw: object) -> Device:
    return Device(id=f"0000:0{pf}:10.{n}", pf=f"pf{pf}", numa=numa, **kw)  # type: ignore[arg-type]


def test_env_name_and_socket_name() -> None:
    assert env_name("intel.com/sriov_net-a") == "PCIDEVICE_INTEL_COM_SRIOV_NET-A"
    assert socket_name("intel.com/sriov a") == "sriovkit-intel.com_sriov_a.sock"


def test_allocate_netdevice_and_vfio() -> None:
    res = Resource("intel.com/sriov", (
        vf(1, 0, driver="igbvf"),
        vf(1, 1, driver="vfio-pci", iommu_group="42", extra={"k": "v"}),
        vf(2, 0, driver="vfio-pci", iommu_group="43"),
    ))
    got = allocate(res, ["0000:01:10.1", "0000:01:10.0", "0000:02:10.0"])
    assert got.envs["PCIDEVICE_INTEL_COM_SRIOV"] == "0000:01:10.1,0000:01:10.0,0000:02:10.0"
    info = json.loads(got.envs["PCIDEVICE_INTEL_COM_SRIOV_INFO"])
    assert info == {
        "0000:01:10.0": {"generic": {"deviceID": "0000:01:10.0"}},
        "0000:01:10.1": {
            "generic": {"deviceID": "0000:01:10.1"},
            "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/42"},
            "extra": {"k": "v"},
        },
        "0000:02:10.0": {
            "generic": {"deviceID": "0000:02:10.0"},
            "vfio": {"mount": "/dev/vfio/vfio", "dev-mount": "/dev/vfio/43"},
        },
    }
    assert " " not in got.envs["PCIDEVICE_INTEL_COM_SRIOV_INFO"]  # as Go's json.Marshal
    assert [s.path for s in got.specs] == ["/dev/vfio/vfio", "/dev/vfio/42", "/dev/vfio/43"]
    assert allocate(res, ["0000:01:10.0"]).specs == ()


def test_allocate_refuses_unknown_unhealthy_and_groupless_vfio() -> None:
    res = Resource("a.b/c", (vf(1, 0, healthy=False), vf(1, 1, driver="vfio-pci")))
    with pytest.raises(AllocationError, match=r"unknown device 0000:09:00\.0") as e:
        allocate(res, ["0000:09:00.0"])
    assert e.value.unknown
    with pytest.raises(AllocationError, match=r"0000:01:10\.0 is unhealthy"):
        allocate(res, ["0000:01:10.0"])
    with pytest.raises(AllocationError, match=r"0000:01:10\.1 .*IOMMU"):
        allocate(res, ["0000:01:10.1"])


def _res(policy: str, devices: tuple[Device, ...]) -> Resource:
    return Resource("a.b/c", devices, policy)  # type: ignore[arg-type]


FOUR_BY_TWO = tuple(vf(pf, n, numa=0 if pf <= 2 else 1) for pf in (1, 2, 3, 4) for n in (0, 1))


def test_preferred_spread_pack_none() -> None:
    ids = [d.id for d in FOUR_BY_TWO]
    spread = preferred(_res("spread", FOUR_BY_TWO), ids, [], 2)
    assert spread == ["0000:01:10.0", "0000:02:10.0"]  # one per PF, NUMA 0 (the fullest tie)
    pack = preferred(_res("pack", FOUR_BY_TWO), ids, [], 2)
    assert pack == ["0000:01:10.0", "0000:01:10.1"]
    # none: kubelet's order, within the NUMA node chosen (both hold 4: the lower one)
    assert preferred(_res("none", FOUR_BY_TWO), ids[::-1], [], 2) == [
        "0000:02:10.1", "0000:02:10.0"]


def test_preferred_must_include_and_its_numa() -> None:
    ids = [d.id for d in FOUR_BY_TWO]
    must = ["0000:03:10.1"]  # on NUMA 1
    got = preferred(_res("spread", FOUR_BY_TWO), ids, must, 3)
    assert got[0] == "0000:03:10.1"
    assert got[1:] == ["0000:04:10.0", "0000:03:10.0"]  # NUMA 1 first, spread across pf4/pf3
    packed = preferred(_res("pack", FOUR_BY_TWO), ids, must, 2)
    assert packed == ["0000:03:10.1", "0000:03:10.0"]
    # more than the must_include's node holds: NUMA 1 first, then the rest
    assert len(set(preferred(_res("spread", FOUR_BY_TWO), ids, must, 6))) == 6
    assert preferred(_res("spread", FOUR_BY_TWO), ids, ids[:3], 2) == ids[:3]


def test_preferred_whole_request_on_one_numa_node_and_unhealthy_last() -> None:
    devices = (vf(1, 0, numa=0), vf(2, 0, numa=1), vf(2, 1, numa=1), vf(1, 1, numa=0,
                                                                          healthy=False))
    ids = [d.id for d in devices]
    assert preferred(_res("spread", devices), ids, [], 2) == ["0000:02:10.0", "0000:02:10.1"]
    assert preferred(_res("none", devices), ids, [], 4)[-1] == "0000:01:10.1"
    assert preferred(_res("none", devices), [*ids, "0000:99:00.0"], [], 5)[-2:] == [
        "0000:01:10.1", "0000:99:00.0"]


def test_feed_generations_and_wakeups() -> None:
    feed = ResourceFeed("a.b/c", [vf(1, 0)], policy="pack")
    first = feed.current()
    assert feed.wait_newer(first.generation, 0.01) is None
    got: list[Resource | None] = []
    t = threading.Thread(target=lambda: got.append(feed.wait_newer(first.generation, 5)))
    t.start()
    feed.update([vf(1, 0), vf(1, 1)])
    t.join(5)
    assert got[0] is not None and len(got[0].devices) == 2 and got[0].policy == "pack"
    with pytest.raises(ValueError, match="listed twice"):
        feed.update([vf(1, 0), vf(1, 0)])
    with pytest.raises(ValueError, match="not <prefix>/<name>"):
        ResourceFeed("nodomain")
    with pytest.raises(ValueError, match="policy"):
        ResourceFeed("a.b/c", policy="random")  # type: ignore[arg-type]
