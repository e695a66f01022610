"""A bond's status as the kernel prints it in `/proc/net/bonding/<bond>`, typed.

Pure: no OS access. `parse_bond_status(text)` reads the text of any mode into a `BondStatus`;
`sriovkit.model.bond_status_format.format_bond_status` writes it back as the kernel does (for
the texts captured from the lab's 6.12 kernel, `format(parse(text)) == text`).

What the kernel prints (drivers/net/bonding/bond_procfs.c), and so what may be absent here:
the Transmit Hash Policy only in modes that hash (balance-xor, 802.3ad, balance-tlb with
tlb_dynamic_lb 0); Primary Slave and Currently Active Slave only in active-backup, balance-tlb
and balance-alb; the ARP lines only with arp_interval > 0; the 802.3ad section and each port's
aggregator lines only in 802.3ad, and the system priority and MAC, the active aggregator and the
LACPDU details only to a reader with CAP_NET_ADMIN. arp_validate and arp_all_targets are never in
this file (sysfs and netlink have them). Lines this parser does not know are kept in `unknown`
(on the bond, or on the port whose block they are in), never fatal.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import AdSelect, FailOverMac, LacpRate, PrimaryReselect, XmitHashPolicy
from sriovkit.model.bond_status_types import (
    DRIVER_PREFIX,
    MODE_DESCRIPTIONS,
    USES_PRIMARY,
    ActiveAggregator,
    AdInfo,
    BondStatus,
    ChurnState,
    Duplex,
    Lacpdu,
    LacpState,
    MiiStatus,
    SlaveStatus,
)

__all__ = [
    "DRIVER_PREFIX",
    "MODE_DESCRIPTIONS",
    "USES_PRIMARY",
    "ActiveAggregator",
    "AdInfo",
    "BondStatus",
    "ChurnState",
    "Duplex",
    "LacpState",
    "Lacpdu",
    "MiiStatus",
    "SlaveStatus",
    "parse_bond_status",
]


# --- parsing ---------------------------------------------------------------------------------


class _Bad(ValueError):
    """A known line whose value does not parse: the line is kept as unknown."""


def _int(value: str) -> int:
    if not re.fullmatch(r"-?\d+", value):
        raise _Bad(value)
    return int(value)


def _mac(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2})*", value):
        raise _Bad(value)
    return value.lower()


def _word(table: dict[str, Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        if value not in table:
            raise _Bad(value)
        return table[value]

    return parse


def _labels(members: Any) -> dict[str, Any]:
    return {m.label: m for m in members}


_MII = _word(_labels(MiiStatus))
_CHURN = _word(_labels(ChurnState))
_ON_OFF = _word({"on": True, "off": False})


def _speed(value: str) -> int | None:
    if value == "Unknown":
        return None
    number, _, unit = value.partition(" ")
    if unit != "Mbps":
        raise _Bad(value)
    return _int(number)


def _duplex(value: str) -> Duplex | None:
    return None if value == "Unknown" else _word(_labels(Duplex))(value)


def _targets(value: str) -> tuple[str, ...]:
    targets = tuple(t.strip() for t in value.split(",")) if value else ()
    for target in targets:
        try:
            ipaddress.ip_address(target)
        except ValueError as exc:
            raise _Bad(value) from exc
    return targets


def _none_or_name(value: str) -> str | None:
    return None if value == "None" else value


def _mode_line(value: str) -> dict[str, Any]:
    for mode, description in MODE_DESCRIPTIONS.items():
        if value == description:
            return {"mode": mode}
        rest = value.removeprefix(description + " ")
        m = re.fullmatch(r"\(fail_over_mac (\S+)\)", rest) if rest != value else None
        if m:
            return {"mode": mode, "fail_over_mac": FailOverMac.parse(m[1], "fail_over_mac")}
    raise _Bad(value)


def _labelled(cls: Any) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            return cls.parse(value, cls.__name__)
        except InvalidInput as exc:
            raise _Bad(value) from exc

    return parse


def _xmit(value: str) -> XmitHashPolicy:
    m = re.fullmatch(r"(\S+) \((\d+)\)", value)
    policy = _labelled(XmitHashPolicy)(m[1] if m else "")
    if m is None or int(policy) != int(m[2]):
        raise _Bad(value)
    return policy  # type: ignore[no-any-return]


def _primary(value: str) -> dict[str, Any]:
    m = re.fullmatch(r"(\S+)(?: \(primary_reselect (\S+)\))?", value)
    if m is None or (m[1] == "None" and m[2]):
        raise _Bad(value)
    reselect = _labelled(PrimaryReselect)(m[2]) if m[2] else None
    return {"primary": _none_or_name(m[1]), "primary_reselect": reselect}


def _one(key: str, parse: Callable[[str], Any]) -> Callable[[str], dict[str, Any]]:
    return lambda value: {key: parse(value)}


_BOND_LINES: dict[str, Callable[[str], dict[str, Any]]] = {
    "Bonding Mode": _mode_line,
    "Transmit Hash Policy": _one("xmit_hash_policy", _xmit),
    "Primary Slave": _primary,
    "Currently Active Slave": _one("active_slave", _none_or_name),
    "MII Status": _one("mii_status", _MII),
    "MII Polling Interval (ms)": _one("miimon", _int),
    "Up Delay (ms)": _one("updelay", _int),
    "Down Delay (ms)": _one("downdelay", _int),
    "Peer Notification Delay (ms)": _one("peer_notif_delay", _int),
    "ARP Polling Interval (ms)": _one("arp_interval", _int),
    "ARP Missed Max": _one("arp_missed_max", _int),
    "ARP IP target/s (n.n.n.n form)": _one("arp_ip_target", _targets),
    "NS IPv6 target/s (xx::xx form)": _one("ns_ip6_target", _targets),
}
_AD_LINES: dict[str, Callable[[str], dict[str, Any]]] = {
    "LACP active": _one("lacp_active", _ON_OFF),
    "LACP rate": _one("lacp_rate", _labelled(LacpRate)),
    "Min links": _one("min_links", _int),
    "Aggregator selection policy (ad_select)": _one("ad_select", _labelled(AdSelect)),
    "System priority": _one("system_priority", _int),
    "System MAC address": _one("system_mac", _mac),
}
_AGGREGATOR_LINES: dict[str, Callable[[str], dict[str, Any]]] = {
    "Aggregator ID": _one("aggregator_id", _int),
    "Number of ports": _one("ports", _int),
    "Actor Key": _one("actor_key", _int),
    "Partner Key": _one("partner_key", _int),
    "Partner Mac Address": _one("partner_mac", _mac),
}
_SLAVE_LINES: dict[str, Callable[[str], dict[str, Any]]] = {
    "MII Status": _one("mii_status", _MII),
    "Speed": _one("speed", _speed),
    "Duplex": _one("duplex", _duplex),
    "Link Failure Count": _one("link_failure_count", _int),
    "Permanent HW addr": _one("permanent_hw_addr", _mac),
    "Slave queue ID": _one("queue_id", _int),
    "Aggregator ID": _one("aggregator_id", lambda v: None if v == "N/A" else _int(v)),
    "Actor Churn State": _one("actor_churn_state", _CHURN),
    "Partner Churn State": _one("partner_churn_state", _CHURN),
    "Actor Churned Count": _one("actor_churned_count", _int),
    "Partner Churned Count": _one("partner_churned_count", _int),
}
_LACPDU_LINES: dict[str, Callable[[str], dict[str, Any]]] = {
    "system priority": _one("system_priority", _int),
    "system mac address": _one("system_mac", _mac),
    "port key": _one("port_key", _int),
    "oper key": _one("port_key", _int),
    "port priority": _one("port_priority", _int),
    "port number": _one("port_number", _int),
    "port state": _one("port_state", _int),
}
_NO_AGGREGATOR = re.compile(r"bond (\S+) has no active aggregator")


def _split(line: str) -> tuple[str, str]:
    """`Key: value` -> (key, value); `Key:` -> (key, ""). Keys never hold `: ` (values may)."""
    stripped = line.strip()
    key, sep, value = stripped.partition(": ")
    if not sep:
        return stripped.removesuffix(":"), ""
    return key, value.strip()


class _Block:
    """A sub-block (active aggregator, LACPDU details): its fields and the lines it came from."""

    def __init__(self, header: str) -> None:
        self.fields: dict[str, Any] = {}
        self.lines = [header]

    def build(self, cls: Any, unknown: list[str]) -> Any:
        """The record, or None with the block's lines kept as unknown when one is missing."""
        try:
            return cls(**self.fields)
        except TypeError:
            unknown.extend(self.lines)
            return None


