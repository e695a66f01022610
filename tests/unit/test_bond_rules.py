"""model/bond_rules.py: the validation matrix, every rule on its refused and its accepted side.

Each refusal is checked for the option it names (`InvalidInput.field`) and a fragment of the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import (
    OPTIONS,
    BondMode,
    BondOptions,
    BondPort,
    BondSpec,
    PortOptions,
    option_word,
    parse_option,
    parse_options,
)
from sriovkit.model.bond_rules import (
    ARP_MODES,
    OPTION_MODES,
    PORT_OPTION_MODES,
    SET_WHILE_DOWN,
    SET_WITHOUT_PORTS,
    effective_miimon,
    kernel_defaults,
    validate,
    validate_change,
)

MODES = list(BondMode)
AB, AD, ALB, TLB = (BondMode.ACTIVE_BACKUP, BondMode.IEEE_802_3AD, BondMode.BALANCE_ALB,
                    BondMode.BALANCE_TLB)  # fmt: skip
RR, XOR, BCAST = BondMode.BALANCE_RR, BondMode.BALANCE_XOR, BondMode.BROADCAST
ARP = {"arp_interval": 1000, "arp_ip_target": "10.0.0.1"}
PORTS = ("eth0", "eth1")


def spec(mode: BondMode, ports: tuple[str, ...] = (), **given: object) -> BondSpec:
    return BondSpec("bond0", mode, parse_options(given), tuple(BondPort(p) for p in ports))


def refused(bond: BondSpec, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(bond)
    assert caught.value.field == field, str(caught.value)
    assert fragment in caught.value.reason, str(caught.value)


# What makes each mode-bound option valid in the modes it belongs to.
CONTEXT: dict[str, dict[str, Any]] = {
    "arp_interval": dict(ARP),
    "arp_validate": {**ARP, "arp_validate": "all"},
    "arp_missed_max": {**ARP, "arp_missed_max": 3},
    "arp_ip_target": dict(ARP),
    "ns_ip6_target": {"arp_interval": 1000, "ns_ip6_target": "fd00::1"},
    "arp_all_targets": {**ARP, "arp_validate": "active", "arp_all_targets": "all"},
    "primary": {"miimon": 100, "primary": "eth0"},
    "active_slave": {"miimon": 100, "active_slave": "eth1"},
    "primary_reselect": {"miimon": 100, "primary_reselect": "better"},
    "fail_over_mac": {"miimon": 100, "fail_over_mac": "active"},
    "xmit_hash_policy": {"miimon": 100, "xmit_hash_policy": "layer3+4"},
    "resend_igmp": {"miimon": 100, "resend_igmp": 3},
    "num_peer_notif": {"miimon": 100, "num_peer_notif": 2},
    "peer_notif_delay": {"miimon": 100, "peer_notif_delay": 200},
    "min_links": {"min_links": 2},
    "lp_interval": {"lp_interval": 5},
    "packets_per_slave": {"miimon": 100, "packets_per_slave": 0},
    "lacp_rate": {"lacp_rate": "fast"},
    "lacp_active": {"lacp_active": "off"},
    "ad_select": {"ad_select": "bandwidth"},
    "ad_actor_sys_prio": {"ad_actor_sys_prio": 100},
    "ad_user_port_key": {"ad_user_port_key": 1023},
    "ad_actor_system": {"ad_actor_system": "02:00:00:00:00:01"},
    "tlb_dynamic_lb": {"tlb_dynamic_lb": 0},
    "coupled_control": {"coupled_control": 0},
}
ALONE = {name: {name: ctx[name]} for name, ctx in CONTEXT.items() if name in ctx}
ALONE["ns_ip6_target"] = {"ns_ip6_target": "fd00::1"}


def test_every_mode_bound_option_has_a_context() -> None:
    assert set(CONTEXT) == set(OPTION_MODES)
    assert set(OPTION_MODES) < set(OPTIONS)


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("name", sorted(OPTION_MODES))
def test_each_option_in_each_mode(name: str, mode: BondMode) -> None:
    """Accepted in its modes (with what it needs); elsewhere refused, naming it and the modes."""
    rule = OPTION_MODES[name]
    if mode in rule.modes:
        given = dict(CONTEXT[name])
        if name == "xmit_hash_policy" and mode is ALB:
            given["tlb_dynamic_lb"] = 0  # alb uses the hash only without dynamic balancing
        validate(spec(mode, PORTS, **given))
        return
    fragment = (f"not supported in mode {mode}: the kernel refuses it outside" if rule.kernel
                else f"has no effect in mode {mode}, only in")  # fmt: skip
    refused(spec(mode, PORTS, **ALONE[name]), name, fragment)


@pytest.mark.parametrize(
    ("name", "modes"),
    [("packets_per_slave", {RR}), ("primary", {AB, TLB, ALB}), ("active_slave", {AB, TLB, ALB}),
     ("arp_interval", {RR, AB, XOR, BCAST}), ("arp_validate", {RR, AB, XOR, BCAST}),
     ("arp_missed_max", {RR, AB, XOR, BCAST}), ("lacp_rate", {AD}), ("lacp_active", {AD}),
     ("ad_actor_sys_prio", {AD}), ("ad_user_port_key", {AD}), ("ad_actor_system", {AD}),
     ("coupled_control", {AD}), ("tlb_dynamic_lb", {TLB, ALB})],
)  # fmt: skip
def test_the_kernels_own_mode_refusals(name: str, modes: set[BondMode]) -> None:
    """bond_options.c `unsuppmodes`: these the kernel refuses itself (EACCES) in other modes."""
    assert OPTION_MODES[name].kernel
    assert OPTION_MODES[name].modes == modes


@pytest.mark.parametrize(
    ("name", "modes"),
    [("xmit_hash_policy", {XOR, AD, TLB, ALB}), ("min_links", {AD}), ("lp_interval", {TLB, ALB}),
     ("fail_over_mac", {AB}), ("num_peer_notif", {AB}), ("peer_notif_delay", {AB}),
     ("primary_reselect", {AB, TLB, ALB}), ("ad_select", {AD}), ("resend_igmp", {RR, AB, TLB, ALB}),
     ("arp_all_targets", {AB}), ("arp_ip_target", ARP_MODES), ("ns_ip6_target", ARP_MODES)],
)  # fmt: skip
def test_the_no_effect_mode_rules_from_bonding_rst(name: str, modes: set[BondMode]) -> None:
    assert not OPTION_MODES[name].kernel
    assert OPTION_MODES[name].modes == modes


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize(
    "given",
    [{"miimon": 100}, {"miimon": 100, "updelay": 200, "downdelay": 100},
     {"miimon": 100, "use_carrier": 1}, {"miimon": 50, "all_slaves_active": 1}],
)  # fmt: skip
def test_options_good_in_every_mode(mode: BondMode, given: dict[str, object]) -> None:
    validate(spec(mode, PORTS, **given))


@pytest.mark.parametrize("mode", sorted(ARP_MODES), ids=str)
def test_miimon_and_arp_interval_are_exclusive(mode: BondMode) -> None:
    """bond_changelink: "ARP monitoring cannot be used with MII monitoring" (EINVAL)."""
    refused(spec(mode, miimon=100, **ARP), "arp_interval", "cannot be used with miimon 100")
    validate(spec(mode, miimon=0, **ARP))
    validate(spec(mode, **ARP))


@pytest.mark.parametrize("mode", [AD, TLB, ALB], ids=str)
def test_arp_monitoring_is_refused_in_ad_tlb_alb(mode: BondMode) -> None:
    refused(spec(mode, **ARP), "arp_interval", "ARP monitoring cannot be used with ALB/TLB/802.3ad")


def test_arp_interval_needs_a_target() -> None:
    refused(spec(AB, arp_interval=1000), "arp_ip_target", "needs at least one arp_ip_target")
    validate(spec(AB, arp_interval=1000, ns_ip6_target="fd00::1"))
    validate(spec(AB, arp_interval=1000, arp_ip_target="10.0.0.1,10.0.0.2"))


@pytest.mark.parametrize(
    ("name", "value"),
    [("arp_validate", "all"), ("arp_validate", "none"), ("arp_all_targets", "any"),
     ("arp_missed_max", 2), ("arp_ip_target", "10.0.0.1"), ("ns_ip6_target", "fd00::1")],
)  # fmt: skip
@pytest.mark.parametrize("mode", [RR, AB, XOR, BCAST], ids=str)
def test_arp_options_need_arp_monitoring(name: str, value: object, mode: BondMode) -> None:
    if name == "arp_all_targets" and mode is not AB:
        refused(spec(mode, miimon=100, **{name: value}), name, "has no effect in mode")
        return
    refused(spec(mode, miimon=100, **{name: value}), name, "needs ARP monitoring (arp_interval > 0")


def test_arp_validate_with_miimon_says_the_kernel_refuses_it() -> None:
    refused(spec(AB, miimon=100, arp_validate="active"), "arp_validate",
            "the kernel refuses arp_validate with miimon")  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        validate(spec(AB, miimon=100, arp_validate="none"))
    assert "kernel refuses" not in caught.value.reason  # none with miimon: kernel takes it


def test_an_empty_target_list_is_not_an_arp_option() -> None:
    validate(spec(AB, miimon=100, arp_ip_target="", ns_ip6_target=""))


@pytest.mark.parametrize("validate_value", [None, "none"])
def test_arp_all_targets_needs_arp_validate(validate_value: str | None) -> None:
    """bonding.rst: it "affects only active-backup mode for slaves with arp_validation enabled"."""
    given: dict[str, object] = {**ARP, "arp_all_targets": "all"}
    if validate_value:
        given["arp_validate"] = validate_value
    refused(spec(AB, **given), "arp_all_targets", "needs arp_validate (other than none)")
    validate(spec(AB, **{**given, "arp_validate": "backup"}))


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_miimon_0_without_arp_leaves_no_link_monitoring(mode: BondMode) -> None:
    refused(spec(mode, miimon=0), "miimon", "without link monitoring")
    if mode in ARP_MODES:
        validate(spec(mode, miimon=0, **ARP))


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("name", ["updelay", "downdelay", "peer_notif_delay"])
def test_delays_are_multiples_of_miimon(name: str, mode: BondMode) -> None:
    """_bond_option_delay_set keeps value // miimon: a non-multiple rounds down."""
    if name == "peer_notif_delay" and mode is not AB:
        return  # mode rule, in the matrix above
    validate(spec(mode, miimon=100, **{name: 300}))
    validate(spec(mode, miimon=100, **{name: 0}))
    refused(spec(mode, miimon=100, **{name: 250}), name,
            "250 is not a multiple of miimon 100: the kernel would round it down to 200 ms "
            "(give 200 or 300)")  # fmt: skip
    refused(spec(mode, miimon=30, **{name: 100}), name, "round it down to 90 ms (give 90 or 120)")


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("name", ["updelay", "downdelay"])
def test_delays_against_the_modes_default_miimon(name: str, mode: BondMode) -> None:
    """miimon not given: 100 where the mode has no ARP monitoring (bond_option_mode_set), else 0."""
    if mode in ARP_MODES:
        refused(spec(mode, **{name: 200}), name,
                f"miimon is 0 (by default in mode {mode}): without it {name} means nothing; "
                "the kernel refuses it (EPERM)")  # fmt: skip
    else:
        validate(spec(mode, **{name: 200}))
        refused(spec(mode, **{name: 150}), name, "not a multiple of miimon 100")


