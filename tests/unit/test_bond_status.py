"""model/bond_status.py against every real /proc/net/bonding text captured from the lab's kernel.

The fixtures (tests/fixtures/bonding/, see its README.md) come from Debian's 6.12 kernel with
QEMU's igb VFs as ports; each is parsed to exactly the status written out here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
    BondStatus,
    ChurnState,
    Duplex,
    Lacpdu,
    LacpState,
    MiiStatus,
    SlaveStatus,
    parse_bond_status,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bonding"
VERSION = "v6.12.118+deb12-amd64"
ZERO_MAC = "00:00:00:00:00:00"
# The VFs' MACs in the two guest runs (see the fixtures' README).
RUN1 = {"eth2": "f2:f5:bf:5f:6f:d5", "eth4": "8e:67:71:f9:f9:b4"}
RUN2 = {
    "eth2": "86:08:07:17:06:0d", "eth4": "32:3e:b5:a2:61:b1",
    "eth3": "82:56:10:a5:f7:df", "eth5": "0e:3d:55:21:e7:3e",
}  # fmt: skip

UP, DOWN = MiiStatus.UP, MiiStatus.DOWN
AB, RR, XOR = BondMode.ACTIVE_BACKUP, BondMode.BALANCE_RR, BondMode.BALANCE_XOR
AD, TLB, ALB = BondMode.IEEE_802_3AD, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB


def port(name: str, macs: dict[str, str], **fields: Any) -> SlaveStatus:
    """A port as the lab shows it: 1000 Mbps full duplex (also when down), queue 0, no failure."""
    values: dict[str, Any] = {
        "mii_status": UP, "speed": 1000, "duplex": Duplex.FULL, "link_failure_count": 0,
        "permanent_hw_addr": macs[name], "queue_id": 0,
    }  # fmt: skip
    return SlaveStatus(name=name, **{**values, **fields})


def lacp_port(
    name: str, aggregator: int, number: int, key: int, state: int, *, prio: int = 65535,
    privileged: bool = True, **fields: Any,
) -> SlaveStatus:  # fmt: skip
    """An 802.3ad port of the first run with no partner: its own aggregator, partner defaulted."""
    lacp: dict[str, Any] = {
        "aggregator_id": aggregator,
        "actor_churn_state": ChurnState.MONITORING,
        "partner_churn_state": ChurnState.MONITORING,
        "actor_churned_count": 0,
        "partner_churned_count": 0,
    }
    if privileged:
        lacp["actor_lacpdu"] = Lacpdu(prio, RUN1["eth2"], key, 255, number, state)
        lacp["partner_lacpdu"] = Lacpdu(65535, ZERO_MAC, 1, 255, 1, 2)
    return port(name, RUN1, **{**lacp, **fields})


def bond(mode: BondMode, *slaves: SlaveStatus, **fields: Any) -> BondStatus:
    """A bond as the lab's kernel prints it: miimon 100, no delays."""
    values: dict[str, Any] = {
        "driver_version": VERSION, "mii_status": UP, "miimon": 100, "updelay": 0,
        "downdelay": 0, "peer_notif_delay": 0,
    }  # fmt: skip
    return BondStatus(mode=mode, slaves=slaves, **{**values, **fields})


def two(macs: dict[str, str] = RUN1, **fields: Any) -> tuple[SlaveStatus, SlaveStatus]:
    return port("eth2", macs, **fields), port("eth4", macs, **fields)


AD_DEFAULT = AdInfo(
    lacp_rate=LacpRate.SLOW, ad_select=AdSelect.STABLE, lacp_active=True, min_links=0,
    system_priority=65535, system_mac=RUN1["eth2"],
    active_aggregator=ActiveAggregator(1, 1, 9, 1, ZERO_MAC),
)  # fmt: skip
AD_FAST = AdInfo(
    lacp_rate=LacpRate.FAST, ad_select=AdSelect.BANDWIDTH, lacp_active=True, min_links=1,
    system_priority=1000, system_mac=RUN1["eth2"],
    active_aggregator=ActiveAggregator(1, 1, 329, 1, ZERO_MAC),
)  # fmt: skip
ARP_BOND = {"miimon": 0, "primary": None, "active_slave": "eth2"}

