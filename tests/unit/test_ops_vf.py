"""VF lifecycle (ops/vf.py) on simulated hosts whose kernel emulation follows the real rules."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner

from sriovkit.cli import cli
from sriovkit.errors import HostError, InvalidInput, NotFound, Timeout
from sriovkit.model.pci import PciAddress
from sriovkit.ops import vf as vf_ops
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs


@pytest.fixture
def host(tmp_path: Path) -> tuple[SimSysfs, PciAddress]:
    h = create_host(tmp_path, ["82576"], vfs=0, extras=False)
    return SimSysfs(tmp_path), PciAddress.parse(h.pfs[0].address)


class RecordingSysfs(SimSysfs):
    """Keeps the sequence of sriov_numvfs writes so the 0-first rule can be checked."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.numvfs_writes: list[str] = []

    def write(self, rel: str, value: str) -> None:
        if rel.endswith("sriov_numvfs"):
            self.numvfs_writes.append(value)
        super().write(rel, value)


def test_create_vfs_binds_driver_and_netdevs(host: tuple[SimSysfs, PciAddress]) -> None:
    sysfs, pf = host
    vfs = vf_ops.set_num_vfs(sysfs, pf, 3)
    assert [v.index for v in vfs] == [0, 1, 2]
    assert all(v.driver == "igbvf" and v.netdevs for v in vfs)
    info = sysfs.sriov(pf)
    assert info is not None and info.num_vfs == 3
    # VF addresses follow offset 128 / stride 2 of the 82576
    assert [str(v.address)[-4:] for v in vfs] == ["10.0", "10.2", "10.4"]


