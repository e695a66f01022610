"""The records of a bond's `/proc/net/bonding/<bond>` status (see `model/bond_status.py`).

Pure: no OS access. Kept apart from the parser so the formatter (`model/bond_status_format.py`)
and the parser share them without importing each other.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sriovkit.model.bond import (
    AdSelect,
    BondMode,
    FailOverMac,
    LacpRate,
    PrimaryReselect,
    XmitHashPolicy,
)

DRIVER_PREFIX = "Ethernet Channel Bonding Driver: "

MODE_DESCRIPTIONS: dict[BondMode, str] = {
    BondMode.BALANCE_RR: "load balancing (round-robin)",
    BondMode.ACTIVE_BACKUP: "fault-tolerance (active-backup)",
    BondMode.BALANCE_XOR: "load balancing (xor)",
    BondMode.BROADCAST: "fault-tolerance (broadcast)",
    BondMode.IEEE_802_3AD: "IEEE 802.3ad Dynamic link aggregation",
    BondMode.BALANCE_TLB: "transmit load balancing",
    BondMode.BALANCE_ALB: "adaptive load balancing",
}
"""The kernel's description of each mode (bond_mode_name), as on the `Bonding Mode:` line."""

USES_PRIMARY = frozenset({BondMode.ACTIVE_BACKUP, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB})
"""Modes whose status has the Primary Slave and Currently Active Slave lines."""


class MiiStatus(enum.IntEnum):
    """A link's state as the MII/ARP monitor sees it (BOND_LINK_*, IFLA_BOND_SLAVE_MII_STATUS)."""

    UP = 0
    GOING_DOWN = 1  # BOND_LINK_FAIL: down, waiting for downdelay
    DOWN = 2
    GOING_BACK = 3  # BOND_LINK_BACK: up, waiting for updelay

    @property
    def label(self) -> str:
        """The kernel's words (`up`, `going down`, `down`, `going back`)."""
        return self.name.lower().replace("_", " ")


class ChurnState(enum.IntEnum):
    """An 802.3ad port's actor or partner churn detection state (churn_state_t)."""

    MONITORING = 0
    CHURNED = 1
    NONE = 2

    @property
    def label(self) -> str:
        """The kernel's word (`monitoring`, `churned`, `none`)."""
        return self.name.lower()


class Duplex(enum.IntEnum):
    """DUPLEX_HALF / DUPLEX_FULL; the kernel's DUPLEX_UNKNOWN is None in the status."""

    HALF = 0
    FULL = 1

    @property
    def label(self) -> str:
        """The kernel's word (`half`, `full`)."""
        return self.name.lower()


class LacpState(enum.IntFlag):
    """The bits of an LACPDU's port state (IEEE 802.1AX actor/partner state)."""

    ACTIVITY = 0x01
    TIMEOUT = 0x02  # short (fast) timeout
    AGGREGATION = 0x04
    SYNCHRONIZATION = 0x08
    COLLECTING = 0x10
    DISTRIBUTING = 0x20
    DEFAULTED = 0x40
    EXPIRED = 0x80


@dataclass(frozen=True, slots=True)
class ActiveAggregator:
    """802.3ad's `Active Aggregator Info:` block."""

    aggregator_id: int
    ports: int
    actor_key: int
    partner_key: int
    partner_mac: str


@dataclass(frozen=True, slots=True)
class AdInfo:
    """The bond's `802.3ad info` section.

    `system_priority`, `system_mac` and `active_aggregator` are None when the reader lacked
    CAP_NET_ADMIN (the kernel then prints none of them); with it, `active_aggregator` is None
    when the kernel says `bond <name> has no active aggregator`. `lacp_active` and `min_links`
    are None only for kernels that do not print them.
    """

    lacp_rate: LacpRate | None = None
    ad_select: AdSelect | None = None
    lacp_active: bool | None = None
    min_links: int | None = None
    system_priority: int | None = None
    system_mac: str | None = None
    active_aggregator: ActiveAggregator | None = None


@dataclass(frozen=True, slots=True)
class Lacpdu:
    """A port's `details actor lacp pdu:` or `details partner lacp pdu:` block.

    `port_key` is the actor's `port key` (its operational key) or the partner's `oper key`.
    """

    system_priority: int
    system_mac: str
    port_key: int
    port_priority: int
    port_number: int
    port_state: int

    @property
    def state(self) -> LacpState:
        """`port_state` as flags."""
        return LacpState(self.port_state & 0xFF)


@dataclass(frozen=True, slots=True)
class SlaveStatus:
    """One port's block (`Slave Interface: <name>` and the lines after it).

    `speed` (Mbps) and `duplex` are None where the kernel prints `Unknown`. The 802.3ad fields
    are None outside 802.3ad; in 802.3ad `aggregator_id` is None for `Aggregator ID: N/A` (then
    no churn lines follow), and the LACPDU details are None when the reader lacked CAP_NET_ADMIN.
    """

    name: str
    mii_status: MiiStatus | None = None
    speed: int | None = None
    duplex: Duplex | None = None
    link_failure_count: int | None = None
    permanent_hw_addr: str | None = None
    queue_id: int | None = None
    aggregator_id: int | None = None
    actor_churn_state: ChurnState | None = None
    partner_churn_state: ChurnState | None = None
    actor_churned_count: int | None = None
    partner_churned_count: int | None = None
    actor_lacpdu: Lacpdu | None = None
    partner_lacpdu: Lacpdu | None = None
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BondStatus:
    """`/proc/net/bonding/<bond>` as a value. Delays are in ms as printed (the kernel's

    updelay/downdelay/peer_notif_delay counts times miimon). A field is None where the text
    does not have its line; `name` is known only where the text says it (802.3ad without an
    active aggregator) or the caller gave it.
    """

    mode: BondMode
    driver_version: str | None = None
    name: str | None = None
    fail_over_mac: FailOverMac | None = None
    xmit_hash_policy: XmitHashPolicy | None = None
    primary: str | None = None
    primary_reselect: PrimaryReselect | None = None
    active_slave: str | None = None
    mii_status: MiiStatus | None = None
    miimon: int | None = None
    updelay: int | None = None
    downdelay: int | None = None
    peer_notif_delay: int | None = None
    arp_interval: int | None = None
    arp_missed_max: int | None = None
    arp_ip_target: tuple[str, ...] | None = None
    ns_ip6_target: tuple[str, ...] | None = None
    ad: AdInfo | None = None
    slaves: tuple[SlaveStatus, ...] = ()
    unknown: tuple[str, ...] = ()

    def slave(self, name: str) -> SlaveStatus | None:
        """The port called `name`, if the bond has it."""
        return next((s for s in self.slaves if s.name == name), None)
