"""Kernel emulation of a simulated host: sysfs writes behave (and fail) like the real kernel."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sriovkit.errors import HostError
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.wiring import open_sysfs

PF = "0000:3b:00.0"
DEVS = "sys/bus/pci/devices"


@pytest.fixture
def host(tmp_path: Path):
    return create_host(tmp_path / "root", ["82576"], extras=False)


def _errno(call) -> int | None:
    try:
        call()
    except HostError as exc:
        return exc.errno
    return None


def _read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def test_wiring_picks_the_sim_sysfs(host) -> None:
    assert isinstance(open_sysfs(host.root), SimSysfs)


def test_numvfs_creates_vfs_with_links_netdevs_and_config(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "3\n")
    assert _read(host.root, f"{DEVS}/{PF}/sriov_numvfs") == "3"
    vfs = host.vfs(PF)
    assert vfs == ["0000:3b:10.0", "0000:3b:10.2", "0000:3b:10.4"]
    for i, vf in enumerate(vfs):
        d = host.root / DEVS / vf
        assert os.readlink(d / "driver").endswith("/igbvf")
        assert (d / "iommu_group").is_symlink()
        assert (host.root / f"sys/class/net/enp59s0f0v{i}").is_symlink()
    config = (host.root / DEVS / PF / "config").read_bytes()
    assert int.from_bytes(config[0x160 + 0x10 : 0x160 + 0x12], "little") == 3


def test_numvfs_through_class_net_device_link(host) -> None:
    SimSysfs(host.root).write("/sys/class/net/enp59s0f1/device/sriov_numvfs", "2")
    assert host.vfs("0000:3b:00.1") == ["0000:3b:10.1", "0000:3b:10.3"]


def test_numvfs_errors_match_the_kernel(host) -> None:
    fs = SimSysfs(host.root)
    rel = f"/sys/bus/pci/devices/{PF}/sriov_numvfs"
    assert _errno(lambda: fs.write(rel, "8")) == errno.ERANGE  # device says 8, igb caps at 7
    assert _errno(lambda: fs.write(rel, "two")) == errno.EINVAL
    assert _errno(lambda: fs.write(rel, "-1")) == errno.EINVAL
    fs.write(rel, "2")
    assert _errno(lambda: fs.write(rel, "4")) == errno.EBUSY
    fs.write(rel, "2")  # same value: accepted, nothing changes
    assert len(host.vfs(PF)) == 2


def test_numvfs_zero_removes_everything(host) -> None:
    fs = SimSysfs(host.root)
    groups_before = set(os.listdir(host.root / "sys/kernel/iommu_groups"))
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "4")
    vfs = host.vfs(PF)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "0")
    assert host.vfs(PF) == []
    for vf in vfs:
        assert not os.path.lexists(host.root / DEVS / vf)
    assert not list((host.root / DEVS / PF).glob("virtfn*"))
    assert not list((host.root / "sys/class/net").glob("enp59s0f0v*"))
    assert set(os.listdir(host.root / "sys/kernel/iommu_groups")) == groups_before
    assert vfs[0] not in (host.root / "proc/iomem").read_text()


def test_numvfs_without_pf_driver_is_enoent(host) -> None:
    fs = SimSysfs(host.root)
    fs.write("/sys/bus/pci/drivers/igb/unbind", PF)
    assert _errno(lambda: fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "1")) == (
        errno.ENOENT
    )


def test_autoprobe_off_leaves_vfs_unbound(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_drivers_autoprobe", "0")
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "1")
    vf = host.vfs(PF)[0]
    assert not (host.root / DEVS / vf / "driver").exists()
    assert not (host.root / DEVS / vf / "net").exists()


def test_unbind_and_bind(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "1")
    vf = host.vfs(PF)[0]
    fs.write("/sys/bus/pci/drivers/igbvf/unbind", vf)
    assert not (host.root / DEVS / vf / "driver").exists()
    assert not (host.root / "sys/class/net/enp59s0f0v0").exists()
    assert "DRIVER=" not in (host.root / DEVS / vf / "uevent").read_text()
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igbvf/unbind", vf)) == errno.ENODEV
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igb/bind", vf)) == errno.ENODEV
    fs.write("/sys/bus/pci/drivers/igbvf/bind", vf)
    assert (host.root / "sys/class/net/enp59s0f0v0/device").resolve().name == vf
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igbvf/bind", vf)) == errno.EBUSY


def test_driver_override_and_drivers_probe_to_vfio(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "2")
    vf = host.vfs(PF)[1]
    assert not (host.root / "sys/bus/pci/drivers/vfio-pci").exists()
    fs.load_module("vfio-pci")
    assert (host.root / "sys/bus/pci/drivers/vfio-pci/module").resolve().name == "vfio_pci"
    fs.write(f"/sys/bus/pci/devices/{vf}/driver_override", "vfio-pci")
    assert _read(host.root, f"{DEVS}/{vf}/driver_override") == "vfio-pci"
    # igbvf may no longer take it: the override names another driver
    fs.write("/sys/bus/pci/drivers/igbvf/unbind", vf)
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igbvf/bind", vf)) == errno.ENODEV
    fs.write("/sys/bus/pci/drivers_probe", vf)
    assert os.readlink(host.root / DEVS / vf / "driver").endswith("/vfio-pci")
    assert not (host.root / DEVS / vf / "net").exists()  # vfio-pci has no netdev
    group = os.readlink(host.root / DEVS / vf / "iommu_group").rsplit("/", 1)[-1]
    assert (host.root / "dev/vfio" / group).exists()
    fs.write("/sys/bus/pci/drivers/vfio-pci/unbind", vf)
    assert not (host.root / "dev/vfio" / group).exists()
    fs.write(f"/sys/bus/pci/devices/{vf}/driver_override", "\n")
    assert _read(host.root, f"{DEVS}/{vf}/driver_override") == "(null)"
    fs.write("/sys/bus/pci/drivers_probe", vf)
    assert os.readlink(host.root / DEVS / vf / "driver").endswith("/igbvf")


def test_new_id_binds_matching_unbound_devices(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_drivers_autoprobe", "0")
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "2")
    host.load_module("vfio-pci")
    fs.write("/sys/bus/pci/drivers/vfio-pci/new_id", "8086 10ca")
    for vf in host.vfs(PF):
        assert os.readlink(host.root / DEVS / vf / "driver").endswith("/vfio-pci")
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/vfio-pci/new_id", "8086 10ca")) == (
        errno.EEXIST
    )


def test_bind_unknown_device_is_enodev(host) -> None:
    fs = SimSysfs(host.root)
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igb/bind", "0000:99:00.0")) == (
        errno.ENODEV
    )
    assert _errno(lambda: fs.write("/sys/bus/pci/drivers/igb/bind", "garbage")) == errno.ENODEV


def test_unbinding_the_pf_removes_its_vfs(host) -> None:
    fs = SimSysfs(host.root)
    fs.write(f"/sys/bus/pci/devices/{PF}/sriov_numvfs", "3")
    fs.write("/sys/bus/pci/drivers/igb/unbind", PF)
    assert host.vfs(PF) == []
    assert not (host.root / "sys/class/net/enp59s0f0").exists()
    fs.write("/sys/bus/pci/drivers/igb/bind", PF)
    assert (host.root / "sys/class/net/enp59s0f0").exists()


def test_plain_writes_pass_through(host) -> None:
    fs = SimSysfs(host.root)
    fs.write("/sys/class/net/enp59s0f0/mtu", "9000")
    assert _read(host.root, "sys/class/net/enp59s0f0/mtu") == "9000"
    assert _errno(lambda: fs.write("/sys/nonexistent/file", "1")) == errno.ENOENT


def test_ifindex_stays_unique_across_rebinds(host) -> None:
    fs = SimSysfs(host.root)
    rel = f"/sys/bus/pci/devices/{PF}/sriov_numvfs"
    fs.write(rel, "3")
    fs.write(rel, "0")
    fs.write(rel, "3")
    indexes = [_read(p, "ifindex") for p in (host.root / "sys/class/net").iterdir()]
    assert len(indexes) == len(set(indexes))