def test_changing_a_nonzero_count_goes_through_zero(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    sysfs = RecordingSysfs(tmp_path)
    pf = PciAddress.parse(h.pfs[0].address)
    # the simulated kernel refuses a direct change, like the real one
    with pytest.raises(HostError) as err:
        SimSysfs(tmp_path).write(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "3")
    assert err.value.errno == errno.EBUSY
    vfs = vf_ops.set_num_vfs(sysfs, pf, 3)
    assert sysfs.numvfs_writes == ["0", "3"]
    assert len(vfs) == 3 and len(sysfs.virtfns(pf)) == 3
    assert vf_ops.set_num_vfs(sysfs, pf, 0) == []
    assert sysfs.virtfns(pf) == {} and sysfs.numvfs_writes[-1] == "0"


def test_same_count_writes_nothing(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    sysfs = RecordingSysfs(tmp_path)
    vfs = vf_ops.set_num_vfs(sysfs, PciAddress.parse(h.pfs[0].address), 2)
    assert sysfs.numvfs_writes == [] and len(vfs) == 2


def test_count_validation_changes_nothing(host: tuple[SimSysfs, PciAddress]) -> None:
    sysfs, pf = host
    with pytest.raises(InvalidInput, match=r"count.*exceeds sriov_totalvfs 7"):
        vf_ops.set_num_vfs(sysfs, pf, 8)
    with pytest.raises(InvalidInput, match="count"):
        vf_ops.set_num_vfs(sysfs, pf, -1)
    assert sysfs.virtfns(pf) == {}


def test_not_sriov_capable_and_missing(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=0, extras=True)
    sysfs = SimSysfs(tmp_path)
    other = next(a for a in h.devices if sysfs.sriov(PciAddress.parse(a)) is None)
    with pytest.raises(HostError, match="not SR-IOV capable"):
        vf_ops.set_num_vfs(sysfs, PciAddress.parse(other), 1)
    with pytest.raises(NotFound):
        vf_ops.set_num_vfs(sysfs, PciAddress.parse("0000:ee:00.0"), 1)


def test_create_with_vfio_driver_never_gives_vfs_to_the_kernel_driver(
    host: tuple[SimSysfs, PciAddress],
) -> None:
    sysfs, pf = host
    with pytest.raises(HostError, match="vfio-pci is not loaded"):
        vf_ops.set_num_vfs(sysfs, pf, 2, driver="vfio-pci")
    assert sysfs.virtfns(pf) == {}
    sysfs.load_module("vfio-pci")
    vfs = vf_ops.set_num_vfs(sysfs, pf, 2, driver="vfio-pci")
    assert [v.driver for v in vfs] == ["vfio-pci", "vfio-pci"]
    assert all(v.netdevs == () for v in vfs)
    info = sysfs.sriov(pf)
    assert info is not None and info.drivers_autoprobe is True  # restored


def test_bind_to_vfio_and_back(host: tuple[SimSysfs, PciAddress]) -> None:
    sysfs, pf = host
    vf = vf_ops.set_num_vfs(sysfs, pf, 1)[0]
    sysfs.load_module("vfio-pci")
    assert vf_ops.bind_driver(sysfs, vf.address, "vfio-pci") == "vfio-pci"
    assert sysfs.netdev_map().get(vf.address) is None
    group = sysfs.link_base(vf.address, "iommu_group")
    assert sysfs.path(f"/dev/vfio/{group}").exists()
    assert vf_ops.bind_driver(sysfs, vf.address, None) == "igbvf"
    assert sysfs.netdev_map().get(vf.address)
    assert sysfs.attr(vf.address, "driver_override") == "(null)"


def test_bind_refuses_a_shared_iommu_group(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=1, extras=False)
    sysfs = SimSysfs(tmp_path)
    sysfs.load_module("vfio-pci")
    vf = PciAddress.parse(h.vfs(h.pfs[0].address)[0])
    pf = PciAddress.parse(h.pfs[0].address)
    # put the PF (bound to igb) into the VF's group, as on a platform without ACS
    group = sysfs.link_base(vf, "iommu_group")
    gdir = sysfs.path(f"/sys/kernel/iommu_groups/{group}/devices")
    (gdir / str(pf)).symlink_to(f"../../../../bus/pci/devices/{pf}")
    with pytest.raises(HostError, match=rf"IOMMU group {group} is shared with {pf} \(driver igb\)"):
        vf_ops.bind_driver(sysfs, vf, "vfio-pci")
    assert sysfs.link_base(vf, "driver") == "igbvf"


def test_timeout_names_what_is_missing(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=0, extras=False)
    sysfs = SimSysfs(tmp_path)
    pf = PciAddress.parse(h.pfs[0].address)
    sysfs.write(f"/sys/bus/pci/devices/{pf}/sriov_numvfs", "2")
    # a driver that never registers a netdev: take the netdev of VF 1 away
    vf1 = sysfs.virtfns(pf)[1]
    for name in sysfs.netdev_map()[vf1]:
        sysfs.path(f"/sys/class/net/{name}").unlink()
    ticks = iter(range(1000))
    clock = vf_ops._Clock(now=lambda: float(next(ticks)), sleep=lambda s: None)
    with pytest.raises(Timeout, match=rf"VF 1 {vf1} \(driver igbvf, no netdev yet\)"):
        vf_ops.set_num_vfs(sysfs, pf, 2, timeout=5, clock=clock)


def test_wait_budget_scales_with_driver_and_count() -> None:
    assert vf_ops.wait_budget("ixgbe", 63) > 60
    assert vf_ops.wait_budget("i40e", 64) > 22
    assert vf_ops.wait_budget("igb", 2) < vf_ops.wait_budget("igb", 7)


def test_cli_bind_dry_run_changes_nothing_then_binds(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=1, extras=False)
    vf = h.vfs(h.pfs[0].address)[0]
    SimSysfs(tmp_path).load_module("vfio-pci")
    args = ["--root", str(tmp_path), "vf", "bind", vf, "--driver", "vfio-pci"]
    res = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert res.exit_code == 0 and "would rebind from igbvf to vfio-pci" in res.output
    assert SimSysfs(tmp_path).link_base(PciAddress.parse(vf), "driver") == "igbvf"
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert SimSysfs(tmp_path).link_base(PciAddress.parse(vf), "driver") == "vfio-pci"


def test_failed_bind_puts_driver_and_override_back(host: tuple[SimSysfs, PciAddress]) -> None:
    """vfio-pci's probe refuses a VF in no IOMMU group: the write to drivers_probe succeeds
    and the VF stays unbound, so the failure is seen, and the undo must clear the override
    before it re-binds igbvf (the PCI core refuses a bind the override does not name)."""
    sysfs, pf = host
    vf = vf_ops.set_num_vfs(sysfs, pf, 1)[0]
    netdev = sysfs.netdev_map()[vf.address]
    sysfs.load_module("vfio-pci")
    sysfs.path(f"/sys/bus/pci/devices/{vf.address}/iommu_group").unlink()
    with pytest.raises(HostError, match=rf"failed to bind {vf.address} to vfio-pci"):
        vf_ops.bind_driver(sysfs, vf.address, "vfio-pci")
    assert sysfs.link_base(vf.address, "driver") == "igbvf"
    assert sysfs.attr(vf.address, "driver_override") == "(null)"
    assert sysfs.netdev_map()[vf.address] == netdev
