"""FakeNetlink: answers like the real drivers (igb per LAB-NOTES); keeps state with a sim tree."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from sriovkit.errors import HostError, NotFound, Timeout
from sriovkit.host.events import Event
from sriovkit.host.netlink import LinkChange
from sriovkit.model.vf import LinkState, VfSettings, VlanProto
from sriovkit.sim import create_host
from sriovkit.sim.events import SimEvents
from sriovkit.sim.netlink import FakeNetlink
from sriovkit.sim.netlink_state import STATE_FILE


def make_host(root: Path, pfs: list[tuple[str, str, str, int]], carrier: bool = True) -> Path:
    """A hand-built minimal simulated host: (netdev, pci address, driver, num_vfs) per PF."""
    (root / ".sriovkit-sim").mkdir(parents=True)
    (root / ".sriovkit-sim/host.json").write_text("{}")
    (root / "sys/class/net").mkdir(parents=True)
    for i, (name, addr, driver, num_vfs) in enumerate(pfs, start=2):
        dev = root / "sys/devices/pci0000:00/0000:00:01.0" / addr
        net = dev / "net" / name
        net.mkdir(parents=True)
        for attr, value in {
            "address": f"02:00:00:00:00:{i:02x}",
            "mtu": "1500",
            "carrier": "1" if carrier else "0",
            "speed": "1000",
            "operstate": "up" if carrier else "down",
            "ifindex": str(i),
            "flags": "0x1003",
        }.items():
            (net / attr).write_text(value + "\n")
        (dev / "sriov_numvfs").write_text(f"{num_vfs}\n")
        drv = root / "sys/bus/pci/drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        (dev / "driver").symlink_to(os.path.relpath(drv, dev))
        (net / "device").symlink_to(os.path.relpath(dev, net))
        (root / "sys/class/net" / name).symlink_to(os.path.relpath(net, root / "sys/class/net"))
    return root


@pytest.fixture
def igb() -> FakeNetlink:
    nl = FakeNetlink()
    nl.add_link("eth0", driver="igb", num_vfs=2, speed=1000)
    return nl


def refused(nl: FakeNetlink, settings: VfSettings, index: int = 0) -> int | None:
    with pytest.raises(HostError) as err:
        nl.set_vf("eth0", index, settings)
    return err.value.errno


# -- igb, as measured in the lab ------------------------------------------------------------------


def test_igb_accepts_mac_vlan_qos_spoofchk_trust_max_rate(igb: FakeNetlink) -> None:
    igb.set_vf(
        "eth0",
        1,
        VfSettings(
            mac="02:11:22:33:44:55", vlan=100, qos=5, spoofchk=False, trust=True, max_tx_rate=500
        ),
    )
    vf = igb.vfs("eth0")[1]
    assert (vf.mac, vf.vlan, vf.qos, vf.proto) == ("02:11:22:33:44:55", 100, 5, VlanProto.DOT1Q)
    assert (vf.spoofchk, vf.trust, vf.max_tx_rate) == (False, True, 500)
    assert igb.vfs("eth0")[0].mac == "00:00:00:00:00:00"  # the other VF is untouched


# The refusals igb makes whatever its carrier: tests/contract/igb_refusals.py (shared with the lab).


def test_igb_refuses_a_max_rate_above_the_link_speed(igb: FakeNetlink) -> None:
    assert refused(igb, VfSettings(max_tx_rate=2000)) == errno.EINVAL  # link speed 1000 Mb/s
    assert igb.vfs("eth0")[0].vlan == 0


def test_igb_max_rate_needs_carrier(igb: FakeNetlink) -> None:
    igb.set_carrier("eth0", False)
    assert refused(igb, VfSettings(max_tx_rate=100)) == errno.EINVAL
    igb.set_carrier("eth0", True)
    igb.set_vf("eth0", 0, VfSettings(max_tx_rate=100))
    assert igb.vfs("eth0")[0].max_tx_rate == 100


def test_vf_index_out_of_range_is_einval(igb: FakeNetlink) -> None:
    assert refused(igb, VfSettings(trust=True), index=2) == errno.EINVAL


def test_partial_application_stops_at_first_refusal(igb: FakeNetlink) -> None:
    # kernel order: mac, vlan, rate, spoofchk, state (refused), trust -> mac..spoofchk stay applied
    settings = VfSettings(
        mac="02:00:00:00:00:77",
        vlan=7,
        spoofchk=False,
        link_state=LinkState.DISABLE,
        trust=True,
    )
    assert refused(igb, settings) == errno.EOPNOTSUPP
    vf = igb.vfs("eth0")[0]
    assert (vf.mac, vf.vlan, vf.spoofchk) == ("02:00:00:00:00:77", 7, False)
    assert (vf.link_state, vf.trust) == (LinkState.AUTO, False)


def test_vlan_alone_resets_qos_like_ip_link(igb: FakeNetlink) -> None:
    igb.set_vf("eth0", 0, VfSettings(vlan=5, qos=3))
    igb.set_vf("eth0", 0, VfSettings(vlan=6))
    assert (igb.vfs("eth0")[0].vlan, igb.vfs("eth0")[0].qos) == (6, 0)


def test_non_sriov_link_and_missing_link() -> None:
    nl = FakeNetlink()
    nl.add_link("veth0")
    with pytest.raises(HostError) as err:
        nl.vfs("veth0")
    assert err.value.errno == errno.EOPNOTSUPP
    with pytest.raises(NotFound):
        nl.vfs("nope")


# -- other drivers' tables ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "settings", "code"),
    [
        ("ixgbe", VfSettings(link_state=LinkState.DISABLE), None),
        ("ixgbe", VfSettings(min_tx_rate=10, max_tx_rate=100), errno.EINVAL),
        ("ixgbe", VfSettings(max_tx_rate=5), errno.EINVAL),  # must be above 10 Mb/s
        ("i40e", VfSettings(vlan=3, proto=VlanProto.DOT1AD), errno.EPROTONOSUPPORT),
        ("i40e", VfSettings(trust=True), None),
        ("ice", VfSettings(vlan=3, proto=VlanProto.DOT1AD), None),
        ("ice", VfSettings(min_tx_rate=10, max_tx_rate=100), None),
        ("mlx5_core", VfSettings(min_tx_rate=10, max_tx_rate=100000), None),
        ("mlx5_core", VfSettings(vlan=3, proto=VlanProto.DOT1AD), errno.EPROTONOSUPPORT),
        ("bnxt_en", VfSettings(link_state=LinkState.ENABLE), None),
        ("netdevsim", VfSettings(vlan=3, proto=VlanProto.DOT1AD, min_tx_rate=1), None),
    ],
)
def test_driver_tables(driver: str, settings: VfSettings, code: int | None) -> None:
    nl = FakeNetlink()
    nl.add_link("eth0", driver=driver, num_vfs=1, speed=1000)
    if code is None:
        nl.set_vf("eth0", 0, settings)
        vf = nl.vfs("eth0")[0]
        assert all(getattr(vf, k) == v for k, v in settings.items())
    else:
        assert refused(nl, settings) == code


def test_mlx5_starts_with_spoofchk_off() -> None:
    nl = FakeNetlink()
    nl.add_link("p0", driver="mlx5_core", num_vfs=1)
    assert nl.vfs("p0")[0].spoofchk is False


# -- links, namespaces, addresses, routes ---------------------------------------------------------


def test_set_link_and_move_link_in_one_request() -> None:
    nl = FakeNetlink()
    nl.add_link("vf0", mac="02:00:00:00:01:00", up=False)
    nl.set_link("vf0", LinkChange(mtu=9000))
    assert nl.link("vf0").mtu == 9000
    ns = Path("/run/netns/pod1")
    before = nl.requests
    nl.move_link("vf0", ns, LinkChange(new_name="net1", mtu=1400, mac="02:00:00:00:01:01", up=True))
    assert nl.requests == before + 1
    with pytest.raises(NotFound):
        nl.link("vf0")
    pod = nl.in_netns(ns)
    moved = pod.link("net1")
    assert (moved.mtu, moved.mac, moved.up) == (1400, "02:00:00:00:01:01", True)
    assert [lk.name for lk in pod.links()] == ["net1"]
    pod.move_link("net1", Path("/proc/1/ns/net"), LinkChange(new_name="vf0"))
    assert nl.link("vf0").up is False  # the kernel closes a netdev it moves


def test_rename_name_clash_is_eexist() -> None:
    nl = FakeNetlink()
    nl.add_link("a", up=True)
    nl.add_link("b", up=False)
    nl.set_link("a", LinkChange(new_name="c"))  # current kernels rename live netdevs too
    assert nl.link("c").index == 1
    with pytest.raises(HostError) as err:
        nl.set_link("b", LinkChange(new_name="c"))
    assert err.value.errno == errno.EEXIST
    with pytest.raises(HostError) as err:
        nl.set_link("b", LinkChange(new_name="bad/name"))
    assert err.value.errno == errno.EINVAL
    with pytest.raises(HostError) as err:
        nl.set_link("b", LinkChange(mtu=20))
    assert err.value.errno == errno.EINVAL


def test_addresses_and_routes() -> None:
    nl = FakeNetlink()
    nl.add_link("net1")
    nl.add_address("net1", "10.1.0.2/24")
    assert [a.cidr for a in nl.addresses("net1")] == ["10.1.0.2/24"]
    with pytest.raises(HostError) as err:
        nl.add_address("net1", "10.1.0.2/24")
    assert err.value.errno == errno.EEXIST
    nl.add_route("default", gateway="10.1.0.1")
    assert [(r.dst, r.gateway) for r in nl.routes("net1")] == [("default", "10.1.0.1")]
    with pytest.raises(HostError) as err:
        nl.add_route("10.9.0.0/16", gateway="192.168.1.1")
    assert err.value.errno == errno.ENETUNREACH
    nl.flush_addresses("net1")
    assert nl.addresses("net1") == []
    assert nl.routes() == []


def test_wait_link_times_out_for_a_missing_link(igb: FakeNetlink) -> None:
    assert igb.wait_link("eth0", 1.0).name == "eth0"
    with pytest.raises(Timeout):
        igb.wait_link("eth9", 1.0)


# -- bound to a simulated host tree ---------------------------------------------------------------


def test_tree_links_and_state_persist_across_instances(tmp_path: Path) -> None:
    root = make_host(tmp_path, [("enp1s0f0", "0000:01:00.0", "igb", 3)])
    first = FakeNetlink(root)
    pf = first.link("enp1s0f0")
    assert (pf.index, pf.num_vfs, pf.parent, pf.carrier) == (2, 3, "0000:01:00.0", True)
    first.set_vf("enp1s0f0", 2, VfSettings(vlan=42, trust=True))
    second = FakeNetlink(root)  # a later CLI call
    assert (second.vfs("enp1s0f0")[2].vlan, second.vfs("enp1s0f0")[2].trust) == (42, True)
    state = json.loads((root / ".sriovkit-sim/netlink.json").read_text())
    assert state["vfs"]["enp1s0f0"]["2"]["vlan"] == 42


def test_tree_vf_count_change_gives_fresh_vfs(tmp_path: Path) -> None:
    root = make_host(tmp_path, [("enp1s0f0", "0000:01:00.0", "igb", 2)])
    FakeNetlink(root).set_vf("enp1s0f0", 0, VfSettings(vlan=9))
    dev = root / "sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0"
    (dev / "sriov_numvfs").write_text("4\n")
    vfs = FakeNetlink(root).vfs("enp1s0f0")
    assert [v.index for v in vfs] == [0, 1, 2, 3]
    assert vfs[0].vlan == 0


def test_tree_carrier_gates_igb_rate(tmp_path: Path) -> None:
    root = make_host(tmp_path, [("enp1s0f0", "0000:01:00.0", "igb", 1)], carrier=False)
    with pytest.raises(HostError) as err:
        FakeNetlink(root).set_vf("enp1s0f0", 0, VfSettings(max_tx_rate=10))
    assert err.value.errno == errno.EINVAL


def test_tree_link_changes_persist(tmp_path: Path) -> None:
    root = make_host(tmp_path, [("enp1s0f0", "0000:01:00.0", "ixgbe", 1)])
    FakeNetlink(root).set_link("enp1s0f0", LinkChange(mtu=9000))
    assert FakeNetlink(root).link("enp1s0f0").mtu == 9000


def test_altnames_add_and_delete_like_the_kernel() -> None:
    nl = FakeNetlink()
    nl.add_link("eth0", driver="igb", num_vfs=0)
    nl.add_link("eth1")
    nl.add_altname("eth0", "enp1s0")
    assert nl.link("eth0").altnames == ("enp1s0",)
    assert nl.link("enp1s0").name == "eth0"  # the kernel resolves altnames too
    with pytest.raises(HostError) as err:
        nl.add_altname("eth1", "enp1s0")
    assert err.value.errno == errno.EEXIST
    nl.del_altname("eth0", "enp1s0")
    assert nl.link("eth0").altnames == ()
    with pytest.raises(HostError):
        nl.del_altname("eth0", "enp1s0")


def test_reading_vfs_saves_the_state_only_when_the_read_initialised_them(tmp_path: Path) -> None:
    # A PF's VF table is created (and saved) by the first read after VFs appear; later reads
    # change nothing and must not rewrite the state file (a real PF's read is side-effect free).
    host = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    pf = host.pfs[0].netdev
    assert pf is not None
    nl = FakeNetlink(tmp_path)
    state = tmp_path / STATE_FILE
    assert len(nl.vfs(pf)) == 2
    first = state.stat()
    assert len(nl.vfs(pf)) == 2
    again = state.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


def test_link_names_match_the_links_after_renames_and_moves(tmp_path: Path) -> None:
    # The veth-mode seam asks for names only, on every request: they must be what links()
    # says, renames and netns moves made through the fake included.
    host = create_host(tmp_path, ["82576", "x710"], vfs=2, extras=True)
    nl = FakeNetlink(tmp_path)
    assert nl.link_names() == [lk.name for lk in nl.links()]
    vf_netdev = next(n for n in nl.link_names() if n not in {p.netdev for p in host.pfs})
    pf = host.pfs[0].netdev
    assert pf is not None
    nl.set_link(pf, LinkChange(new_name="uplink0"))
    pod = tmp_path / "pod-netns"
    pod.touch()
    nl.move_link(vf_netdev, pod, LinkChange(new_name="net1"))
    names = nl.link_names()
    assert names == [lk.name for lk in nl.links()]
    assert "uplink0" in names and pf not in names and vf_netdev not in names
    assert nl.in_netns(pod).link_names() == [lk.name for lk in nl.in_netns(pod).links()]
    assert nl.in_netns(pod).link_names() == ["net1"]


def _states(nl: FakeNetlink) -> dict[str, tuple[bool, bool]]:
    return {s.name: (s.up, s.carrier) for s in nl.link_states()}


def test_link_states_and_one_link_reads_match_the_whole_world(tmp_path: Path) -> None:
    # The device plugin's health reads link_states() (flags and carrier only) and link(name)
    # (that netdev only): both must say what a whole-world links() says, after netlink's
    # renames, admin changes, moves and carrier changes.
    host = create_host(tmp_path, ["82576", "x710"], vfs=2, extras=True)
    nl = FakeNetlink(tmp_path)
    pf, other = host.pfs[0].netdev, host.pfs[1].netdev
    assert pf is not None and other is not None
    vf_netdevs = [n for n in nl.link_names() if n not in {p.netdev for p in host.pfs}]

    def whole() -> dict[str, tuple[bool, bool]]:
        return {lk.name: (lk.up, lk.carrier) for lk in nl.links()}

    assert _states(nl) == whole()
    nl.set_link(pf, LinkChange(new_name="uplink0"))
    nl.set_carrier("uplink0", False)
    nl.set_link(vf_netdevs[0], LinkChange(up=True))
    nl.set_carrier(vf_netdevs[0], False)
    nl.set_link(other, LinkChange(up=False))
    pod = tmp_path / "pod-netns"
    pod.touch()
    nl.move_link(vf_netdevs[1], pod, LinkChange(new_name="net1"))
    assert _states(nl) == whole()
    some = {"uplink0", vf_netdevs[0], other, vf_netdevs[1], "nothing0"}
    named = {s.name: (s.up, s.carrier) for s in nl.link_states(some)}
    assert named == {k: v for k, v in whole().items() if k in some}
    assert _states(nl.in_netns(pod)) == {"net1": (False, False)}
    for link in nl.links():
        assert nl.link(link.name) == link
    assert nl.in_netns(pod).link("net1") == nl.in_netns(pod).links()[0]
    with pytest.raises(NotFound):
        nl.link(pf)  # renamed: the old name is gone
    with pytest.raises(NotFound):
        nl.link(vf_netdevs[1])  # moved away


def test_a_change_publishes_the_links_it_changed(tmp_path: Path) -> None:
    host = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    pf = host.pfs[0].netdev
    assert pf is not None
    nl = FakeNetlink(tmp_path)
    events = SimEvents(tmp_path)
    try:
        nl.set_link(pf, LinkChange(new_name="uplink0"))
        assert sorted(e.name or "" for e in events.read()) == sorted([pf, "uplink0"])
        nl.set_vf("uplink0", 1, VfSettings(vlan=5))
        assert events.read() == [Event("link", "uplink0")]
        nl.set_carrier("uplink0", False)
        assert events.read() == [Event("link", "uplink0")]
    finally:
        events.close()
