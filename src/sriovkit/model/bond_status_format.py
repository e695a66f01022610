"""Write a `BondStatus` back as the kernel prints `/proc/net/bonding/<bond>` (6.12's layout).

Pure. For every text the lab's kernel printed, `format_bond_status(parse_bond_status(text))`
gives the text back byte for byte (tests/unit/test_bond_status_format.py); the simulated
bonding driver uses it to print the file as the kernel would. Which lines appear follows the
kernel's rules, said by the status itself: the Primary/Currently Active lines for the modes that
use a primary, every other optional line where its field is not None. Unknown lines, whose
place the status does not keep, come at the end of the bond's part or of their port's block.
"""

from __future__ import annotations

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import BondMode
from sriovkit.model.bond_status_types import (
    DRIVER_PREFIX,
    MODE_DESCRIPTIONS,
    USES_PRIMARY,
    AdInfo,
    BondStatus,
    Lacpdu,
    SlaveStatus,
)


def _num(value: int | None) -> str:
    return "0" if value is None else str(value)


def _master(status: BondStatus) -> list[str]:
    mode = MODE_DESCRIPTIONS[status.mode]
    if status.fail_over_mac is not None:
        mode += f" (fail_over_mac {status.fail_over_mac.label})"
    lines = [f"Bonding Mode: {mode}"]
    if status.xmit_hash_policy is not None:
        policy = status.xmit_hash_policy
        lines.append(f"Transmit Hash Policy: {policy.label} ({int(policy)})")
    if status.mode in USES_PRIMARY:
        primary = status.primary or "None"
        if status.primary is not None and status.primary_reselect is not None:
            primary += f" (primary_reselect {status.primary_reselect.label})"
        lines.append(f"Primary Slave: {primary}")
        lines.append(f"Currently Active Slave: {status.active_slave or 'None'}")
    mii = status.mii_status.label if status.mii_status is not None else "down"
    lines += [
        f"MII Status: {mii}",
        f"MII Polling Interval (ms): {_num(status.miimon)}",
        f"Up Delay (ms): {_num(status.updelay)}",
        f"Down Delay (ms): {_num(status.downdelay)}",
    ]
    if status.peer_notif_delay is not None:
        lines.append(f"Peer Notification Delay (ms): {status.peer_notif_delay}")
    if status.arp_interval is not None:
        lines.append(f"ARP Polling Interval (ms): {status.arp_interval}")
        if status.arp_missed_max is not None:
            lines.append(f"ARP Missed Max: {status.arp_missed_max}")
        lines.append(_targets("ARP IP target/s (n.n.n.n form):", status.arp_ip_target or ()))
        if status.ns_ip6_target is not None:
            lines.append(_targets("NS IPv6 target/s (xx::xx form):", status.ns_ip6_target))
    return lines


def _targets(key: str, targets: tuple[str, ...]) -> str:
    return key + (" " + ", ".join(targets) if targets else "")


def _ad(ad: AdInfo, name: str | None) -> list[str]:
    lines = ["", "802.3ad info"]
    if ad.lacp_active is not None:
        lines.append(f"LACP active: {'on' if ad.lacp_active else 'off'}")
    lines.append(f"LACP rate: {ad.lacp_rate.label if ad.lacp_rate is not None else 'slow'}")
    if ad.min_links is not None:
        lines.append(f"Min links: {ad.min_links}")
    select = ad.ad_select.label if ad.ad_select is not None else "stable"
    lines.append(f"Aggregator selection policy (ad_select): {select}")
    if ad.system_priority is None and ad.system_mac is None and ad.active_aggregator is None:
        return lines  # the reader lacked CAP_NET_ADMIN
    lines.append(f"System priority: {_num(ad.system_priority)}")
    lines.append(f"System MAC address: {ad.system_mac or '00:00:00:00:00:00'}")
    agg = ad.active_aggregator
    if agg is None:
        if name is None:
            raise InvalidInput("name", "the bond's name is needed for 'has no active aggregator'")
        lines.append(f"bond {name} has no active aggregator")
        return lines
    return [
        *lines,
        "Active Aggregator Info:",
        f"\tAggregator ID: {agg.aggregator_id}",
        f"\tNumber of ports: {agg.ports}",
        f"\tActor Key: {agg.actor_key}",
        f"\tPartner Key: {agg.partner_key}",
        f"\tPartner Mac Address: {agg.partner_mac}",
    ]


def _lacpdu(side: str, pdu: Lacpdu) -> list[str]:
    key = "port key" if side == "actor" else "oper key"
    return [
        f"details {side} lacp pdu:",
        f"    system priority: {pdu.system_priority}",
        f"    system mac address: {pdu.system_mac}",
        f"    {key}: {pdu.port_key}",
        f"    port priority: {pdu.port_priority}",
        f"    port number: {pdu.port_number}",
        f"    port state: {pdu.port_state}",
    ]


def _slave(slave: SlaveStatus, lacp: bool) -> list[str]:
    mii = slave.mii_status.label if slave.mii_status is not None else "down"
    speed = "Unknown" if slave.speed is None else f"{slave.speed} Mbps"
    duplex = "Unknown" if slave.duplex is None else slave.duplex.label
    lines = [
        "",
        f"Slave Interface: {slave.name}",
        f"MII Status: {mii}",
        f"Speed: {speed}",
        f"Duplex: {duplex}",
        f"Link Failure Count: {_num(slave.link_failure_count)}",
        f"Permanent HW addr: {slave.permanent_hw_addr or '00:00:00:00:00:00'}",
        f"Slave queue ID: {_num(slave.queue_id)}",
    ]
    if lacp:
        if slave.aggregator_id is None:
            lines.append("Aggregator ID: N/A")
        else:
            lines.append(f"Aggregator ID: {slave.aggregator_id}")
            if slave.actor_churn_state is not None and slave.partner_churn_state is not None:
                lines += [
                    f"Actor Churn State: {slave.actor_churn_state.label}",
                    f"Partner Churn State: {slave.partner_churn_state.label}",
                    f"Actor Churned Count: {_num(slave.actor_churned_count)}",
                    f"Partner Churned Count: {_num(slave.partner_churned_count)}",
                ]
            if slave.actor_lacpdu is not None:
                lines += _lacpdu("actor", slave.actor_lacpdu)
            if slave.partner_lacpdu is not None:
                lines += _lacpdu("partner", slave.partner_lacpdu)
    return [*lines, *slave.unknown]


def format_bond_status(status: BondStatus) -> str:
    """The text the kernel prints for `status` in `/proc/net/bonding/<bond>`.

    Raises InvalidInput("name", ...) for an 802.3ad status that needs the bond's name (no
    active aggregator) when `status.name` is None.
    """
    version = status.driver_version if status.driver_version is not None else "v"
    lines = [f"{DRIVER_PREFIX}{version}", "", *_master(status), *status.unknown]
    if status.mode is BondMode.IEEE_802_3AD:
        lines += _ad(status.ad or AdInfo(), status.name)
    for slave in status.slaves:
        lines += _slave(slave, status.mode is BondMode.IEEE_802_3AD)
    return "\n".join(lines) + "\n"