@pytest.mark.parametrize("name", ["updelay", "downdelay", "peer_notif_delay", "use_carrier"])
def test_mii_options_mean_nothing_with_arp_monitoring(name: str) -> None:
    value = 1 if name == "use_carrier" else 200
    refused(spec(AB, **ARP, **{name: value}), name, "miimon is 0 (as ARP monitoring is on)")
    refused(spec(AB, miimon=0, **ARP, **{name: value}), name, "miimon is 0 (given)")
    with pytest.raises(InvalidInput) as caught:
        validate(spec(AB, **ARP, **{name: value}))
    assert ("EPERM" in caught.value.reason) == (name != "use_carrier")


def test_effective_miimon() -> None:
    assert [effective_miimon(m, BondOptions()) for m in MODES] == [0, 0, 0, 0, 100, 100, 100]
    assert effective_miimon(AD, BondOptions(miimon=0)) == 0
    assert effective_miimon(AB, BondOptions(arp_interval=100)) == 0
    assert effective_miimon(AB, BondOptions(miimon=50)) == 50


@pytest.mark.parametrize("dynamic", [None, 1])
def test_xmit_hash_policy_in_alb_needs_tlb_dynamic_lb_off(dynamic: int | None) -> None:
    given: dict[str, object] = {"xmit_hash_policy": "layer2+3"}
    if dynamic is not None:
        given["tlb_dynamic_lb"] = dynamic
    refused(spec(ALB, **given), "xmit_hash_policy", "only used with tlb_dynamic_lb=0")
    validate(spec(ALB, xmit_hash_policy="layer2+3", tlb_dynamic_lb=0))
    validate(spec(TLB, **given))  # tlb hashes its flows onto ports either way


