"""The simulated host's tree: every profile builds, and files and links agree with each other."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.pci import PciAddress, vf_address
from sriovkit.sim import PROFILES, create_host, profile_names


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    return create_host(tmp_path_factory.mktemp("h") / "root", profile_names(), vfs=3, seed=7)


def _read(p: Path) -> str:
    return p.read_text().strip()


@pytest.mark.parametrize("name", profile_names())
def test_every_profile_builds_with_its_ids(tmp_path: Path, name: str) -> None:
    prof = PROFILES[name]
    host = create_host(tmp_path / "r", [name], vfs=1, extras=False)
    assert len(host.pfs) == prof.ports
    for pf in host.pfs:
        dev = tmp_path / "r/sys/bus/pci/devices" / pf.address
        assert _read(dev / "vendor") == f"0x{prof.vendor:04x}"
        assert _read(dev / "device") == f"0x{prof.device:04x}"
        assert _read(dev / "sriov_totalvfs") == str(prof.total_vfs)
        assert _read(dev / "sriov_numvfs") == "1"
        assert os.readlink(dev / "driver").endswith(f"/drivers/{prof.driver}")
        vf = dev / "virtfn0"
        assert _read(vf / "device") == f"0x{prof.vf_device:04x}"
        assert os.readlink(vf / "driver").endswith(f"/drivers/{prof.vf_driver}")
        config = (dev / "config").read_bytes()
        assert len(config) == 4096
        assert int.from_bytes(config[0:2], "little") == prof.vendor


def test_82576_matches_the_lab_facts(tmp_path: Path) -> None:
    host = create_host(tmp_path / "r", ["82576"], vfs=7, extras=False)
    pf0, pf1 = host.pfs
    devs = tmp_path / "r/sys/bus/pci/devices"
    assert _read(devs / pf0.address / "sriov_offset") == "128"
    assert _read(devs / pf0.address / "sriov_stride") == "2"
    assert _read(devs / pf0.address / "sriov_vf_device") == "10ca"
    assert host.vfs(pf0.address)[:2] == ["0000:3b:10.0", "0000:3b:10.2"]
    assert host.vfs(pf1.address)[:2] == ["0000:3b:10.1", "0000:3b:10.3"]
    modalias = _read(devs / "0000:3b:10.0/modalias")
    assert modalias == "pci:v00008086d000010CAsv00008086sd0000A03Cbc02sc00i00"


def test_uevent_is_formatted_like_the_kernel(host) -> None:
    pf = next(p for p in host.pfs if p.profile == "e810")
    text = (host.root / "sys/bus/pci/devices" / pf.address / "uevent").read_text()
    assert text.splitlines() == [
        "DRIVER=ice",
        "PCI_CLASS=20000",
        "PCI_ID=8086:1592",
        "PCI_SUBSYS_ID=8086:000B",
        f"PCI_SLOT_NAME={pf.address}",
        "MODALIAS=pci:v00008086d00001592sv00008086sd0000000Bbc02sc00i00",
    ]


def test_physfn_and_virtfn_links_are_symmetric(host) -> None:
    devs = host.root / "sys/bus/pci/devices"
    for pf in host.pfs:
        pfdir = devs / pf.address
        offset, stride = int(_read(pfdir / "sriov_offset")), int(_read(pfdir / "sriov_stride"))
        for i, vf in enumerate(host.vfs(pf.address)):
            assert vf == str(vf_address(PciAddress.parse(pf.address), offset, stride, i))
            assert (pfdir / f"virtfn{i}").resolve() == (devs / vf).resolve()
            assert (devs / vf / "physfn").resolve() == pfdir.resolve()
        assert not (pfdir / f"virtfn{pf.num_vfs}").exists()


def test_every_function_is_in_exactly_one_iommu_group(host) -> None:
    groups = host.root / "sys/kernel/iommu_groups"
    seen: dict[str, str] = {}
    for group in groups.iterdir():
        for dev in (group / "devices").iterdir():
            assert dev.name not in seen
            seen[dev.name] = group.name
            assert (dev / "iommu_group").resolve() == group.resolve()
    assert sorted(seen) == sorted(host.devices)
    vf_groups = [seen[vf] for pf in host.pfs for vf in host.vfs(pf.address)]
    assert len(set(vf_groups)) == len(vf_groups)  # each VF alone in its group


def test_driver_links_point_both_ways(host) -> None:
    drivers = host.root / "sys/bus/pci/drivers"
    for drv in drivers.iterdir():
        assert (drv / "bind").exists() and (drv / "unbind").exists()
        for link in drv.iterdir():
            if PciAddress.try_parse(link.name) is None:
                continue
            assert (link / "driver").resolve() == drv.resolve()
    devs = host.root / "sys/bus/pci/devices"
    for addr in host.devices:
        drv_link = devs / addr / "driver"
        if drv_link.is_symlink():
            assert (drv_link.resolve() / addr).resolve() == (devs / addr).resolve()


def test_class_net_and_netdev_attributes(host) -> None:
    class_net = host.root / "sys/class/net"
    ifindexes = set()
    for link in class_net.iterdir():
        ifindex = int(_read(link / "ifindex"))
        assert ifindex not in ifindexes
        ifindexes.add(ifindex)
        if link.name == "lo":
            continue
        assert (link / "device").resolve().parent == (link / "device/..").resolve()
        assert (link / "device/net" / link.name).resolve() == link.resolve()
    for pf in host.pfs:
        ndir = class_net / pf.netdev
        drv = pf.driver
        assert (ndir / "phys_port_name").exists() == (drv in ("mlx5_core", "bnxt_en"))
        assert not (ndir / "phys_switch_id").exists()
        for i, vf in enumerate(host.vfs(pf.address)):
            base = re.sub(r"np\d+$", "", pf.netdev)
            assert (class_net / f"{base}v{i}" / "device").resolve().name == vf


def test_numa_spread_and_node_files(host) -> None:
    devs = host.root / "sys/bus/pci/devices"
    nodes = {_read(devs / pf.address / "numa_node") for pf in host.pfs}
    assert nodes == {"0", "1"}
    assert _read(host.root / "sys/devices/system/node/node1/cpulist") == "16-31"


def test_iomem_nests_bars_under_bridge_windows(host) -> None:
    text = (host.root / "proc/iomem").read_text()
    pf = next(p for p in host.pfs if p.profile == "x710")
    lines = text.splitlines()
    claimed = [
        i
        for i, ln in enumerate(lines)
        if ln.endswith(f": {pf.address}") and lines[i + 1].endswith(": i40e")
    ]
    assert claimed  # BAR0 (and BAR3) claimed by the driver, one level deeper
    for i in claimed:
        assert lines[i].startswith("    ") and not lines[i].startswith("      ")
        assert lines[i + 1].startswith("      ")
        start, end = lines[i].split()[0].split("-")
        assert lines[i + 1].split()[0] == f"{start}-{end}"
    vf = host.vfs(pf.address)[0]
    vf_line = next(ln for ln in lines if ln.endswith(f": {vf}"))
    assert vf_line.startswith("      ")  # under the PF's SR-IOV BAR array


def test_host_json_marker_and_extras(host) -> None:
    data = json.loads((host.root / ".sriovkit-sim/host.json").read_text())
    assert data["profiles"] == profile_names()
    assert {pf["address"] for pf in data["pfs"]} == {p.address for p in host.pfs}
    classes = {_read(host.root / "sys/bus/pci/devices" / a / "class") for a in host.devices}
    assert {"0x060000", "0x060400", "0x060100", "0x030000", "0x010802"} <= classes


def test_unknown_profile_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        create_host(tmp_path, ["nope"])
    assert err.value.field == "profile"


def test_vf_buses_do_not_collide(tmp_path: Path) -> None:
    host = create_host(tmp_path / "r", ["e810", "e810", "82599es"], vfs=256, extras=False)
    pfs = host.pfs
    assert [p.num_vfs for p in pfs] == [256, 256, 256, 256, 63, 63]
    assert len(host.devices) == len(set(host.devices))
    buses = {a[:7] for a in host.vfs(pfs[1].address)}
    assert len(buses) == 2  # the second PF's VFs spill onto the next bus
