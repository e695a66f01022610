"""model/bond_status.py on hand-made texts: unknown speed, no active port, many ARP targets,
unknown lines, an older kernel's layout, incomplete blocks; garbage refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import (
    AdSelect,
    BondMode,
    FailOverMac,
    LacpRate,
    PrimaryReselect,
    XmitHashPolicy,
)
from sriovkit.model.bond_status import (
    ActiveAggregator,
    AdInfo,
    ChurnState,
    Duplex,
    Lacpdu,
    MiiStatus,
    SlaveStatus,
    parse_bond_status,
)

HANDMADE = Path(__file__).resolve().parents[1] / "fixtures" / "bonding" / "handmade"
MAC1, MAC2 = "02:00:00:00:01:00", "02:00:00:00:02:00"


def test_speed_and_duplex_unknown() -> None:
    status = parse_bond_status((HANDMADE / "speed-unknown.proc.txt").read_text())
    assert status.mode is BondMode.ACTIVE_BACKUP
    assert status.active_slave == "ens1f1v0"
    assert status.slaves == (
        SlaveStatus("ens1f0v0", MiiStatus.DOWN, None, None, 3, MAC1, 0),
        SlaveStatus("ens1f1v0", MiiStatus.UP, 100, Duplex.HALF, 0, MAC2, 2),
    )


def test_no_active_port_primary_down() -> None:
    status = parse_bond_status((HANDMADE / "no-active-primary-down.proc.txt").read_text())
    assert status.mode is BondMode.BALANCE_ALB
    assert (status.primary, status.primary_reselect) == ("eth4", PrimaryReselect.FAILURE)
    assert status.active_slave is None
    assert status.mii_status is MiiStatus.DOWN
    assert (status.miimon, status.updelay, status.downdelay) == (50, 100, 200)
    eth2, eth4 = status.slaves
    assert (eth2.mii_status, eth2.speed, eth2.link_failure_count) == (MiiStatus.DOWN, 10000, 7)
    assert (eth4.mii_status, eth4.speed) == (MiiStatus.GOING_BACK, 25000)
    assert (eth4.link_failure_count, eth4.queue_id) == (4294967295, 65535)


def test_arp_with_sixteen_targets_and_ns_targets() -> None:
    status = parse_bond_status((HANDMADE / "arp-many-targets.proc.txt").read_text())
    assert status.mode is BondMode.BALANCE_XOR
    assert status.xmit_hash_policy is XmitHashPolicy.VLAN_SRCMAC
    assert (status.miimon, status.arp_interval, status.arp_missed_max) == (0, 1000, 255)
    assert status.arp_ip_target is not None and len(status.arp_ip_target) == 16
    assert status.arp_ip_target[:4] == ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.4")
    assert status.arp_ip_target[-1] == "10.0.4.16"
    assert status.ns_ip6_target == ("2001:db8::1", "2001:db8:0:1::fe", "::ffff:10.0.0.1")
    assert [s.mii_status for s in status.slaves] == [MiiStatus.UP, MiiStatus.DOWN]
    assert status.slaves[1].link_failure_count == 12


def test_unknown_lines_are_kept_on_the_bond_and_on_their_port() -> None:
    status = parse_bond_status((HANDMADE / "unknown-lines.proc.txt").read_text())
    assert status.driver_version == "v7.3.0-future"
    assert status.fail_over_mac is FailOverMac.FOLLOW
    assert status.unknown == ("Coupled Control: on", "Peer Notification Count: 3")
    eth2, eth4 = status.slaves
    # A known line with a value that does not parse is kept too, its field left None.
    assert eth2.unknown == ("Speed: fast", "Slave Priority: 10", "\tan indented note")
    assert (eth2.speed, eth2.duplex, eth2.queue_id) == (None, Duplex.FULL, 0)
    assert eth4.unknown == ("MII Status: sideways",)
    assert (eth4.mii_status, eth4.speed) == (None, 1000)


def test_802_3ad_without_active_aggregator_and_a_port_without_aggregator() -> None:
    status = parse_bond_status((HANDMADE / "802.3ad-aggregator-na.proc.txt").read_text())
    assert status.name == "bond1"
    assert status.xmit_hash_policy is XmitHashPolicy.ENCAP2_3
    assert status.ad == AdInfo(
        lacp_rate=LacpRate.SLOW, ad_select=AdSelect.COUNT, lacp_active=False, min_links=2,
        system_priority=65535, system_mac=MAC1, active_aggregator=None,
    )  # fmt: skip
    eth2, eth4 = status.slaves
    assert (eth2.speed, eth2.duplex, eth2.aggregator_id) == (None, None, None)
    assert eth2.actor_churn_state is None and eth2.actor_lacpdu is None
    assert eth4.aggregator_id == 3
    assert (eth4.actor_churn_state, eth4.partner_churn_state) == (
        ChurnState.CHURNED, ChurnState.NONE,
    )  # fmt: skip
    assert (eth4.actor_churned_count, eth4.partner_churned_count) == (2, 1)
    assert eth4.actor_lacpdu == Lacpdu(65535, MAC1, 9, 255, 2, 61)
    assert eth4.partner_lacpdu == Lacpdu(32768, "52:54:00:aa:bb:cc", 17, 32768, 5, 63)


def test_the_name_given_by_the_caller_unless_the_text_says_it() -> None:
    text = (HANDMADE / "speed-unknown.proc.txt").read_text()
    assert parse_bond_status(text).name is None
    assert parse_bond_status(text, name="bond7").name == "bond7"
    text = (HANDMADE / "802.3ad-aggregator-na.proc.txt").read_text()
    assert parse_bond_status(text, name="bond7").name == "bond1"


def test_an_older_kernel_layout() -> None:
    status = parse_bond_status((HANDMADE / "old-kernel-802.3ad.proc.txt").read_text())
    assert status.driver_version == "v3.7.1 (April 27, 2011)"
    assert status.peer_notif_delay is None
    assert status.ad == AdInfo(
        lacp_rate=LacpRate.SLOW, ad_select=AdSelect.STABLE, lacp_active=None, min_links=0,
        active_aggregator=ActiveAggregator(1, 2, 17, 33, "52:54:00:aa:bb:cc"),
    )  # fmt: skip
    assert [(s.name, s.aggregator_id, s.queue_id) for s in status.slaves] == [
        ("eth0", 1, 0), ("eth1", 1, 0),
    ]  # fmt: skip
    assert all(s.unknown == () for s in status.slaves) and status.unknown == ()


def test_incomplete_blocks_are_kept_as_unknown_lines() -> None:
    status = parse_bond_status((HANDMADE / "incomplete-blocks.proc.txt").read_text())
    assert status.ad is not None and status.ad.active_aggregator is None
    assert status.unknown == (
        "Active Aggregator Info:", "\tAggregator ID: 1", "\tNumber of ports: 1",
    )  # fmt: skip
    (eth2,) = status.slaves
    assert eth2.actor_lacpdu is None and eth2.partner_lacpdu is None
    assert eth2.unknown == (
        "details actor lacp pdu:", "    system priority: 65535",
        f"    system mac address: {MAC1}", "    port key: 9",
    )  # fmt: skip
    assert (eth2.actor_churn_state, eth2.partner_churn_state) == (
        ChurnState.NONE, ChurnState.CHURNED,
    )  # fmt: skip


def test_crlf_and_missing_final_newline() -> None:
    text = (HANDMADE / "speed-unknown.proc.txt").read_text()
    assert parse_bond_status(text.replace("\n", "\r\n").rstrip()) == parse_bond_status(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "hello world\n",
        "Inter-|   Receive                            |  Transmit\n face |bytes    packets\n",
        "active-backup 1\n",
        "MII Status: up\nSlave Interface: eth2\nMII Status: up\n",
        "Ethernet Channel Bonding Driver: v6.12\n\nMII Status: up\n",
    ],
)
def test_not_a_bonding_status_is_refused_naming_the_input(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_bond_status(text, source="/proc/net/bonding/bond0")
    assert info.value.field == "/proc/net/bonding/bond0"
    assert "not a /proc/net/bonding status" in info.value.reason


def test_an_unknown_mode_is_refused_naming_it() -> None:
    text = "Ethernet Channel Bonding Driver: v6.12\n\nBonding Mode: quantum entanglement\n"
    with pytest.raises(InvalidInput) as info:
        parse_bond_status(text)
    assert info.value.field == "bonding status"
    assert "quantum entanglement" in info.value.reason


def test_binary_garbage_is_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_bond_status("\x00\x01\x02: \xff\n" * 50)
