"""The simulated bonding driver's state: one `SimBond` per bond, one `SimPort` per enslaved link.

Kept in the fake's world (`sim/netlink_state.py`) and its state file as plain JSON. A new bond
starts from `DEFAULTS` (`model/bond_rules.NEW_BOND`): what the lab's 6.12 kernel reports for a
bond created over netlink with no options (miimon 0, not the module parameter's 100).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sriovkit.model.bond import (
    BondMode,
    BondOptions,
    parse_option,
)
from sriovkit.model.bond_rules import NEW_BOND

DEFAULTS = NEW_BOND
"""A new bond's options as the kernel holds them."""


@dataclass(slots=True)
class SimPort:
    """What the bond keeps about one port: what it had when enslaved, its per-port options."""

    perm_hwaddr: str
    orig_mtu: int
    queue_id: int = 0
    prio: int = 0
    failures: int = 0


@dataclass(slots=True)
class SimBond:
    """One bond: mode, every option (defaults filled in), its ports' link keys, the active one."""

    mode: BondMode = BondMode.BALANCE_RR
    options: BondOptions = DEFAULTS
    ports: list[str] = field(default_factory=list)
    active: str | None = None  # link key of the active port (active-backup, tlb, alb)
    ifindex: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: options as the kernel's words (None stays null)."""
        opts = {f.name: _word(getattr(self.options, f.name)) for f in fields(BondOptions)}
        return {"mode": int(self.mode), "options": opts, "ports": list(self.ports),
                "active": self.active, "ifindex": self.ifindex}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimBond:
        """Inverse of `to_json`."""
        values: dict[str, Any] = {}
        for name, word in data["options"].items():
            if word is None:
                continue
            if name in ("arp_ip_target", "ns_ip6_target"):
                values[name] = tuple(word)
            else:
                values[name] = parse_option(name, word)[1]
        return cls(BondMode(data["mode"]), BondOptions(**values), list(data["ports"]),
                   data["active"], int(data.get("ifindex", 0)))  # fmt: skip


def _word(value: object) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if value is None or (isinstance(value, (bool, int, str)) and not hasattr(value, "label")):
        return value
    return getattr(value, "label", value)


def port_to_json(port: SimPort) -> dict[str, Any]:
    """A port record as plain JSON."""
    return {f.name: getattr(port, f.name) for f in fields(SimPort)}


def port_from_json(data: dict[str, Any]) -> SimPort:
    """Inverse of `port_to_json`."""
    return SimPort(**data)


__all__ = ["DEFAULTS", "SimBond", "SimPort", "port_from_json", "port_to_json"]