EXPECTED: dict[str, BondStatus] = {
    # Each mode, two ports up.
    "balance-rr": bond(RR, *two()),
    "active-backup": bond(AB, *two(), active_slave="eth2"),
    "balance-xor": bond(XOR, *two(), xmit_hash_policy=XmitHashPolicy.LAYER2),
    "broadcast": bond(BondMode.BROADCAST, *two()),
    "802.3ad": bond(
        AD,
        lacp_port("eth2", 1, 1, 9, 205),
        lacp_port("eth4", 2, 2, 9, 197),
        xmit_hash_policy=XmitHashPolicy.LAYER2,
        ad=AD_DEFAULT,
    ),
    "balance-tlb": bond(TLB, *two(), active_slave="eth2"),
    "balance-alb": bond(ALB, *two(), active_slave="eth4"),
    # ARP monitoring: nobody answers the three targets, so no port comes up.
    "active-backup-arp": bond(
        AB,
        port("eth2", RUN1, mii_status=MiiStatus.GOING_BACK),
        port("eth4", RUN1, mii_status=MiiStatus.GOING_DOWN),
        **{**ARP_BOND, "active_slave": None},
        mii_status=DOWN,
        arp_interval=100,
        arp_missed_max=3,
        arp_ip_target=("192.0.2.1", "192.0.2.2", "198.51.100.7"),
        ns_ip6_target=(),
    ),
    "active-backup-arp-ns": bond(
        AB,
        port("eth2", RUN1, link_failure_count=1),
        port("eth4", RUN1, link_failure_count=2),
        **ARP_BOND,
        arp_interval=250,
        arp_missed_max=2,
        arp_ip_target=("192.0.2.1",),
        ns_ip6_target=("2001:db8::1", "fe80::2"),
    ),
    # Ports down, no active port, no ports.
    "active-backup-port-down": bond(
        AB,
        port("eth2", RUN1, mii_status=DOWN, link_failure_count=1),
        port("eth4", RUN1),
        active_slave="eth4",
    ),
    "active-backup-no-active": bond(
        AB, *two(mii_status=DOWN, link_failure_count=1), mii_status=DOWN, active_slave=None
    ),
    "active-backup-no-ports": bond(AB, mii_status=DOWN),
    # 802.3ad options, the same bond unprivileged, then with a port down; no ports.
    "802.3ad-fast-l34": bond(
        AD,
        lacp_port("eth2", 1, 1, 329, 207, prio=1000),
        lacp_port("eth4", 2, 2, 329, 199, prio=1000),
        xmit_hash_policy=XmitHashPolicy.LAYER3_4,
        ad=AD_FAST,
    ),
    "802.3ad-unprivileged": bond(
        AD,
        lacp_port("eth2", 1, 1, 0, 0, privileged=False),
        lacp_port("eth4", 2, 2, 0, 0, privileged=False),
        xmit_hash_policy=XmitHashPolicy.LAYER3_4,
        ad=AdInfo(LacpRate.FAST, AdSelect.BANDWIDTH, lacp_active=True, min_links=1),
    ),
    "802.3ad-port-down": bond(
        AD,
        lacp_port("eth2", 1, 1, 329, 207, prio=1000),
        lacp_port("eth4", 2, 2, 320, 199, prio=1000, mii_status=DOWN, link_failure_count=1),
        xmit_hash_policy=XmitHashPolicy.LAYER3_4,
        ad=AD_FAST,
    ),
    "802.3ad-no-ports": bond(
        AD,
        name="bond0",
        mii_status=DOWN,
        xmit_hash_policy=XmitHashPolicy.LAYER2,
        ad=AdInfo(
            LacpRate.SLOW,
            AdSelect.STABLE,
            lacp_active=False,
            min_links=0,
            system_priority=0,
            system_mac=ZERO_MAC,
        ),
    ),
    # Options (second run).
    "active-backup-primary": bond(
        AB,
        *two(RUN2),
        primary="eth4",
        primary_reselect=PrimaryReselect.BETTER,
        active_slave="eth4",
        updelay=200,
        downdelay=300,
        peer_notif_delay=100,
    ),
    "active-backup-fail-over-mac": bond(
        AB, *two(RUN2), fail_over_mac=FailOverMac.ACTIVE, active_slave="eth2"
    ),
    "balance-xor-encap34": bond(XOR, *two(RUN2), xmit_hash_policy=XmitHashPolicy.ENCAP3_4),
    "balance-tlb-primary": bond(
        TLB,
        *two(RUN2),
        xmit_hash_policy=XmitHashPolicy.LAYER2,
        primary="eth2",
        primary_reselect=PrimaryReselect.ALWAYS,
        active_slave="eth2",
    ),
    "balance-alb-l23": bond(ALB, *two(RUN2), active_slave="eth2"),
    # Long up/down delays: going down, then going back.
    "active-backup-updelay": bond(
        AB, *two(RUN2), active_slave="eth2", updelay=6000, downdelay=6000
    ),
    "active-backup-going-down": bond(
        AB,
        port("eth2", RUN2, mii_status=MiiStatus.GOING_DOWN),
        port("eth4", RUN2),
        active_slave="eth2",
        updelay=6000,
        downdelay=6000,
    ),
    "active-backup-going-back": bond(
        AB,
        port("eth2", RUN2, mii_status=MiiStatus.GOING_BACK, link_failure_count=1),
        port("eth4", RUN2),
        active_slave="eth4",
        updelay=6000,
        downdelay=6000,
    ),
    # A queue id, then the port's PF loses its link; four ports.
    "active-backup-queue-id": bond(
        AB, port("eth2", RUN1), port("eth4", RUN1, queue_id=3), active_slave="eth2"
    ),
    "active-backup-pf-down": bond(
        AB,
        port("eth2", RUN1),
        port("eth4", RUN1, queue_id=3, mii_status=DOWN, link_failure_count=1),
        active_slave="eth2",
    ),
    "balance-rr-four": bond(RR, *(port(n, RUN2) for n in ("eth2", "eth4", "eth3", "eth5"))),
}