_Table = dict[str, Callable[[str], dict[str, Any]]]


class _Slave:
    def __init__(self, name: str) -> None:
        self.fields: dict[str, Any] = {"name": name}
        self.unknown: list[str] = []
        self.lacpdus: dict[str, _Block] = {}

    def status(self) -> SlaveStatus:
        for side, block in self.lacpdus.items():
            self.fields[f"{side}_lacpdu"] = block.build(Lacpdu, self.unknown)
        return SlaveStatus(**self.fields, unknown=tuple(self.unknown))


class _Parser:
    def __init__(self) -> None:
        self.bond: dict[str, Any] = {}
        self.bond_unknown: list[str] = []
        self.ad: dict[str, Any] | None = None
        self.aggregator: _Block | None = None
        self.slaves: list[_Slave] = []
        self.sub: _Block | None = None  # the block indented lines belong to

    def unknown(self, line: str) -> None:
        (self.slaves[-1].unknown if self.slaves else self.bond_unknown).append(line)

    def apply(self, table: _Table, into: dict[str, Any], key: str, value: str, line: str) -> None:
        try:
            into.update(table[key](value))
        except _Bad:
            self.unknown(line)

    def line(self, line: str) -> None:
        key, value = _split(line)
        indented = line[:1] in (" ", "\t")
        if not indented:
            self.sub = None
        if key == "Slave Interface" and value and not indented:
            self.slaves.append(_Slave(value))
        elif self.slaves:
            self.slave_line(self.slaves[-1], key, value, line, indented)
        elif self.sub is not None and key in _AGGREGATOR_LINES:
            self.apply(_AGGREGATOR_LINES, self.sub.fields, key, value, line)
            self.sub.lines.append(line)
        elif indented:
            self.unknown(line)
        elif key == "802.3ad info" and not value:
            self.ad = {}
        elif self.ad is not None and key == "Active Aggregator Info" and not value:
            self.aggregator = self.sub = _Block(line)
        elif self.ad is not None and key in _AD_LINES:
            self.apply(_AD_LINES, self.ad, key, value, line)
        elif self.ad is not None and (m := _NO_AGGREGATOR.fullmatch(line)):
            self.bond["name"] = m[1]
        elif line.startswith(DRIVER_PREFIX) and "driver_version" not in self.bond:
            self.bond["driver_version"] = line.removeprefix(DRIVER_PREFIX)
        elif key in _BOND_LINES:
            self.apply(_BOND_LINES, self.bond, key, value, line)
        else:
            self.unknown(line)

    def slave_line(self, slave: _Slave, key: str, value: str, line: str, indented: bool) -> None:
        if self.sub is not None and key in _LACPDU_LINES:
            self.apply(_LACPDU_LINES, self.sub.fields, key, value, line)
            self.sub.lines.append(line)
        elif indented:
            self.unknown(line)
        elif key in ("details actor lacp pdu", "details partner lacp pdu") and not value:
            self.sub = slave.lacpdus[key.split()[1]] = _Block(line)
        elif key in _SLAVE_LINES:
            self.apply(_SLAVE_LINES, slave.fields, key, value, line)
        else:
            self.unknown(line)

    def result(self) -> dict[str, Any]:
        fields = dict(self.bond)
        if self.ad is not None:
            if self.aggregator is not None:
                agg = self.aggregator.build(ActiveAggregator, self.bond_unknown)
                self.ad["active_aggregator"] = agg
            fields["ad"] = AdInfo(**self.ad)
        fields["slaves"] = tuple(s.status() for s in self.slaves)
        fields["unknown"] = tuple(self.bond_unknown)
        return fields


def parse_bond_status(
    text: str, *, source: str = "bonding status", name: str | None = None
) -> BondStatus:
    """Parse the text of `/proc/net/bonding/<bond>`.

    `source` names the input in errors (say the path); `name` is the bond's name if the caller
    knows it (the text itself rarely says it). Raises InvalidInput naming `source` when the
    text is not a bonding status (no `Bonding Mode:` line of a known mode).
    """
    parser = _Parser()
    for line in text.splitlines():
        if line.strip():
            parser.line(line)
    fields = parser.result()
    if "mode" not in fields:
        mode_lines = [u for u in fields["unknown"] if u.startswith("Bonding Mode:")]
        reason = (
            f"unknown bonding mode {mode_lines[0]!r}"
            if mode_lines
            else "not a /proc/net/bonding status (no 'Bonding Mode:' line)"
        )
        raise InvalidInput(source, reason)
    if name is not None and "name" not in fields:
        fields["name"] = name
    return BondStatus(**fields)
