"""model/bond_files: model -> files -> model for every format; nothing dropped silently."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sriovkit.model.bond import (
    OPTIONS,
    BondMode,
    BondOptions,
    BondPort,
    BondSpec,
    PortOptions,
    parse_options,
)
from sriovkit.model.bond_files import FORMATS, parse, render, without

EVERY_OPTION = {
    "miimon": 100, "updelay": 200, "downdelay": 300, "peer_notif_delay": 400, "use_carrier": 0,
    "arp_interval": 250, "arp_ip_target": "10.0.0.1,10.0.0.2", "ns_ip6_target": "fd00::1,fd00::2",
    "arp_validate": "backup", "arp_all_targets": "all", "arp_missed_max": 3, "primary": "eth1",
    "primary_reselect": "better", "fail_over_mac": "active", "xmit_hash_policy": "layer3+4",
    "resend_igmp": 5, "num_peer_notif": 2, "all_slaves_active": 1, "min_links": 1,
    "lp_interval": 7, "packets_per_slave": 4, "lacp_rate": "fast", "lacp_active": 0,
    "ad_select": "count", "ad_actor_sys_prio": 100, "ad_user_port_key": 12,
    "ad_actor_system": "02:00:00:00:00:01", "tlb_dynamic_lb": 0, "coupled_control": 0,
    "active_slave": "eth2",
}  # fmt: skip
PORTS = (
    BondPort("eth1", PortOptions(queue_id=1, prio=10)),
    BondPort("eth2", PortOptions(queue_id=2, prio=-3)),
    BondPort("ens1f0v3"),
)


def _every(mode: BondMode, **over: object) -> BondSpec:
    return BondSpec("bond0", mode, parse_options({**EVERY_OPTION, **over}), PORTS)


SPECS = {
    **{f"every-{m.label}": _every(m) for m in BondMode},
    "true-bools": _every(BondMode.BALANCE_TLB, use_carrier=1, lacp_active=1, tlb_dynamic_lb=1,
                         coupled_control=1, all_slaves_active=0),
    "filter-validate": _every(BondMode.ACTIVE_BACKUP, arp_validate="filter_active"),
    "primary-not-a-port": _every(BondMode.ACTIVE_BACKUP, primary="eth9", active_slave="eth8"),
    "sixteen-targets": _every(BondMode.IEEE_802_3AD,
                              arp_ip_target=",".join(f"192.0.2.{i}" for i in range(1, 17)),
                              ns_ip6_target="2001:db8::1"),
    "zeros": _every(BondMode.BALANCE_RR, miimon=0, updelay=0, downdelay=0, arp_interval=0,
                    min_links=0, resend_igmp=0, ad_user_port_key=0, packets_per_slave=0),
    "bare": BondSpec("bond1", BondMode.BROADCAST),
    "few": BondSpec("uplink", BondMode.IEEE_802_3AD, BondOptions(miimon=100),
                    (BondPort("ens1f0v0"), BondPort("ens1f1v0"))),
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", list(SPECS))
def test_a_round_trip_is_identity_for_all_the_format_can_express(fmt: str, name: str) -> None:
    spec = SPECS[name]
    rendered = render(spec, fmt)
    parsed = parse(fmt, rendered.files)
    assert parsed.spec == without(spec, rendered.unsupported)
    assert parsed.unknown == ()
    # and explicitly: every option either survives or is named, with a reason
    named = {(u.port, u.option) for u in rendered.unsupported}
    assert all(u.reason for u in rendered.unsupported)
    for option, value in spec.options.given():
        assert getattr(parsed.spec.options, option) == value or (None, option) in named
    kept = {p.name: p for p in parsed.spec.ports}
    for port in spec.ports:
        if (port.name, "port") in named:
            assert port.name not in kept
            continue
        for option in ("queue_id", "prio"):
            value = getattr(port.options, option)
            assert getattr(kept[port.name].options, option) == value or (port.name, option) in named


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_rendering_is_deterministic_and_a_second_trip_changes_nothing(fmt: str) -> None:
    spec = SPECS["every-active-backup"]
    first = render(spec, fmt)
    assert render(spec, fmt) == first
    again = render(parse(fmt, first.files).spec, fmt)
    assert again.files == first.files


EXPECTED_UNSUPPORTED = {
    "ifcfg": {"coupled_control"},
    "modprobe": {"peer_notif_delay", "ns_ip6_target", "arp_missed_max", "lacp_active",
                 "ad_actor_sys_prio", "ad_user_port_key", "ad_actor_system", "coupled_control",
                 "active_slave", "port eth1", "port eth2", "port ens1f0v3"},
    "nm": {"coupled_control"},
    "networkd": {"use_carrier", "ns_ip6_target", "lacp_active", "coupled_control",
                 "peer_notif_delay", "port eth1 queue_id", "port eth1 prio", "port eth2 queue_id",
                 "port eth2 prio"},
    "interfaces": {"peer_notif_delay", "ns_ip6_target", "arp_missed_max", "lacp_active",
                   "coupled_control", "port eth1 queue_id", "port eth1 prio",
                   "port eth2 queue_id", "port eth2 prio"},
}  # fmt: skip


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_what_each_format_cannot_express_is_pinned(fmt: str) -> None:
    rendered = render(SPECS["every-802.3ad"], fmt)
    got = {str(u).partition(":")[0] for u in rendered.unsupported}
    assert got == EXPECTED_UNSUPPORTED[fmt]


def test_networkd_names_the_values_and_names_it_cannot_write() -> None:
    rendered = render(SPECS["filter-validate"], "networkd")
    assert "arp_validate: ARPValidate= takes none, active, backup or all, not filter_active" in {
        str(u) for u in rendered.unsupported
    }
    rendered = render(SPECS["primary-not-a-port"], "networkd")
    reasons = {u.option: u.reason for u in rendered.unsupported}
    assert "eth9 is not a port" in reasons["primary"]
    assert "eth8 is not a port" in reasons["active_slave"]


def test_every_kernel_option_is_in_the_full_spec() -> None:
    assert set(EVERY_OPTION) == set(OPTIONS)
    assert replace(SPECS["every-balance-rr"].options) == parse_options(EVERY_OPTION)
