"""A bond as the kernel reports it back: mode, every option, ports and their state, 802.3ad info.

Pure. The read-back form of `model/bond.py`: options in the same typed `BondOptions` as asked
(`primary` and `active_slave` as netdev names), so `differences(asked, state.options)` says
which asked option the kernel holds differently (the kernel rounds updelay, downdelay and
peer_notif_delay down to a multiple of miimon: measured in the lab, 250 -> 200 at miimon 100).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sriovkit.model.bond import BondMode, BondOptions
from sriovkit.model.bond_status_types import (
    ActiveAggregator,
    BondStatus,
    MiiStatus,
    SlaveStatus,
)
from sriovkit.model.bond_status_types import AdInfo as StatusAdInfo

ZERO_MAC = "00:00:00:00:00:00"


class PortRole(enum.IntEnum):
    """IFLA_BOND_SLAVE_STATE (BOND_STATE_ACTIVE / BOND_STATE_BACKUP)."""

    ACTIVE = 0
    BACKUP = 1

    @property
    def label(self) -> str:
        """`active` / `backup`, as sysfs `bonding_slave/state` writes it."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class PortOriginal:
    """A port as it was before it joined a bond: what delete and rollback give back."""

    name: str
    mtu: int
    mac: str
    up: bool
    master: int | None = None


@dataclass(frozen=True, slots=True)
class AdInfo:
    """IFLA_BOND_AD_INFO: the active aggregator of an 802.3ad bond."""

    aggregator: int
    num_ports: int
    actor_key: int
    partner_key: int
    partner_mac: str


@dataclass(frozen=True, slots=True)
class BondPortState:
    """One port of a bond as the bond reports it (IFLA_INFO_SLAVE_DATA of the port's link)."""

    name: str
    index: int
    role: PortRole
    mii_status: MiiStatus
    link_failure_count: int
    perm_hwaddr: str
    queue_id: int
    prio: int | None = None
    ad_aggregator_id: int | None = None
    ad_actor_oper_port_state: int | None = None
    ad_partner_oper_port_state: int | None = None
    mac: str = ""
    mtu: int = 0
    up: bool = False


@dataclass(frozen=True, slots=True)
class BondState:
    """A bond read back: link, mode, every option the kernel reports, ports, active port."""

    name: str
    index: int
    mode: BondMode
    options: BondOptions
    ports: tuple[BondPortState, ...] = ()
    active_port: str | None = None
    ad_info: AdInfo | None = None
    mac: str = ""
    mtu: int = 0
    up: bool = False
    carrier: bool = False

    @property
    def port_names(self) -> tuple[str, ...]:
        """The ports' names, in the order the kernel lists them."""
        return tuple(p.name for p in self.ports)

    def port(self, name: str) -> BondPortState | None:
        """The port called `name`, or None."""
        return next((p for p in self.ports if p.name == name), None)


def proc_status(state: BondState, driver_version: str) -> BondStatus:
    """What the kernel's `/proc/net/bonding/<bond>` says for a bond that reads back as `state`.

    Which lines appear follows the kernel (drivers/net/bonding/bond_procfs.c, and the lab's
    texts): fail_over_mac only in active-backup when not none; the hash policy in balance-xor,
    802.3ad and balance-tlb without dynamic load balancing; ARP lines only while ARP monitoring
    runs. Port speed and duplex are not part of the read-back: printed as Unknown.
    """
    o = state.options
    mode = state.mode
    hashed = mode in (BondMode.BALANCE_XOR, BondMode.IEEE_802_3AD) or (
        mode is BondMode.BALANCE_TLB and o.tlb_dynamic_lb is False
    )
    foms = o.fail_over_mac if mode is BondMode.ACTIVE_BACKUP and o.fail_over_mac else None
    arp = bool(o.arp_interval)
    ad = None
    if mode is BondMode.IEEE_802_3AD:
        info = state.ad_info
        system = o.ad_actor_system
        aggregator = None
        if info is not None and info.num_ports:
            aggregator = ActiveAggregator(
                info.aggregator, info.num_ports, info.actor_key, info.partner_key,
                info.partner_mac,
            )  # fmt: skip
        ad = StatusAdInfo(
            lacp_rate=o.lacp_rate, ad_select=o.ad_select, lacp_active=o.lacp_active,
            min_links=o.min_links, system_priority=o.ad_actor_sys_prio,
            system_mac=state.mac if system in (None, ZERO_MAC) else system,
            active_aggregator=aggregator,
        )  # fmt: skip
    lacp = mode is BondMode.IEEE_802_3AD
    slaves = tuple(
        SlaveStatus(
            name=p.name,
            mii_status=p.mii_status,
            link_failure_count=p.link_failure_count,
            permanent_hw_addr=p.perm_hwaddr,
            queue_id=p.queue_id,
            aggregator_id=p.ad_aggregator_id if lacp else None,
        )
        for p in state.ports
    )
    return BondStatus(
        mode=mode, driver_version=driver_version, name=state.name, fail_over_mac=foms,
        xmit_hash_policy=o.xmit_hash_policy if hashed else None, primary=o.primary,
        primary_reselect=o.primary_reselect, active_slave=state.active_port,
        mii_status=MiiStatus.UP if state.carrier else MiiStatus.DOWN, miimon=o.miimon,
        updelay=o.updelay, downdelay=o.downdelay, peer_notif_delay=o.peer_notif_delay,
        arp_interval=o.arp_interval if arp else None,
        arp_missed_max=o.arp_missed_max if arp else None,
        arp_ip_target=o.arp_ip_target if arp else None,
        ns_ip6_target=o.ns_ip6_target if arp else None, ad=ad, slaves=slaves,
    )  # fmt: skip


def differences(asked: BondOptions, got: BondOptions) -> list[tuple[str, Any, Any]]:
    """(option, asked, held) for every asked option the kernel holds differently."""
    out = []
    for name, value in asked.given():
        held = getattr(got, name)
        if held != value:
            out.append((name, value, held))
    return out


__all__ = [
    "AdInfo",
    "BondPortState",
    "BondState",
    "MiiStatus",
    "PortOriginal",
    "PortRole",
    "differences",
    "proc_status",
]
