"""model/bond.py: modes and options by the kernel's names and numbers, strings normalised."""

from __future__ import annotations

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import (
    ArpValidate,
    BondMode,
    BondPort,
    BondSpec,
    LacpRate,
    XmitHashPolicy,
    parse_option,
    parse_options,
    split_words,
)


@pytest.mark.parametrize(
    ("given", "mode"),
    [("balance-rr", 0), ("0", 0), (1, 1), ("ACTIVE-BACKUP", 1), ("802.3ad", 4),
     ("802.3ad 4", 4), ("balance-alb", 6), (6, 6)],
)  # fmt: skip
def test_modes_by_name_or_number_printed_by_name(given: object, mode: int) -> None:
    parsed = BondMode.parse(given, "mode")
    assert parsed == mode
    assert str(parsed) == ["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad",
                           "balance-tlb", "balance-alb"][mode]  # fmt: skip


@pytest.mark.parametrize("given", ["7", "lacp", "", True, "-1"])
def test_unknown_modes_are_refused_naming_the_choices(given: object) -> None:
    with pytest.raises(InvalidInput, match=r"invalid mode: .* is not one of balance-rr\(0\)"):
        BondMode.parse(given, "mode")


def test_strings_as_ifcfg_writes_them_are_normalised() -> None:
    opts = parse_options(split_words(
        "miimon=100 arp_ip_target=+10.0.0.1 arp_ip_target=10.0.0.2 lacp_rate=fast "
        "use_carrier=1 num_grat_arp=3 xmit_hash_policy=layer3+4 arp_validate=1"
    ))  # fmt: skip
    assert opts.miimon == 100
    assert opts.arp_ip_target == ("10.0.0.1", "10.0.0.2")
    assert opts.lacp_rate is LacpRate.FAST
    assert opts.use_carrier is True
    assert opts.num_peer_notif == 3
    assert opts.xmit_hash_policy is XmitHashPolicy.LAYER3_4
    assert opts.arp_validate is ArpValidate.ACTIVE
    assert dict(opts.words()) == {
        "miimon": "100", "use_carrier": "1", "arp_ip_target": "10.0.0.1,10.0.0.2",
        "arp_validate": "active", "xmit_hash_policy": "layer3+4", "num_peer_notif": "3",
        "lacp_rate": "fast",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("miimon", "fast", "invalid miimon: 'fast' is not a whole number"),
        ("resend_igmp", 256, "invalid resend_igmp: 256 is out of range 0-255"),
        ("ad_actor_sys_prio", "0", "invalid ad_actor_sys_prio: 0 is out of range 1-65535"),
        ("ad_user_port_key", 1024, "invalid ad_user_port_key: 1024 is out of range 0-1023"),
        ("arp_ip_target", "10.0.0.1,fe80::1", "invalid arp_ip_target: fe80::1 is not an IPv4"),
        ("arp_ip_target", ",".join(f"10.0.0.{i}" for i in range(1, 18)), "than the kernel.s 16"),
        ("ns_ip6_target", "10.0.0.1", "invalid ns_ip6_target: 10.0.0.1 is not an IPv6"),
        ("use_carrier", "maybe", "invalid use_carrier: 'maybe' is not 0/1"),
        ("ad_actor_system", "02:00:00:00:01", "invalid ad_actor_system: '02:00:00:00:01' is not"),
        ("lacp_rate", "medium", r"invalid lacp_rate: 'medium' is not one of slow\(0\), fast\(1\)"),
        ("bogus", "1", "invalid bogus: is not a bonding option the kernel knows"),
        ("peer_notif_delay", 300_001, "invalid peer_notif_delay: 300001 is out of range 0-300000"),
        ("min_links", 2**31, "invalid min_links: 2147483648 is out of range 0-2147483647"),
        ("arp_ip_target", "0.1.2.3", "invalid arp_ip_target: 0.1.2.3 cannot be a target"),
        ("arp_ip_target", "255.255.255.255", "invalid arp_ip_target: 255.255.255.255 cannot"),
        ("ns_ip6_target", "::1", "invalid ns_ip6_target: ::1 cannot be a target"),
    ],
)
def test_bad_values_name_the_option_and_the_reason(name: str, value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_option(name, value)


def test_an_option_given_twice_under_two_names_is_refused() -> None:
    message = r"invalid num_unsol_na: given twice \(as num_peer_notif\)"
    with pytest.raises(InvalidInput, match=message):
        parse_options({"num_grat_arp": "2", "num_unsol_na": "3"})


def test_a_spec_refuses_duplicate_ports_and_itself_as_port() -> None:
    with pytest.raises(InvalidInput, match="invalid port: eth1 given more than once"):
        BondSpec("bond0", BondMode.ACTIVE_BACKUP, ports=(BondPort("eth1"), BondPort("eth1")))
    with pytest.raises(InvalidInput, match="invalid port: the bond bond0 cannot be its own port"):
        BondSpec("bond0", BondMode.ACTIVE_BACKUP, ports=(BondPort("bond0"),))
