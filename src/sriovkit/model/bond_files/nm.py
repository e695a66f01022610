"""NetworkManager keyfiles: `<bond>.nmconnection` and `<bond>-port-<if>.nmconnection`.

Where the rules come from:
- nm-settings-keyfile(5): GKeyFile syntax (`[setting]`, `key=value`, `#` comments), one
  connection per file; [connection] id, uuid, type, interface-name.
- nm-settings-nmcli(5) / libnm NMSettingBond: the [bond] setting is a map of options named as the
  kernel's sysfs files (mode, miimon, arp_ip_target (comma-separated), num_grat_arp / num_unsol_na,
  ad_actor_system, ...); its list has every kernel option but `coupled_control`, and adds
  `balance_slb` (NetworkManager's own, no kernel option: read back as unknown).
- NMSettingBondPort ([bond-port]): queue-id (since 1.34) and prio (since 1.44).
- A port's [connection] names its bond with controller= and port-type=bond (NetworkManager
  1.46+); older versions write master= and slave-type=bond. Both are read; controller= is written.
  The controller may be the bond's interface name or its connection's uuid.
- [ipv4] / [ipv6] method=disabled: the bond itself carries no address here (add one by editing).

The uuids are derived from the names (uuid5), so rendering the same bond twice gives the same files.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import BondMode, BondSpec, option_word
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
    whole,
)

NAME = "nm"

REASONS = {"coupled_control": "NetworkManager's bond setting has no coupled_control option"}

NM_ONLY = frozenset({"balance_slb"})
"""Bond options NetworkManager has that the kernel does not: kept as unknown when read."""

CAVEATS_CONTROLLER = (
    "controller= / port-type= need NetworkManager 1.46+ (older: master= / slave-type=)"
)
CAVEATS_QUEUE = "[bond-port] queue-id needs NetworkManager 1.34+"
CAVEATS_PRIO = "[bond-port] prio needs NetworkManager 1.44+"

_NAMESPACE = uuid.UUID("6f1d0d63-0c4e-4a53-8f3e-5b7c2a1d9e01")
_STRUCTURAL = {
    ("connection", "id"), ("connection", "uuid"), ("connection", "type"),
    ("connection", "interface-name"), ("connection", "controller"), ("connection", "master"),
    ("connection", "port-type"), ("connection", "slave-type"), ("ipv4", "method"),
    ("ipv6", "method"),
}  # fmt: skip


def connection_uuid(name: str) -> str:
    """The uuid written for connection `name` (stable across renders)."""
    return str(uuid.uuid5(_NAMESPACE, f"sriovkit:{name}"))


def escape(value: str) -> str:
    """A keyfile value with GKeyFile's escapes (leading space, backslash, control chars)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return "\\s" + out[1:] if out.startswith(" ") else out


def unescape(value: str) -> str:
    """GKeyFile's escapes undone."""
    table = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    out: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append(table.get(nxt, "\\" + nxt))
        else:
            out.append(c)
    return "".join(out)


