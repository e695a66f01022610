"""model/bond_status_format.py: the kernel's text back from a status, byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    USES_PRIMARY,
    ActiveAggregator,
    AdInfo,
    BondStatus,
    ChurnState,
    Duplex,
    Lacpdu,
    MiiStatus,
    SlaveStatus,
    parse_bond_status,
)
from sriovkit.model.bond_status_format import format_bond_status

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bonding"
REAL = sorted(FIXTURES.glob("*.proc.txt"))
# Hand-made texts in the kernel's own layout (the others have unknown lines or an old layout).
HANDMADE = [
    FIXTURES / "handmade" / f"{n}.proc.txt"
    for n in (
        "speed-unknown",
        "no-active-primary-down",
        "arp-many-targets",
        "802.3ad-aggregator-na",
    )
]


@pytest.mark.parametrize("path", REAL + HANDMADE, ids=lambda p: p.name)
def test_format_of_parse_is_the_kernels_text(path: Path) -> None:
    text = path.read_text()
    assert format_bond_status(parse_bond_status(text)) == text


def test_unknown_lines_come_after_their_part() -> None:
    text = (FIXTURES / "handmade" / "unknown-lines.proc.txt").read_text()
    out = format_bond_status(parse_bond_status(text))
    lines = out.splitlines()
    assert lines[lines.index("Peer Notification Delay (ms): 0") + 1 :][:2] == [
        "Coupled Control: on", "Peer Notification Count: 3",
    ]  # fmt: skip
    assert "Speed: Unknown" in lines  # the bad `Speed: fast` gave no speed ...
    assert "Speed: fast" in lines  # ... and is kept, at the end of eth2's block
    assert parse_bond_status(out).slaves[0].unknown == parse_bond_status(text).slaves[0].unknown


def test_no_active_aggregator_needs_the_bonds_name() -> None:
    ad = AdInfo(LacpRate.SLOW, AdSelect.STABLE, True, 0, 0, "00:00:00:00:00:00")
    status = BondStatus(mode=BondMode.IEEE_802_3AD, ad=ad)
    with pytest.raises(InvalidInput) as info:
        format_bond_status(status)
    assert info.value.field == "name"
    text = format_bond_status(BondStatus(mode=BondMode.IEEE_802_3AD, ad=ad, name="bond3"))
    assert "bond bond3 has no active aggregator\n" in text


def test_a_minimal_status_prints_the_kernels_defaults() -> None:
    assert format_bond_status(BondStatus(mode=BondMode.ACTIVE_BACKUP, driver_version="v6.12")) == (
        "Ethernet Channel Bonding Driver: v6.12\n\nBonding Mode: fault-tolerance (active-backup)\n"
        "Primary Slave: None\nCurrently Active Slave: None\nMII Status: down\n"
        "MII Polling Interval (ms): 0\nUp Delay (ms): 0\nDown Delay (ms): 0\n"
    )  # fmt: skip


# --- any status the kernel could print goes through text and back ---------------------------

names = st.from_regex(r"[a-z][a-z0-9]{0,8}[0-9]", fullmatch=True)
macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b)
)
u16 = st.integers(0, 65535)
counts = st.integers(0, 2**31 - 1)
ipv4s = st.ip_addresses(v=4).map(str).filter(lambda a: a != "0.0.0.0")
ipv6s = st.ip_addresses(v=6).map(str).filter(lambda a: a != "::")
lacpdus = st.builds(Lacpdu, u16, macs, u16, u16, u16, st.integers(0, 255))


@st.composite
def slaves(draw: st.DrawFn, name: str, lacp: bool) -> SlaveStatus:
    fields: dict[str, Any] = {
        "mii_status": draw(st.sampled_from(MiiStatus)),
        "speed": draw(st.none() | st.integers(0, 800_000)),
        "duplex": draw(st.none() | st.sampled_from(Duplex)),
        "link_failure_count": draw(st.integers(0, 2**32 - 1)),
        "permanent_hw_addr": draw(macs),
        "queue_id": draw(u16),
    }
    if lacp and draw(st.booleans()):
        fields["aggregator_id"] = draw(u16)
        if draw(st.booleans()):
            fields["actor_churn_state"] = draw(st.sampled_from(ChurnState))
            fields["partner_churn_state"] = draw(st.sampled_from(ChurnState))
            fields["actor_churned_count"] = draw(counts)
            fields["partner_churned_count"] = draw(counts)
            if draw(st.booleans()):
                fields["actor_lacpdu"] = draw(lacpdus)
                fields["partner_lacpdu"] = draw(lacpdus)
    return SlaveStatus(name, **fields)


@st.composite
def statuses(draw: st.DrawFn) -> BondStatus:
    mode = draw(st.sampled_from(BondMode))
    fields: dict[str, Any] = {
        "driver_version": draw(st.from_regex(r"v[0-9][0-9a-z.+_-]{0,30}", fullmatch=True)),
        "xmit_hash_policy": draw(st.none() | st.sampled_from(XmitHashPolicy)),
        "mii_status": draw(st.sampled_from([MiiStatus.UP, MiiStatus.DOWN])),
        "miimon": draw(counts), "updelay": draw(counts), "downdelay": draw(counts),
        "peer_notif_delay": draw(st.none() | counts),
    }  # fmt: skip
    if mode is BondMode.ACTIVE_BACKUP:
        fields["fail_over_mac"] = draw(st.none() | st.sampled_from(list(FailOverMac)[1:]))
    if mode in USES_PRIMARY:
        fields["primary"] = draw(st.none() | names)
        if fields["primary"] is not None:
            fields["primary_reselect"] = draw(st.sampled_from(PrimaryReselect))
        fields["active_slave"] = draw(st.none() | names)
    if draw(st.booleans()):
        fields["arp_interval"] = draw(counts)
        fields["arp_missed_max"] = draw(st.none() | st.integers(1, 255))
        fields["arp_ip_target"] = tuple(draw(st.lists(ipv4s, max_size=16)))
        fields["ns_ip6_target"] = draw(st.none() | st.lists(ipv6s, max_size=16).map(tuple))
    lacp = mode is BondMode.IEEE_802_3AD
    if lacp:
        ad: dict[str, Any] = {
            "lacp_rate": draw(st.sampled_from(LacpRate)),
            "ad_select": draw(st.sampled_from(AdSelect)),
            "lacp_active": draw(st.none() | st.booleans()),
            "min_links": draw(st.none() | counts),
        }
        if draw(st.booleans()):  # read with CAP_NET_ADMIN
            ad["system_priority"] = draw(u16)
            ad["system_mac"] = draw(macs)
            ad["active_aggregator"] = draw(
                st.none() | st.builds(ActiveAggregator, u16, u16, u16, u16, macs)
            )
            if ad["active_aggregator"] is None:
                fields["name"] = draw(names)
        fields["ad"] = AdInfo(**ad)
    ports = draw(st.lists(names, max_size=5, unique=True))
    fields["slaves"] = tuple(draw(slaves(n, lacp)) for n in ports)
    return BondStatus(mode=mode, **fields)


@given(statuses())
def test_any_status_goes_through_its_text_and_back(status: BondStatus) -> None:
    text = format_bond_status(status)
    assert parse_bond_status(text) == status
    assert format_bond_status(parse_bond_status(text)) == text
