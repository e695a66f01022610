"""The inventory on simulated hosts of every profile, checked against pciutils on the same tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sriovkit.cli import cli, main
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.ops.discover import collect, detail
from sriovkit.sim import PROFILES, create_host, profile_names

needs_lspci = pytest.mark.skipif(shutil.which("lspci") is None, reason="needs pciutils' lspci")


def _lspci(root: Path, *args: str) -> str:
    return subprocess.run(
        ["lspci", *args, "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.fixture(scope="module")
def every_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("allprofiles")
    create_host(root, profile_names(), vfs=3)
    return root


def _inventory_json(root: Path) -> dict[str, dict[str, object]]:
    res = CliRunner().invoke(cli, ["--root", str(root), "inventory", "--json"])
    assert res.exit_code == 0, res.output
    return {d["address"]: d for d in json.loads(res.output)["devices"]}


def test_json_has_every_key_and_sriov_figures(every_profile: Path) -> None:
    devices = _inventory_json(every_profile)
    required = {"address", "vendor_id", "device_id", "class", "vendor_name", "device_name",
                "subsystem_vendor_id", "subsystem_device_id", "driver", "numa_node",
                "iommu_group", "modalias", "netdevs", "physfn", "vf_index"}  # fmt: skip
    for dev in devices.values():
        assert required <= dev.keys()
    pfs = [d for d in devices.values() if d["sriov"]]
    assert len(pfs) == sum(p.ports for p in PROFILES.values())
    for pf in pfs:
        sriov = pf["sriov"]
        assert isinstance(sriov, dict)
        assert sriov["num_vfs"] == min(3, sriov["total_vfs"])
        assert sriov["cap_offset"] is not None
        vfs = [d for d in devices.values() if d["physfn"] == pf["address"]]
        assert sorted(v["vf_index"] for v in vfs) == list(range(sriov["num_vfs"]))
        for vf in vfs:
            assert vf["device_id"] == sriov["vf_device_id"]
            assert vf["numa_node"] == pf["numa_node"]
            assert vf["iommu_group"] is not None and vf["iommu_group"] != pf["iommu_group"]


def test_fast_vf_path_equals_reading_every_link(every_profile: Path) -> None:
    sysfs = Sysfs(every_profile)
    for dev in sysfs.devices():
        slow = sysfs.device(dev.address)  # reads physfn, virtfn links and numa_node itself
        assert slow == dev, dev.address


@needs_lspci
def test_inventory_all_matches_lspci_nn_line_for_line(every_profile: Path) -> None:
    res = CliRunner().invoke(cli, ["--root", str(every_profile), "inventory", "--all"])
    assert res.exit_code == 0
    assert res.output.splitlines() == _lspci(every_profile, "-nn", "-D").splitlines()


@needs_lspci
def test_sriov_figures_match_lspci_vvv(every_profile: Path) -> None:
    devices = _inventory_json(every_profile)
    for addr, dev in devices.items():
        sriov = dev["sriov"]
        if not isinstance(sriov, dict):
            continue
        text = _lspci(every_profile, "-vvv", "-s", addr)
        m = re.search(
            r"Capabilities: \[([0-9a-f]+) v1\] Single Root I/O Virtualization \(SR-IOV\).*?"
            r"Total VFs: (\d+), Number of VFs: (\d+).*?VF offset: (\d+), stride: (\d+), "
            r"Device ID: ([0-9a-f]{4})",
            text, re.S,
        )  # fmt: skip
        assert m, f"no SR-IOV block in lspci -vvv for {addr}"
        assert int(m[1], 16) == sriov["cap_offset"]
        # config space may advertise more VFs than the driver allows (82576: 8 vs 7)
        assert int(m[2]) >= sriov["total_vfs"]
        assert (int(m[3]), int(m[4]), int(m[5]), m[6]) == (
            sriov["num_vfs"], sriov["offset"], sriov["stride"], sriov["vf_device_id"],
        )  # fmt: skip


@needs_lspci
def test_show_capabilities_match_lspci_vvv(every_profile: Path) -> None:
    sysfs = Sysfs(every_profile)
    inv = collect(sysfs, PciIds())
    for dev in [*inv.pfs[:6], inv.devices[0]]:
        res = CliRunner().invoke(cli, ["--root", str(every_profile), "show", str(dev.address),
                                       "--json"])  # fmt: skip
        assert res.exit_code == 0, res.output
        ours = [(c["offset"], c["name"]) for c in json.loads(res.output)["capabilities"]]
        theirs = [
            (int(m[1], 16), m[2])
            for m in re.finditer(r"Capabilities: \[([0-9a-f]+)(?: v\d+)?\] ([^:\n]+)",
                                 _lspci(every_profile, "-vvv", "-s", str(dev.address)))
        ]  # fmt: skip
        assert [o for o, _ in ours] == [o for o, _ in theirs]
        for (_, name), (_, lname) in zip(ours, theirs, strict=True):
            assert lname.startswith(name.split(" (")[0]) or name.startswith(lname.strip()), (
                name, lname,
            )  # fmt: skip


def test_show_by_netdev_and_iomem(every_profile: Path) -> None:
    sysfs = Sysfs(every_profile)
    pf = collect(sysfs, PciIds()).pfs[0]
    res = CliRunner().invoke(cli, ["--root", str(every_profile), "show", pf.netdevs[0], "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["address"] == str(pf.address)
    assert data["iomem"], "a PF's BARs appear in /proc/iomem"
    assert len(data["vfs"]) == 3 and data["vfs"][0]["index"] == 0
    assert data["sriov_capability"]["vf_stride"] == pf.sriov.stride if pf.sriov else False


def test_show_unknown_target_is_a_clear_error(every_profile: Path) -> None:
    assert main(["--root", str(every_profile), "show", "nonexistent0"]) == 3
    assert main(["--root", str(every_profile), "show", "0000:ee:1f.7"]) == 3


def test_numa_and_netdev_mapping(tmp_path: Path) -> None:
    create_host(tmp_path, ["e810", "x710"], vfs=2)
    sysfs = Sysfs(tmp_path)
    nodes = {d.numa_node for d in sysfs.devices() if d.sriov}
    assert nodes == {0, 1}, "cards alternate between two NUMA nodes"
    for addr, names in sysfs.netdev_map().items():
        for name in names:
            assert sysfs.netdev_pci(name) == addr
    assert isinstance(PciAddress.try_parse("0000:00:00.0"), PciAddress)


def test_netdev_map_skips_what_is_not_a_link_and_links_that_vanish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_host(tmp_path, ["x710"], vfs=4)
    sysfs = Sysfs(tmp_path)
    before = sysfs.netdev_map()
    assert sum(len(n) for n in before.values()) >= 6  # 2 PFs + 4 VFs, and the other NICs
    net = tmp_path / "sys/class/net"
    some_link = next(p for p in sorted(net.iterdir()) if p.is_symlink())
    target = os.readlink(some_link)
    # With the bonding module loaded the kernel puts a file among the links; "aa-" and "zz-"
    # links sort around it, so reads before and after the refused one are both checked.
    (net / "bonding_masters").write_text("\n")
    os.symlink(target, net / "aa-extra")
    os.symlink(target, net / "zz-extra")
    real_listdir = os.listdir
    # A netdev listed but gone before its link is read.
    monkeypatch.setattr(os, "listdir", lambda path: [*real_listdir(path), "ghost0"])
    after = sysfs.netdev_map()
    dev = PciAddress.parse(target.rsplit("/", 3)[1])
    assert after == {**before, dev: tuple(sorted((*before[dev], "aa-extra", "zz-extra")))}


def test_detail_of_a_pf_reads_its_vfs_as_the_inventory_does(every_profile: Path) -> None:
    sysfs = Sysfs(every_profile)
    inv = collect(sysfs, PciIds())
    for pf in inv.pfs:
        d = detail(sysfs, PciIds(), pf.address, None)
        assert d.device == pf
        assert list(d.vfs) == inv.vfs_of(pf.address)
        assert all(vf.netdevs for vf in d.vfs if vf.driver not in (None, "vfio-pci"))
