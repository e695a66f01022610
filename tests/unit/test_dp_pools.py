"""Pools on simulated hosts: selectors, ranges, one pool per VF, NUMA, and exclusions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sriovkit.host.netfacts import NetFacts, default_route_ifaces
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.dp_config import config_from_obj
from sriovkit.model.dp_pool import Exclusion, Pool
from sriovkit.model.pci import PciAddress
from sriovkit.ops import discover
from sriovkit.ops.dp_pools import pools
from sriovkit.sim import create_host
from sriovkit.wiring import open_sysfs

# create_host(["82576", "e810"], vfs=4): 82576 PFs 0000:3b:00.0/.1 (enp59s0f0/f1, igb, VFs
# 10ca on igbvf, NUMA 0), E810 PFs 0000:af:00.0/.1 (enp175s0f0/f1, ice, VFs 1889 on iavf,
# NUMA 1), and the onboard eno1 (igb 1533, no SR-IOV).
IGB_PF0 = "0000:3b:00.0"
ICE_PF0 = "0000:af:00.0"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    create_host(tmp_path, ["82576", "e810"], vfs=4)
    return tmp_path


def run(root: Path, *resources: dict[str, Any], details: bool = True) -> list[Pool]:
    config = config_from_obj({"resourceList": list(resources)})
    facts = NetFacts(root)
    inv = discover.collect(Sysfs(root), PciIds())
    return pools(
        inv,
        config,
        facts=facts,
        bond_ports=facts.bond_ports(),
        default_route=facts.default_route_links(),
        details=details,
    )


def res(name: str, selectors: Any, **extra: Any) -> dict[str, Any]:
    return {"resourceName": name, "selectors": selectors, **extra}


def members(pool: Pool) -> list[tuple[str | None, int | None]]:
    return [(d.pf_name, d.vf_index) for d in pool.devices]


def excluded(pool: Pool) -> dict[str, str]:
    return {str(e.pci): e.detail for e in pool.excluded}


def test_by_vendor_and_device(root: Path) -> None:
    (pool,) = run(root, res("igbvf", {"vendors": ["8086"], "devices": ["10ca"]}))
    assert members(pool) == [
        ("enp59s0f0", 0), ("enp59s0f1", 0), ("enp59s0f0", 1), ("enp59s0f1", 1),
        ("enp59s0f0", 2), ("enp59s0f1", 2), ("enp59s0f0", 3), ("enp59s0f1", 3),
    ]  # fmt: skip
    dev = pool.devices[0]
    assert dev.pci == PciAddress.parse("0000:3b:10.0")
    assert str(dev.pf_pci) == IGB_PF0
    assert (dev.driver, dev.netdev, dev.numa, dev.link_type, dev.rdma) == (
        "igbvf", "enp59s0f0v0", 0, "ether", False,
    )  # fmt: skip
    assert (dev.vendor, dev.device) == ("8086", "10ca")
    assert dev.iommu_group is not None
    assert pool.excluded == () and pool.full_name == "intel.com/igbvf"


def test_by_driver_offers_pf_without_vfs_not_pf_with_vfs(root: Path) -> None:
    (pool,) = run(root, res("igb", {"drivers": ["igb"]}))
    # eno1 is a plain NIC: offered, as upstream. The 82576 PFs have VFs: their VFs are the
    # devices to offer, never the PF itself.
    assert [d.netdev for d in pool.devices] == ["eno1"]
    assert excluded(pool) == {
        "0000:3b:00.0": "PF with 4 VFs enabled: its VFs are offered, not the PF",
        "0000:3b:00.1": "PF with 4 VFs enabled: its VFs are offered, not the PF",
    }
    assert {e.why for e in pool.excluded} == {Exclusion.PF_WITH_VFS}


def test_pfnames_ranges(root: Path) -> None:
    (pool,) = run(root, res("r", {"pfNames": ["enp175s0f0#0,2-3", "enp59s0f1"]}))
    assert members(pool) == [
        ("enp59s0f1", 0), ("enp59s0f1", 1), ("enp59s0f1", 2), ("enp59s0f1", 3),
        ("enp175s0f0", 0), ("enp175s0f0", 2), ("enp175s0f0", 3),
    ]  # fmt: skip
    # Upstream matches PF names like strings.EqualFold.
    (pool,) = run(root, res("r", {"pfNames": ["ENP175S0F0#1"]}))
    assert members(pool) == [("enp175s0f0", 1)]


def test_root_devices_ranges(root: Path) -> None:
    (pool,) = run(root, res("r", {"rootDevices": [f"{ICE_PF0}#1-2", f"{IGB_PF0}#3"]}))
    assert sorted(members(pool), key=str) == [
        ("enp175s0f0", 1), ("enp175s0f0", 2), ("enp59s0f0", 3),
    ]  # fmt: skip
    (pool,) = run(root, res("r", {"rootDevices": [IGB_PF0]}))
    assert {d.vf_index for d in pool.devices} == {0, 1, 2, 3}
    assert all(d.pf_name == "enp59s0f0" for d in pool.devices)


def test_pci_addresses_and_link_types(root: Path) -> None:
    (pool,) = run(root, res("r", {"pciAddresses": ["0000:3b:10.0", "0000:af:01.1"]}))
    assert [str(d.pci) for d in pool.devices] == ["0000:3b:10.0", "0000:af:01.1"]
    (pool,) = run(root, res("r", {"linkTypes": ["infiniband"]}))
    assert pool.devices == ()


def test_vf_in_two_resources_goes_to_the_first(root: Path) -> None:
    first, second = run(
        root,
        res("first", {"pfNames": ["enp59s0f0#0-1"]}),
        res("second", {"devices": ["10ca"]}, resourcePrefix="example.com"),
    )
    assert members(first) == [("enp59s0f0", 0), ("enp59s0f0", 1)]
    assert len(second.devices) == 6
    assert excluded(second) == {
        "0000:3b:10.0": "already in pool intel.com/first",
        "0000:3b:10.2": "already in pool intel.com/first",
    }


def test_selector_list_in_order(root: Path) -> None:
    (pool,) = run(
        root,
        res(
            "r",
            [
                {"pfNames": ["enp59s0f0#0"], "needVhostNet": True},
                {"pfNames": ["enp59s0f0#0-1"]},
            ],
        ),
    )
    # VF 0 matches both objects: the first one picked it (and its needVhostNet applies).
    assert [(d.vf_index, d.selector, d.vhost_net) for d in pool.devices] == [
        (0, 0, True),
        (1, 1, False),
    ]


def test_numa_and_exclude_topology(root: Path) -> None:
    sel = {"pfNames": ["enp175s0f0#0"]}
    (pool,) = run(root, res("r", sel))
    assert pool.devices[0].numa == 1
    (pool,) = run(root, res("r", sel, excludeTopology=True))
    assert pool.devices[0].numa is None
    # numa_node -1 (no NUMA information) is no topology either. (The walk takes a VF's
    # node from its PF's, so both are written.)
    for addr in (ICE_PF0, "0000:af:01.0"):
        (root / f"sys/bus/pci/devices/{addr}/numa_node").write_text("-1\n")
    (pool,) = run(root, res("r", sel))
    assert pool.devices[0].numa is None


def _bond(root: Path, bond: str, ports: list[str]) -> None:
    net = root / "sys/class/net"
    (net / "bonding_masters").write_text(bond + "\n")
    (net / bond / "bonding").mkdir(parents=True)
    (net / bond / "bonding/slaves").write_text(" ".join(ports) + "\n")


def test_bond_port_pf_excluded_but_its_vfs_offered(root: Path) -> None:
    open_sysfs(root).set_num_vfs(PciAddress.parse(IGB_PF0), 0)
    _bond(root, "bond0", ["enp59s0f0", "eno1"])
    (pool,) = run(root, res("r", {"drivers": ["igb", "igbvf"]}))
    assert excluded(pool) == {
        "0000:01:00.0": "eno1 is a port of bond bond0",
        IGB_PF0: "enp59s0f0 is a port of bond bond0",
        "0000:3b:00.1": "PF with 4 VFs enabled: its VFs are offered, not the PF",
    }
    assert {e.why for e in pool.excluded if e.detail.startswith("en")} == {Exclusion.BOND_PORT}
    assert {d.pf_name for d in pool.devices} == {"enp59s0f1"}


def test_default_route_pf_excluded(root: Path) -> None:
    open_sysfs(root).set_num_vfs(PciAddress.parse(ICE_PF0), 0)
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/net/route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "enp175s0f0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "enp175s0f0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    )
    (pool,) = run(root, res("r", {"drivers": ["ice"]}))
    assert pool.devices == ()
    assert excluded(pool) == {
        ICE_PF0: "enp175s0f0 carries the default route",
        "0000:af:00.1": "PF with 4 VFs enabled: its VFs are offered, not the PF",
    }
    assert pool.excluded[0].why is Exclusion.DEFAULT_ROUTE


def test_default_route_over_a_vlan_counts_for_the_pf(root: Path) -> None:
    open_sysfs(root).set_num_vfs(PciAddress.parse(ICE_PF0), 0)
    vlan = root / "sys/class/net/enp175s0f0.100"
    vlan.mkdir()
    (vlan / "lower_enp175s0f0").symlink_to("../enp175s0f0")
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/net/ipv6_route").write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 enp175s0f0.100\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
    )
    (pool,) = run(root, res("r", {"drivers": ["ice"]}))
    assert excluded(pool)[ICE_PF0] == (
        "enp175s0f0 carries the default route (on enp175s0f0.100, over it)"
    )


def test_vfio_bound_vf_stays_in_a_netdevice_pool(root: Path) -> None:
    from sriovkit.sim.host import SimHost  # noqa: PLC0415

    SimHost(root).load_module("vfio-pci")
    sysfs = open_sysfs(root)
    vf = PciAddress.parse("0000:3b:10.0")
    sysfs.set_driver_override(vf, "vfio-pci")
    sysfs.unbind(vf, "igbvf")
    sysfs.drivers_probe(vf)
    (pool,) = run(root, res("r", {"pfNames": ["enp59s0f0#0-1"]}))
    dev = pool.devices[0]
    # No netdev any more: the link type comes from the PF, as upstream.
    assert (dev.driver, dev.netdev, dev.link_type) == ("vfio-pci", None, "ether")
    (pool,) = run(root, res("r", {"drivers": ["vfio-pci"]}))
    assert members(pool) == [("enp59s0f0", 0)]


def test_unbound_device_excluded(root: Path) -> None:
    sysfs = open_sysfs(root)
    vf = PciAddress.parse("0000:3b:10.0")
    sysfs.unbind(vf, "igbvf")
    (pool,) = run(root, res("r", {"pfNames": ["enp59s0f0#0"]}))
    assert pool.devices == ()
    assert excluded(pool) == {"0000:3b:10.0": "no driver bound"}


def test_rdma_acpi_and_accelerators(root: Path) -> None:
    vf = root / "sys/bus/pci/devices/0000:af:01.0"
    (vf / "infiniband/irdma0").mkdir(parents=True)
    (vf / "acpi_index").write_text("101\n")
    (pool,) = run(root, res("r", {"isRdma": True}))
    assert [str(d.pci) for d in pool.devices] == ["0000:af:01.0"]
    assert pool.devices[0].rdma
    (pool,) = run(root, res("r", {"acpiIndexes": ["101"]}))
    assert [str(d.pci) for d in pool.devices] == ["0000:af:01.0"]
    # No processing accelerator (class 0x12) on this host: nothing, whatever the vendor.
    (pool,) = run(root, res("r", {"vendors": ["8086"]}, deviceType="accelerator"))
    assert pool.devices == () and pool.excluded == ()


def test_selectors_sriovkit_cannot_read_select_nothing_and_say_so(root: Path) -> None:
    aux, ddp = run(
        root,
        res("sf", {"auxTypes": ["sf"]}, deviceType="auxNetDevice"),
        res("ddp", [{"ddpProfiles": ["GTP"]}, {"pfNames": ["enp59s0f0#0"]}]),
    )
    assert aux.devices == () and "auxNetDevice" in aux.notes[0]
    assert ddp.notes == (
        "selectors[0] uses ddpProfiles, which sriovkit does not read yet: it selects nothing",
    )
    assert members(ddp) == [("enp59s0f0", 0)]


def test_default_route_parsing() -> None:
    route = (
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n"
        "eth1\t00000000\t0100A8C0\t0002\t0\t0\t0\t00000000\n"  # not up
        "eth2\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\n"
    )
    assert default_route_ifaces(route, None) == {"eth0"}
    assert default_route_ifaces(None, None) == set()


def test_without_details_the_pools_are_the_same_and_carry_only_what_selectors_read(
    root: Path,
) -> None:
    # The agent's pools: same members and exclusions, no link type / RDMA read for display.
    entries = (
        res("a", {"linkTypes": ["ether"], "drivers": ["igbvf"]}),
        res("b", {"drivers": ["iavf"]}),
    )
    full, lean = run(root, *entries), run(root, *entries, details=False)
    assert [members(p) for p in lean] == [members(p) for p in full]
    assert [p.excluded for p in lean] == [p.excluded for p in full]
    assert {(d.link_type, d.rdma) for d in lean[0].devices} == {("ether", None)}
    assert {(d.link_type, d.rdma) for d in lean[1].devices} == {(None, None)}
    assert {(d.link_type, d.rdma) for d in full[1].devices} == {("ether", False)}