def real_fixtures() -> list[str]:
    return sorted(p.name.removesuffix(".proc.txt") for p in FIXTURES.glob("*.proc.txt"))


def read(case: str) -> str:
    return (FIXTURES / f"{case}.proc.txt").read_text()


def test_every_real_fixture_has_its_expected_status() -> None:
    assert real_fixtures() == sorted(EXPECTED)
    modes = {EXPECTED[c].mode for c in EXPECTED}
    assert modes == set(BondMode)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_real_fixture_parsed_exactly(case: str) -> None:
    status = parse_bond_status(read(case), source=f"{case}.proc.txt")
    assert status == EXPECTED[case]
    assert status.unknown == ()
    assert all(s.unknown == () for s in status.slaves)


def test_the_two_lab_802_3ad_ports_in_detail() -> None:
    status = parse_bond_status(read("802.3ad-fast-l34"))
    eth2 = status.slave("eth2")
    assert eth2 is not None and eth2.actor_lacpdu is not None and eth2.partner_lacpdu is not None
    # Actor: active, fast timeout, aggregatable, in sync, defaulted and expired (no partner).
    assert eth2.actor_lacpdu.state == (
        LacpState.ACTIVITY | LacpState.TIMEOUT | LacpState.AGGREGATION
        | LacpState.SYNCHRONIZATION | LacpState.DEFAULTED | LacpState.EXPIRED
    )  # fmt: skip
    assert eth2.partner_lacpdu.state == LacpState.TIMEOUT
    assert status.slave("eth9") is None


# --- the other captures of each case agree with the /proc text ------------------------------


# With ARP monitoring and nobody answering, the ports flap between the reads of one capture.
FLAPPING = {"active-backup-arp", "active-backup-arp-ns"}


def _cases_with(suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in FIXTURES.glob(f"*{suffix}"))


def test_every_case_has_all_four_captures() -> None:
    proc = set(real_fixtures()) - {"802.3ad-unprivileged"}
    for suffix in (".ip-link.json", ".ports.json", ".sysfs.txt"):
        assert set(_cases_with(suffix)) == proc, suffix


@pytest.mark.parametrize("case", _cases_with(".ip-link.json"))
def test_ip_link_json_agrees_with_proc(case: str) -> None:
    status = EXPECTED[case]
    (link,) = json.loads((FIXTURES / f"{case}.ip-link.json").read_text())
    data = link["linkinfo"]["info_data"]
    assert link["ifname"] == "bond0"
    assert data["mode"] == status.mode.label
    assert data["miimon"] == status.miimon
    assert data.get("arp_interval", 0) == (status.arp_interval or 0)
    assert data.get("primary") == status.primary
    ports = json.loads((FIXTURES / f"{case}.ports.json").read_text())
    assert {p["ifname"] for p in ports} == {s.name for s in status.slaves}
    for p in ports:
        slave = status.slave(p["ifname"])
        assert slave is not None and slave.mii_status is not None
        info = p["linkinfo"]["info_slave_data"]
        assert info["perm_hwaddr"] == slave.permanent_hw_addr
        assert info["queue_id"] == slave.queue_id
        if case not in FLAPPING:  # iproute2 prints UP, DOWN, GOING_BACK, ...
            assert info["mii_status"] == slave.mii_status.name
            assert info["link_failure_count"] == slave.link_failure_count
    if case not in FLAPPING:
        assert data.get("active_slave") == status.active_slave


@pytest.mark.parametrize("case", _cases_with(".sysfs.txt"))
def test_sysfs_agrees_with_proc(case: str) -> None:
    status = EXPECTED[case]
    values = {}
    for line in (FIXTURES / f"{case}.sysfs.txt").read_text().splitlines():
        if line.startswith("/sys/class/net/bond0/bonding/"):
            key, _, value = line.removeprefix("/sys/class/net/bond0/bonding/").partition(":")
            values[key] = value
    assert values["mode"] == f"{status.mode.label} {int(status.mode)}"
    assert values.get("slaves", "").split() == [s.name for s in status.slaves]
    if case not in FLAPPING:
        assert status.mii_status is not None
        assert values["mii_status"] == status.mii_status.label
        assert values.get("active_slave") == status.active_slave
