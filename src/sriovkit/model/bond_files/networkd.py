"""systemd-networkd: `<bond>.netdev` ([NetDev] Kind=bond, [Bond]) and `<port>.network` (Bond=).

Where the rules come from:
- systemd.netdev(5), "[Bond] Section Options": Mode=, TransmitHashPolicy=, LACPTransmitRate=,
  MIIMonitorSec=, UpDelaySec=, DownDelaySec=, LearnPacketIntervalSec=, AdSelect=,
  AdActorSystemPriority=, AdUserPortKey=, AdActorSystem=, FailOverMACPolicy=, ARPValidate=,
  ARPIntervalSec=, ARPIPTargets= (space-separated, may repeat; empty resets), ARPAllTargets=,
  PrimaryReselectPolicy=, ResendIGMP=, PacketsPerSlave=, GratuitousARP=, AllSlavesActive=,
  DynamicTransmitLoadBalancing=, MinLinks=, ARPMissedMax=. Values are the kernel's words;
  ARPValidate= takes none, active, backup, all (not the filter variants).
- systemd.time(7): a time span is numbers with units (us, ms, s, min, h, d, w, ...), summed;
  a bare number is seconds. The kernel keeps milliseconds (lp_interval: seconds), so a span that
  is not a whole number of them is refused rather than truncated.
- systemd.network(5), [Network]: Bond= enslaves the matched link; PrimarySlave= and ActiveSlave=
  (booleans) make it the bond's primary / active port, so `primary` and `active_slave` are
  written on the port they name (and cannot be written when they name no port of the bond).
- systemd.syntax(7): `#` and `;` start comments, a trailing backslash continues a line.

Cannot express: use_carrier, ns_ip6_target, lacp_active, coupled_control, peer_notif_delay (no
[Bond] key), ARPValidate= filter values, and per-port queue_id and prio (no .network key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import ArpValidate, BondMode, BondSpec, option_word
from sriovkit.model.bond_files._common import (
    Entry,
    OptionReader,
    Parsed,
    PortDraft,
    Rendered,
    bad,
    build_spec,
    ifname,
    ini_entries,
    pick_bond,
    rewrap,
    split_spec,
    yes_no,
)

NAME = "networkd"

KEYS = {
    "miimon": "MIIMonitorSec", "updelay": "UpDelaySec", "downdelay": "DownDelaySec",
    "arp_interval": "ARPIntervalSec", "arp_ip_target": "ARPIPTargets",
    "arp_validate": "ARPValidate", "arp_all_targets": "ARPAllTargets",
    "arp_missed_max": "ARPMissedMax", "primary_reselect": "PrimaryReselectPolicy",
    "fail_over_mac": "FailOverMACPolicy", "xmit_hash_policy": "TransmitHashPolicy",
    "resend_igmp": "ResendIGMP", "num_peer_notif": "GratuitousARP",
    "all_slaves_active": "AllSlavesActive", "min_links": "MinLinks",
    "lp_interval": "LearnPacketIntervalSec", "packets_per_slave": "PacketsPerSlave",
    "lacp_rate": "LACPTransmitRate", "ad_select": "AdSelect",
    "ad_actor_sys_prio": "AdActorSystemPriority", "ad_user_port_key": "AdUserPortKey",
    "ad_actor_system": "AdActorSystem", "tlb_dynamic_lb": "DynamicTransmitLoadBalancing",
}  # fmt: skip
"""Kernel option -> [Bond] key of a .netdev."""

OPTION_OF = {key.lower(): option for option, key in KEYS.items()}
MILLISECONDS = frozenset({"miimon", "updelay", "downdelay", "arp_interval"})
SECONDS = frozenset({"lp_interval"})
BOOLS = frozenset({"all_slaves_active", "tlb_dynamic_lb"})

_NO_KEY = "systemd.netdev(5) has no [Bond] key for it"
REASONS = {
    "use_carrier": _NO_KEY, "ns_ip6_target": _NO_KEY, "lacp_active": _NO_KEY,
    "coupled_control": _NO_KEY, "peer_notif_delay": _NO_KEY,
}  # fmt: skip
PORT_REASONS = {
    "queue_id": "systemd.network(5) has no bond-port queue id key",
    "prio": "systemd.network(5) has no bond-port priority key",
}
_ARP_VALIDATE_OK = {ArpValidate.NONE, ArpValidate.ACTIVE, ArpValidate.BACKUP, ArpValidate.ALL}

_UNITS_US = {
    "us": 1, "usec": 1, "µs": 1, "ms": 1000, "msec": 1000,
    "s": 10**6, "sec": 10**6, "second": 10**6, "seconds": 10**6,
    "m": 60 * 10**6, "min": 60 * 10**6, "minute": 60 * 10**6, "minutes": 60 * 10**6,
    "h": 3600 * 10**6, "hr": 3600 * 10**6, "hour": 3600 * 10**6, "hours": 3600 * 10**6,
    "d": 86400 * 10**6, "day": 86400 * 10**6, "days": 86400 * 10**6,
    "w": 604800 * 10**6, "week": 604800 * 10**6, "weeks": 604800 * 10**6,
}  # fmt: skip
_SPAN_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zµ]*)", re.IGNORECASE)


def time_span_us(text: str) -> int:
    """A systemd time span in microseconds (ValueError when it is not one)."""
    rest = text.strip()
    if not rest:
        raise ValueError("empty")
    total = Decimal(0)
    while rest:
        match = _SPAN_PART.match(rest)
        if not match or not match.group(0).strip():
            raise ValueError(rest)
        unit = match.group(2) or "s"
        if unit not in _UNITS_US:
            raise ValueError(unit)
        try:
            total += Decimal(match.group(1)) * _UNITS_US[unit]
        except InvalidOperation:
            raise ValueError(match.group(1)) from None
        rest = rest[match.end() :].lstrip()
    if total != total.to_integral_value():
        raise ValueError("finer than a microsecond")
    return int(total)


def _span(fname: str, key: str, text: str, unit_us: int, unit: str) -> int:
    try:
        micro = time_span_us(text)
    except ValueError:
        raise bad(fname, key, f"{text!r} is not a time span (like 100ms or 1s)") from None
    if micro % unit_us:
        raise bad(fname, key, f"{text!r} is not a whole number of {unit}")
    return micro // unit_us


def _value(name: str, value: Any) -> str:
    if name in MILLISECONDS:
        return f"{value}ms"
    if name in SECONDS:
        return f"{value}s"
    if name in BOOLS:
        return yes_no(bool(value))
    if name == "arp_ip_target":
        return " ".join(value)
    return option_word(value)


def _value_reason(name: str, value: Any) -> str | None:
    if name == "arp_validate" and value not in _ARP_VALIDATE_OK:
        return f"ARPValidate= takes none, active, backup or all, not {option_word(value)}"
    return None


def render(spec: BondSpec) -> Rendered:
    """`<bond>.netdev` and one `<port>.network` per port."""
    reasons = dict(REASONS)
    ports = set(spec.port_names)
    for name in ("primary", "active_slave"):
        value = getattr(spec.options, name)
        if value is not None and value not in ports:
            reasons[name] = f"written as a port's .network key, and {value} is not a port"
    kept, dropped = split_spec(spec, reasons, PORT_REASONS, _value_reason)
    lines = [f"[NetDev]\nName={spec.name}\nKind=bond\n\n[Bond]\nMode={spec.mode.label}\n"]
    lines.extend(f"{KEYS[n]}={_value(n, v)}\n" for n, v in kept if n in KEYS)
    files = {f"{spec.name}.netdev": "".join(lines)}
    flags = {n: v for n, v in kept if n in ("primary", "active_slave")}
    for port in spec.ports:
        text = f"[Match]\nName={port.name}\n\n[Network]\nBond={spec.name}\n"
        if flags.get("primary") == port.name:
            text += "PrimarySlave=yes\n"
        if flags.get("active_slave") == port.name:
            text += "ActiveSlave=yes\n"
        files[f"{port.name}.network"] = text
    return Rendered(files, tuple(dropped))


def _bool(fname: str, key: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "yes", "y", "true", "t", "on"):
        return True
    if low in ("0", "no", "n", "false", "f", "off"):
        return False
    raise bad(fname, key, f"{text!r} is not a boolean (yes/no)")


def parse(files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond from its .netdev and its ports from the .network files that name it."""
    netdevs: dict[str, tuple[str, list[Entry]]] = {}
    networks: list[tuple[str, list[Entry]]] = []
    unknown: list[str] = []
    for fname, text in files.items():
        entries = ini_entries(fname, text, "#;", continuation=True)
        if fname.endswith(".netdev"):
            kind = [e.value for e in entries if (e.section, e.key) == ("NetDev", "Kind")]
            names = [e.value for e in entries if (e.section, e.key) == ("NetDev", "Name")]
            if kind[-1:] == ["bond"] and names:
                netdevs[ifname(fname, "[NetDev] Name", names[-1])] = (fname, entries)
            else:
                unknown.append(f"{fname}: not a bond .netdev")
        elif fname.endswith(".network"):
            networks.append((fname, entries))
        else:
            raise bad(fname, "file name", "is neither a .netdev nor a .network file")
    name = pick_bond(netdevs, bond, ".netdev files")
    netdev_file, entries = netdevs[name]
    mode, reader = BondMode.BALANCE_RR, OptionReader()
    targets: list[str] | None = None
    for e in entries:
        where = f"[{e.section}] {e.key}"
        if e.section == "NetDev" and e.key in ("Name", "Kind"):
            continue
        if e.section != "Bond":
            unknown.append(f"{netdev_file}: {where}")
        elif e.key == "Mode":
            try:
                mode = BondMode.parse(e.value, "Mode")
            except InvalidInput as exc:
                raise rewrap(netdev_file, where, exc) from exc
        elif e.key == "ARPIPTargets":
            targets = [*(targets or []), *e.value.split()] if e.value else []
        elif e.key.lower() in OPTION_OF:
            option = OPTION_OF[e.key.lower()]
            reader.add(netdev_file, where, option, _read(netdev_file, where, option, e.value))
        else:
            unknown.append(f"{netdev_file}: {where}")
    if targets:
        reader.add(netdev_file, "[Bond] ARPIPTargets", "arp_ip_target", targets)
    ports = _ports(name, networks, reader, unknown)
    try:
        spec = build_spec(name, mode, reader.options(), ports)
    except InvalidInput as exc:
        raise rewrap(netdev_file, "[Network] Bond", exc) from exc
    return Parsed(spec, tuple(unknown))