@pytest.mark.parametrize(
    ("mac", "fragment"),
    [("01:00:5e:00:00:01", "is a multicast address"), ("03:00:00:00:00:00", "multicast"),
     ("ff:ff:ff:ff:ff:ff", "multicast"), ("00:00:00:00:00:00", "means the bond's own MAC")],
)  # fmt: skip
def test_ad_actor_system_not_multicast_not_zero(mac: str, fragment: str) -> None:
    refused(spec(AD, ad_actor_system=mac), "ad_actor_system", fragment)


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01", "00:1b:21:aa:bb:cc"])
def test_ad_actor_system_unicast(mac: str) -> None:
    validate(spec(AD, ad_actor_system=mac))


@pytest.mark.parametrize("mode", [AB, TLB, ALB], ids=str)
@pytest.mark.parametrize("name", ["primary", "active_slave"])
def test_primary_and_active_slave_name_a_port(name: str, mode: BondMode) -> None:
    refused(spec(mode, PORTS, **{name: "eth9"}), name, "eth9 is not one of the bond's ports")
    validate(spec(mode, PORTS, **{name: "eth1"}))


def test_primary_may_name_a_port_to_come_but_active_slave_may_not() -> None:
    """The kernel records a primary not yet enslaved; it only makes an enslaved port active."""
    validate(spec(AB, miimon=100, primary="eth0"))
    refused(spec(AB, miimon=100, active_slave="eth0"), "active_slave", "and it has none")


