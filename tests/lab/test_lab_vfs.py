"""Real VFs on the emulated 82576: created, changed and removed through the project's own code."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import HostError
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.ops.vf import set_num_vfs

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")
Inventory = Callable[[], dict[str, dict[str, Any]]]
# VF n of PF function f sits at 01:10.0 + offset 128 + n * stride 2 from the PF's routing id.
EXPECTED_VFS = {
    "0000:01:00.0": ["0000:01:10.0", "0000:01:10.2", "0000:01:10.4"],
    "0000:01:00.1": ["0000:01:10.1", "0000:01:10.3", "0000:01:10.5"],
}
VF_MODALIAS = "pci:v00008086d000010CAsv00001AF4sd00001100bc02sc00i00"


def _set_num_vfs(pf: str, count: int) -> list[str]:
    return [str(vf.address) for vf in set_num_vfs(Sysfs(Path("/")), PciAddress.parse(pf), count)]


def _vfs_of(inv: dict[str, dict[str, Any]], pf: str) -> dict[str, dict[str, Any]]:
    return {a: d for a, d in inv.items() if d["physfn"] == pf}


def _ifindex(vf: str) -> int:
    (net,) = (PCI / vf / "net").iterdir()
    return int((net / "ifindex").read_text())


def test_two_vfs_per_pf_appear_in_the_inventory(pfs: tuple[str, ...], inventory: Inventory) -> None:
    created = {pf: _set_num_vfs(pf, 2) for pf in pfs}
    assert created == {pf: EXPECTED_VFS[pf][:2] for pf in pfs}

    inv = inventory()
    assert sorted(a for a, d in inv.items() if d["physfn"]) == sorted(
        a for pf in pfs for a in created[pf]
    )
    groups = set()
    for pf in pfs:
        assert inv[pf]["sriov"]["num_vfs"] == 2
        assert sorted(_vfs_of(inv, pf)) == created[pf]
        for index, address in enumerate(created[pf]):
            vf = inv[address]
            assert (PCI / pf / f"virtfn{index}").resolve().name == address
            assert vf["vf_index"] == index
            assert (vf["vendor_id"], vf["device_id"], vf["class"]) == ("8086", "10ca", "0x020000")
            assert vf["driver"] == "igbvf"
            assert vf["modalias"] == VF_MODALIAS
            assert vf["sriov"] is None
            netdevs = sorted(p.name for p in (PCI / address / "net").iterdir())
            assert len(netdevs) == 1
            assert vf["netdevs"] == netdevs
            assert vf["iommu_group"] == int((PCI / address / "iommu_group").resolve().name)
            groups.add(vf["iommu_group"])
    # With the emulated Intel IOMMU each VF is alone in its group, apart from its PF.
    assert len(groups) == 4
    assert not groups & {inv[pf]["iommu_group"] for pf in pfs}


def test_two_to_three_goes_through_zero(pfs: tuple[str, ...], inventory: Inventory) -> None:
    pf = pfs[0]
    assert _set_num_vfs(pf, 2) == EXPECTED_VFS[pf][:2]
    first_vf_ifindex = _ifindex(EXPECTED_VFS[pf][0])

    # What the kernel requires: a PF with VFs refuses a new non-zero count.
    with pytest.raises(HostError) as refused:
        Sysfs(Path("/")).write(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "3")
    assert refused.value.errno == errno.EBUSY
    assert (PCI / pf / "sriov_numvfs").read_text().strip() == "2"

    assert _set_num_vfs(pf, 3) == EXPECTED_VFS[pf]
    inv = inventory()
    assert inv[pf]["sriov"]["num_vfs"] == 3
    vfs = _vfs_of(inv, pf)
    assert sorted(vfs) == EXPECTED_VFS[pf]
    assert [vfs[a]["vf_index"] for a in EXPECTED_VFS[pf]] == [0, 1, 2]
    assert all(d["driver"] == "igbvf" and len(d["netdevs"]) == 1 for d in vfs.values())
    # VF 0 is a new function with a new netdev: the count really went 2 -> 0 -> 3.
    assert _ifindex(EXPECTED_VFS[pf][0]) != first_vf_ifindex
    assert not _vfs_of(inv, pfs[1])


def test_back_to_zero_removes_the_vfs(pfs: tuple[str, ...], inventory: Inventory) -> None:
    for pf in pfs:
        _set_num_vfs(pf, 2)
    for pf in pfs:
        assert _set_num_vfs(pf, 0) == []
    inv = inventory()
    assert not [a for a, d in inv.items() if d["physfn"] or d["device_id"] == "10ca"]
    for pf in pfs:
        assert inv[pf]["sriov"]["num_vfs"] == 0
        assert not list((PCI / pf).glob("virtfn*"))


def test_cli_sets_the_count_by_pf_netdev(
    pfs: tuple[str, ...], inventory: Inventory, sriovkit: Callable[..., Any]
) -> None:
    pf = pfs[1]
    (netdev,) = (p.name for p in (PCI / pf / "net").iterdir())
    sriovkit("vfs", netdev, "--count", "2")
    assert sorted(_vfs_of(inventory(), pf)) == EXPECTED_VFS[pf][:2]
    sriovkit("vfs", pf, "--count", "0")
    assert (PCI / pf / "sriov_numvfs").read_text().strip() == "0"
    assert not list((PCI / pf).glob("virtfn*"))