def _text(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    blocks = []
    for name, pairs in sections:
        body = "".join(f"{k}={escape(v)}\n" for k, v in pairs)
        blocks.append(f"[{name}]\n{body}")
    return "\n".join(blocks)


def render(spec: BondSpec) -> Rendered:
    """The bond's connection and one port connection per port."""
    kept, dropped = split_spec(spec, REASONS)
    bond_pairs = [("mode", spec.mode.label)]
    for name, value in kept:
        key = "num_grat_arp" if name == "num_peer_notif" else name
        bond_pairs.append((key, option_word(value)))
    files = {
        f"{spec.name}.nmconnection": _text([
            ("connection", [("id", spec.name), ("uuid", connection_uuid(spec.name)),
                            ("type", "bond"), ("interface-name", spec.name)]),
            ("bond", bond_pairs),
            ("ipv4", [("method", "disabled")]),
            ("ipv6", [("method", "disabled")]),
        ]),
    }  # fmt: skip
    caveats: list[str] = [CAVEATS_CONTROLLER] if spec.ports else []
    for port in spec.ports:
        conn = f"{spec.name}-port-{port.name}"
        sections = [("connection", [
            ("id", conn), ("uuid", connection_uuid(conn)), ("type", "ethernet"),
            ("interface-name", port.name), ("controller", spec.name), ("port-type", "bond"),
        ])]  # fmt: skip
        extra: list[tuple[str, str]] = []
        if port.options.queue_id is not None:
            extra.append(("queue-id", str(port.options.queue_id)))
            caveats.append(CAVEATS_QUEUE)
        if port.options.prio is not None:
            extra.append(("prio", str(port.options.prio)))
            caveats.append(CAVEATS_PRIO)
        if extra:
            sections.append(("bond-port", extra))
        files[f"{conn}.nmconnection"] = _text(sections)
    return Rendered(files, tuple(dropped), tuple(dict.fromkeys(caveats)))


def _settings(fname: str, text: str) -> dict[str, dict[str, Entry]]:
    out: dict[str, dict[str, Entry]] = {}
    for entry in ini_entries(fname, text, "#", continuation=False):
        section = out.setdefault(entry.section, {})
        if entry.key in section:
            raise bad(fname, f"[{entry.section}] {entry.key}", f"given twice (line {entry.number})")
        section[entry.key] = Entry(entry.section, entry.key, unescape(entry.value), entry.number)
    if "connection" not in out:
        raise bad(fname, "[connection]", "missing: not a NetworkManager keyfile")
    return out


def _get(conf: dict[str, dict[str, Entry]], section: str, key: str) -> str | None:
    entry = conf.get(section, {}).get(key)
    return entry.value if entry else None


def parse(files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond and its ports from keyfiles; other connections and keys are listed as unknown."""
    confs = {fname: _settings(fname, text) for fname, text in files.items()}
    bonds: dict[str, str] = {}
    for fname, conf in confs.items():
        if _get(conf, "connection", "type") == "bond":
            iface = _get(conf, "connection", "interface-name")
            if iface is None:
                raise bad(fname, "[connection] interface-name", "missing for a bond connection")
            bonds[ifname(fname, "[connection] interface-name", iface)] = fname
    name = pick_bond(bonds, bond, "keyfiles")
    bond_file = bonds[name]
    conf = confs[bond_file]
    refs = {name, _get(conf, "connection", "uuid"), _get(conf, "connection", "id")} - {None}
    unknown = _unknown(bond_file, conf, {"bond"})
    mode = BondMode.BALANCE_RR  # NetworkManager's default too
    reader = OptionReader()
    for key, entry in conf.get("bond", {}).items():
        where = f"[bond] {key}"
        if key == "mode":
            try:
                mode = BondMode.parse(entry.value, "mode")
            except InvalidInput as exc:
                raise rewrap(bond_file, where, exc) from exc
        elif key in NM_ONLY:
            unknown.append(f"{bond_file}: {where} (NetworkManager's own, no kernel option)")
        else:
            reader.add(bond_file, where, key, entry.value)
    ports: list[PortDraft] = []
    for fname, pconf in confs.items():
        if fname == bond_file:
            continue
        controller = _get(pconf, "connection", "controller") or _get(pconf, "connection", "master")
        kind = _get(pconf, "connection", "port-type") or _get(pconf, "connection", "slave-type")
        if controller not in refs or kind != "bond":
            unknown.append(f"{fname}: not a port of {name}")
            continue
        ports.append(_port(fname, pconf))
        unknown.extend(_unknown(fname, pconf, {"bond-port", "ethernet"}))
    try:
        spec = build_spec(name, mode, reader.options(), ports)
    except InvalidInput as exc:
        raise rewrap(bond_file, "[connection] controller", exc) from exc
    return Parsed(spec, tuple(unknown))


def _port(fname: str, conf: dict[str, dict[str, Entry]]) -> PortDraft:
    iface = _get(conf, "connection", "interface-name")
    if iface is None:
        raise bad(fname, "[connection] interface-name", "missing for a bond port")
    port = PortDraft(ifname(fname, "[connection] interface-name", iface), source=fname)
    for key, entry in conf.get("bond-port", {}).items():
        where = f"[bond-port] {key}"
        if key == "queue-id":
            port.queue_id = whole(fname, where, entry.value, 0, 65535)
        elif key == "prio":
            port.prio = whole(fname, where, entry.value, -(2**31), 2**31 - 1)
        else:
            raise bad(fname, where, "is not a bond-port property (queue-id, prio)")
    return port


def _unknown(fname: str, conf: dict[str, dict[str, Entry]], read: set[str]) -> list[str]:
    return [
        f"{fname}: [{section}] {key}"
        for section, entries in conf.items()
        if section not in read
        for key in entries
        if (section, key) not in _STRUCTURAL
    ]


__all__ = ["NAME", "REASONS", "connection_uuid", "escape", "parse", "render", "unescape"]