def test_min_links_against_the_ports() -> None:
    refused(spec(AD, PORTS, min_links=3), "min_links", "3 is more than the bond's 2 ports")
    validate(spec(AD, PORTS, min_links=2))
    validate(spec(AD, min_links=3))  # ports unknown yet


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_port_prio_only_where_a_port_is_chosen_active(mode: BondMode) -> None:
    """BOND_OPT_PRIO: active-backup, balance-tlb, balance-alb (kernel 6.0+)."""
    bond = BondSpec("bond0", mode, BondOptions(miimon=100),
                    (BondPort("eth0", PortOptions(prio=10)), BondPort("eth1")))  # fmt: skip
    if mode in PORT_OPTION_MODES["prio"].modes:
        validate(bond)
    else:
        refused(bond, "prio (port eth0)", "the kernel refuses it outside active-backup")


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_queue_ids_any_mode_but_not_twice(mode: BondMode) -> None:
    def with_queues(a: int, b: int) -> BondSpec:
        ports = (
            BondPort("eth0", PortOptions(queue_id=a)),
            BondPort("eth1", PortOptions(queue_id=b)),
        )
        return BondSpec("bond0", mode, BondOptions(miimon=100), ports)

    validate(with_queues(1, 2))
    validate(with_queues(0, 0))
    refused(with_queues(3, 3), "queue_id (port eth1)", "3 is already the queue of port eth0")


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_kernel_defaults(mode: BondMode) -> None:
    """Every option of the mode has its default, in range; options of other modes are None."""
    defaults = kernel_defaults(mode)
    for name in OPTIONS:
        value = getattr(defaults, name)
        rule = OPTION_MODES.get(name)
        if name in ("primary", "active_slave"):
            assert value is None  # none until asked
        elif rule is not None and mode not in rule.modes:
            assert value is None, name
        else:
            assert value is not None, name
            assert parse_option(name, option_word(value)) == (name, value)
    assert defaults.miimon == (0 if mode in ARP_MODES else 100)
    assert defaults.updelay == 0
    assert defaults.use_carrier is True


def test_kernel_defaults_values() -> None:
    ad = kernel_defaults(AD)
    assert (ad.lacp_rate.label, ad.lacp_active, ad.ad_select.label) == ("slow", True, "stable")  # type: ignore[union-attr]
    assert (ad.ad_actor_sys_prio, ad.ad_user_port_key, ad.min_links) == (65535, 0, 0)
    assert ad.xmit_hash_policy is not None and ad.xmit_hash_policy.label == "layer2"
    ab = kernel_defaults(AB)
    assert (ab.arp_missed_max, ab.num_peer_notif, ab.resend_igmp) == (2, 1, 1)
    assert ab.arp_validate is not None and ab.arp_validate.label == "none"
    assert ab.fail_over_mac is not None and ab.fail_over_mac.label == "none"
    assert kernel_defaults(RR).packets_per_slave == 1
    alb = kernel_defaults(ALB)
    assert (alb.tlb_dynamic_lb, alb.lp_interval) == (True, 1)


