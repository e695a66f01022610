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
from sriovkit.model.bond_status_types import MiiStatus


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
]