def _read(fname: str, where: str, option: str, text: str) -> object:
    if option in MILLISECONDS:
        return _span(fname, where, text, 1000, "milliseconds")
    if option in SECONDS:
        return _span(fname, where, text, 10**6, "seconds")
    if option in BOOLS:
        return _bool(fname, where, text)
    return text


def _ports(
    bond: str, networks: list[tuple[str, list[Entry]]], reader: OptionReader, unknown: list[str]
) -> list[PortDraft]:
    ports: list[PortDraft] = []
    for fname, entries in networks:
        if not any((e.section, e.key, e.value) == ("Network", "Bond", bond) for e in entries):
            unknown.append(f"{fname}: not a port of {bond}")
            continue
        names = [
            w for e in entries if (e.section, e.key) == ("Match", "Name") for w in e.value.split()
        ]
        if len(names) != 1 or any(c in names[0] for c in "*?[!"):
            raise bad(fname, "[Match] Name", f"{' '.join(names)!r} does not name exactly one port")
        port = PortDraft(ifname(fname, "[Match] Name", names[0]), source=fname)
        for e in entries:
            where = f"[{e.section}] {e.key}"
            if (e.section, e.key) in (("Match", "Name"), ("Network", "Bond")):
                continue
            if e.section == "Network" and e.key in ("PrimarySlave", "ActiveSlave"):
                if _bool(fname, where, e.value):
                    option = "primary" if e.key == "PrimarySlave" else "active_slave"
                    reader.add(fname, where, option, port.name)
            else:
                unknown.append(f"{fname}: {where}")
        ports.append(port)
    return ports


__all__ = ["KEYS", "NAME", "PORT_REASONS", "REASONS", "parse", "render", "time_span_us"]