# ---- changes on an existing bond ----------------------------------------------------------


def opts(**given: object) -> BondOptions:
    return parse_options(given)


@pytest.mark.parametrize("name", sorted(SET_WHILE_DOWN))
def test_change_of_an_ifdown_option_on_an_up_bond(name: str) -> None:
    """BOND_OPTFLAG_IFDOWN: EBUSY while the bond is up."""
    mode = ALB if name == "tlb_dynamic_lb" else AD
    change = parse_options({name: CONTEXT[name][name]})
    with pytest.raises(InvalidInput, match="only change while the bond is down") as caught:
        validate_change(mode, BondOptions(), change, up=True)
    assert caught.value.field == name
    assert validate_change(mode, BondOptions(), change, up=False) == change


@pytest.mark.parametrize("name", sorted(SET_WITHOUT_PORTS))
def test_change_of_a_noslaves_option_with_ports(name: str) -> None:
    change = opts(miimon=100, fail_over_mac="follow")
    with pytest.raises(InvalidInput, match="only change while the bond has no ports") as caught:
        validate_change(AB, BondOptions(), change, ports=PORTS)
    assert caught.value.field == name
    assert validate_change(AB, BondOptions(), change, ports=()) == change


def test_change_refused_by_mode() -> None:
    with pytest.raises(InvalidInput, match="not supported in mode active-backup") as caught:
        validate_change(AB, opts(miimon=100), opts(lacp_rate="fast"))
    assert caught.value.field == "lacp_rate"


def test_change_from_mii_to_arp_must_be_explicit() -> None:
    current = opts(miimon=100, updelay=200, use_carrier=1)
    with pytest.raises(InvalidInput, match="would switch MII monitoring off") as caught:
        validate_change(AB, current, opts(**ARP))
    assert caught.value.field == "arp_interval"
    result = validate_change(AB, current, opts(miimon=0, **ARP))
    assert (result.miimon, result.arp_interval, result.updelay, result.use_carrier) == (
        0, 1000, None, None)  # fmt: skip


def test_change_from_arp_to_mii_must_be_explicit() -> None:
    current = opts(arp_validate="all", arp_missed_max=3, **ARP)
    with pytest.raises(InvalidInput, match="would switch ARP monitoring off") as caught:
        validate_change(AB, current, opts(miimon=100))
    assert caught.value.field == "miimon"
    result = validate_change(AB, current, opts(miimon=100, arp_interval=0))
    assert result == opts(miimon=100, arp_interval=0)


def test_change_of_miimon_that_would_rescale_a_delay() -> None:
    """The kernel holds updelay as a count of miimon intervals: 200 at 100 becomes 100 at 50."""
    current = opts(miimon=100, updelay=200, downdelay=0)
    with pytest.raises(InvalidInput, match="rescale updelay from 200 to 100 ms") as caught:
        validate_change(AB, current, opts(miimon=50))
    assert caught.value.field == "updelay"
    assert validate_change(AB, current, opts(miimon=50, updelay=200)).updelay == 200
    assert validate_change(AB, opts(miimon=100), opts(miimon=50)).miimon == 50
    with pytest.raises(InvalidInput, match="rescale downdelay from 300 to 150"):
        validate_change(AD, opts(downdelay=300), opts(miimon=50))  # against the default 100


def test_change_checked_as_a_whole() -> None:
    with pytest.raises(InvalidInput, match="would round it down to 100 ms") as caught:
        validate_change(AB, opts(miimon=100), opts(updelay=150))
    assert caught.value.field == "updelay"
    result = validate_change(AB, opts(miimon=100), opts(updelay=300, primary="eth0"), ports=PORTS)
    assert result == opts(miimon=100, updelay=300, primary="eth0")
    with pytest.raises(InvalidInput, match="not one of the bond's ports"):
        validate_change(AB, opts(miimon=100), opts(active_slave="eth7"), ports=PORTS)
