"""ops/bond.py on the simulated bonding driver: create, read back, rollback, delete, refusals."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from contract.bond_refusals import check_refusal, refusal_params
from sriovkit.errors import HostError, InvalidInput, NotFound
from sriovkit.host.netlink import LinkChange
from sriovkit.model.bond import (
    BondMode,
    BondOptions,
    BondPort,
    BondSpec,
    LacpRate,
    PortOptions,
    XmitHashPolicy,
)
from sriovkit.model.bond_state import MiiStatus, PortRole
from sriovkit.ops.bond import (
    add_port,
    create_bond,
    delete_bond,
    list_bonds,
    plan_bond,
    remove_port,
    set_options,
)
from sriovkit.sim.netlink import FakeNetlink


def _no_rules(spec: BondSpec) -> None:
    return None


@pytest.fixture
def nl() -> FakeNetlink:
    fake = FakeNetlink()
    fake.add_link("vf0", mac="02:00:00:00:00:10", mtu=1500, up=True, max_mtu=9216)
    fake.add_link("vf1", mac="02:00:00:00:00:11", mtu=1500, up=False, max_mtu=9216)
    fake.add_link("vf2", mac="02:00:00:00:00:11", mtu=1400, up=True, max_mtu=1500)
    return fake


def _spec(mode: BondMode = BondMode.ACTIVE_BACKUP, ports: tuple[str, ...] = ("vf0", "vf1"),
          **opts: object) -> BondSpec:  # fmt: skip
    return BondSpec("bond0", mode, BondOptions(**opts), tuple(BondPort(p) for p in ports))  # type: ignore[arg-type]


def _snapshot(nl: FakeNetlink) -> list[tuple[str, str, int, bool, int | None]]:
    return [(lk.name, lk.mac, lk.mtu, lk.up, lk.master) for lk in nl.links()]


def test_active_backup_read_back_equals_asked(nl: FakeNetlink) -> None:
    spec = _spec(miimon=100, updelay=200, primary="vf1", xmit_hash_policy=XmitHashPolicy.LAYER3_4,
                 num_peer_notif=3, min_links=1, all_slaves_active=True)  # fmt: skip
    result = create_bond(nl, spec, validate=_no_rules)
    assert isinstance(result, tuple)
    state, plan = result
    for name, value in spec.options.given():
        assert getattr(state.options, name) == value, name
    assert state.mode is BondMode.ACTIVE_BACKUP
    assert state.port_names == ("vf0", "vf1")
    assert state.active_port == "vf1"  # the primary
    assert state.port("vf1").role is PortRole.ACTIVE  # type: ignore[union-attr]
    assert state.up and state.mtu == 1500
    # the first port gives the bond its MAC; the others take the bond's
    assert state.mac == "02:00:00:00:00:10"
    assert {p.mac for p in state.ports} == {state.mac}
    assert plan.originals[1].up is False


def test_802_3ad_options_and_ad_info(nl: FakeNetlink) -> None:
    spec = _spec(BondMode.IEEE_802_3AD, lacp_rate=LacpRate.FAST, ad_actor_sys_prio=100,
                 ad_user_port_key=5, ad_actor_system="02:00:00:00:00:42")  # fmt: skip
    result = create_bond(nl, spec, validate=_no_rules)
    assert isinstance(result, tuple)
    state = result[0]
    for name, value in spec.options.given():
        assert getattr(state.options, name) == value, name
    assert state.options.miimon == 100  # the kernel starts the MII monitor for 802.3ad
    assert state.ad_info is not None and state.ad_info.partner_mac == "00:00:00:00:00:00"


def test_per_port_options(nl: FakeNetlink) -> None:
    ports = (BondPort("vf0", PortOptions(queue_id=2, prio=5)), BondPort("vf1"))
    spec = BondSpec("bond0", BondMode.ACTIVE_BACKUP, BondOptions(miimon=100), ports)
    result = create_bond(nl, spec, validate=_no_rules)
    assert isinstance(result, tuple)
    port = result[0].port("vf0")
    assert port is not None and (port.queue_id, port.prio) == (2, 5)


def test_dry_run_changes_nothing(nl: FakeNetlink) -> None:
    before = _snapshot(nl)
    plan = create_bond(nl, _spec(miimon=100), dry_run=True, validate=_no_rules)
    assert not isinstance(plan, tuple)
    assert plan.lines()[0].startswith("create bond bond0 mode active-backup mtu 1500 miimon=100")
    assert _snapshot(nl) == before and nl.bonds() == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_spec(ports=("vf0", "nosuch")), None),
        (_spec(ports=("vf0", "vf2")), "mtu"),  # asked MTU 9000, vf2 takes at most 1500
        (_spec(primary="vf2"), "primary"),
    ],
)
def test_bad_input_changes_nothing(nl: FakeNetlink, spec: BondSpec, field: str | None) -> None:
    before = _snapshot(nl)
    if field == "mtu":
        with pytest.raises(InvalidInput, match="vf2 takes at most MTU 1500"):
            create_bond(nl, spec, mtu=9000, validate=_no_rules)
    elif field is None:
        with pytest.raises(NotFound, match="nosuch"):
            create_bond(nl, spec, validate=_no_rules)
    else:
        with pytest.raises(InvalidInput, match=field):
            create_bond(nl, spec, validate=_no_rules)
    assert _snapshot(nl) == before and nl.bonds() == []


def test_port_of_another_bond_is_refused(nl: FakeNetlink) -> None:
    create_bond(nl, _spec(), validate=_no_rules)
    other = BondSpec("bond1", BondMode.ACTIVE_BACKUP, ports=(BondPort("vf1"),))
    with pytest.raises(InvalidInput, match="vf1 is already a port of bond0"):
        create_bond(nl, other, validate=_no_rules)
    with pytest.raises(InvalidInput, match="bond name"):
        create_bond(nl, _spec(ports=("vf2",)), validate=_no_rules)


class _RefuseSecond(FakeNetlink):
    def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
        if port == "vf1":
            raise HostError(f"failed to enslave {port} to {bond}: Invalid argument", errno.EINVAL)
        super().enslave(port, bond, options)


def test_second_port_refusing_rolls_everything_back() -> None:
    nl = _RefuseSecond()
    nl.add_link("vf0", mac="02:00:00:00:00:10", mtu=1400, up=True, max_mtu=9216)
    nl.add_link("vf1", mac="02:00:00:00:00:10", mtu=1500, up=True, max_mtu=9216)
    before = _snapshot(nl)
    with pytest.raises(HostError) as err:
        create_bond(nl, _spec(miimon=100), mtu=1500, validate=_no_rules)
    assert err.value.errno == errno.EINVAL
    assert _snapshot(nl) == before  # MTU, MAC (the duplicate was changed), admin state, master
    assert nl.bonds() == []


def test_duplicate_macs_get_a_fresh_one_and_delete_gives_them_back(nl: FakeNetlink) -> None:
    nl.set_link("vf0", LinkChange(mac="02:00:00:00:00:11"))
    before = _snapshot(nl)
    result = create_bond(nl, _spec(), validate=_no_rules)
    assert isinstance(result, tuple)
    state, plan = result
    assert [p for p, _ in plan.new_macs] == ["vf1"]
    assert state.port("vf1").perm_hwaddr != "02:00:00:00:00:11"  # type: ignore[union-attr]
    delete_bond(nl, "bond0", plan.originals)
    assert _snapshot(nl) == before


def test_delete_without_originals_leaves_ports_as_the_kernel_does(nl: FakeNetlink) -> None:
    result = create_bond(nl, _spec(), mtu=1500, validate=_no_rules)
    assert isinstance(result, tuple)
    delete_bond(nl, "bond0")
    vf0 = nl.link("vf0")
    assert (vf0.mac, vf0.mtu, vf0.up, vf0.master) == ("02:00:00:00:00:10", 1500, False, None)


def test_failover_on_port_down(nl: FakeNetlink) -> None:
    create_bond(nl, _spec(miimon=100), validate=_no_rules)
    state = nl.bond("bond0")
    active = state.active_port
    assert active == "vf0"
    nl.set_link("vf0", LinkChange(up=False))
    after = nl.bond("bond0")
    assert after.active_port == "vf1"
    down = after.port("vf0")
    assert down is not None and down.mii_status is MiiStatus.DOWN and down.link_failure_count == 1


def test_add_and_remove_port(nl: FakeNetlink) -> None:
    create_bond(nl, _spec(ports=("vf0",)), validate=_no_rules)
    state, original = add_port(nl, "bond0", BondPort("vf1"))
    assert state.port_names == ("vf0", "vf1")
    state = remove_port(nl, "bond0", "vf1", original)
    assert state.port_names == ("vf0",)
    vf1 = nl.link("vf1")
    assert (vf1.up, vf1.master, vf1.mac) == (False, None, "02:00:00:00:00:11")
    with pytest.raises(NotFound):
        remove_port(nl, "bond0", "vf1")


def test_set_options_and_kernel_refusals(nl: FakeNetlink) -> None:
    create_bond(nl, _spec(BondMode.IEEE_802_3AD), validate=_no_rules)
    state = set_options(nl, "bond0", BondOptions(ad_actor_sys_prio=7), validate=_no_rules)
    assert state.options.ad_actor_sys_prio == 7
    with pytest.raises(HostError) as err:  # IFDOWN option while the bond is up
        set_options(nl, "bond0", BondOptions(lacp_rate=LacpRate.FAST), validate=_no_rules)
    assert err.value.errno == errno.EBUSY
    with pytest.raises(HostError) as err:
        nl.set_bond("bond0", BondOptions(), mode=BondMode.ACTIVE_BACKUP)
    assert err.value.errno == errno.ENOTEMPTY
    assert [b.name for b in list_bonds(nl)] == ["bond0"]


@pytest.mark.parametrize(("mode", "options", "code"), refusal_params())
def test_sim_refuses_as_the_lab_kernel(
    nl: FakeNetlink, mode: BondMode, options: BondOptions, code: int
) -> None:
    check_refusal(nl, "vf0", mode, options, code)


def test_sim_rounds_delays_and_self_enslave(nl: FakeNetlink) -> None:
    asked = BondOptions(miimon=100, updelay=250, downdelay=150, peer_notif_delay=130)
    nl.create_bond("bp", BondMode.ACTIVE_BACKUP, asked)
    opts = nl.bond("bp").options
    assert (opts.updelay, opts.downdelay, opts.peer_notif_delay) == (200, 100, 100)
    with pytest.raises(HostError) as err:
        nl.enslave("bp", "bp")
    assert err.value.errno == errno.EPERM
    with pytest.raises(HostError) as err:
        nl.set_port("vf0", PortOptions(queue_id=1))
    assert err.value.errno == errno.EOPNOTSUPP


def test_plan_bond_mtu_from_first_port(nl: FakeNetlink) -> None:
    plan = plan_bond(nl, _spec(ports=("vf2", "vf0")), validate=_no_rules)
    assert plan.mtu == 1400


def test_bond_kept_with_a_simulated_host_across_seams(tmp_path: Path) -> None:
    from test_fake_netlink import make_host  # noqa: PLC0415 - the hand-built tree helper

    root = make_host(tmp_path, [("eth0", "0000:01:00.0", "igb", 0),
                                ("eth1", "0000:01:00.1", "igb", 0)])  # fmt: skip
    (root / "sys/class/net/bonding_masters").write_text("\n")  # a file among the links
    spec = BondSpec("bond0", BondMode.IEEE_802_3AD, BondOptions(lacp_rate=LacpRate.FAST),
                    (BondPort("eth0"), BondPort("eth1")))  # fmt: skip
    create_bond(FakeNetlink(root), spec, validate=_no_rules)
    again = FakeNetlink(root)  # a second process: the world from the tree and the state file
    state = again.bond("bond0")
    assert state.port_names == ("eth0", "eth1") and state.options.lacp_rate is LacpRate.FAST
    assert "bonding_masters" not in again.link_names()
    assert again.link("eth1").master == state.index
    delete_bond(again, "bond0")
    assert FakeNetlink(root).bonds() == [] and FakeNetlink(root).link("eth0").master is None
