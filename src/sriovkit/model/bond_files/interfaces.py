"""ifupdown `/etc/network/interfaces` stanzas, with ifenslave's `bond-*` options.

Where the rules come from:
- interfaces(5): `auto` / `allow-*` lines, `iface <name> <family> <method>` stanzas whose option
  lines follow (indented by convention), `#` comments at the start of a line, a trailing
  backslash continues a line, `source` / `source-directory` include other files.
- ifenslave's README.Debian: the bond's stanza takes `bond-slaves <if> ...` (or `none`, with each
  port's stanza saying `bond-master <bond>`), and each bonding option as `bond-` + the sysfs
  name with `_` turned into `-` (`bond-mode`, `bond-miimon`, `bond-lacp-rate`,
  `bond-xmit-hash-policy`, `bond-arp-ip-target` with addresses separated by spaces, ...).
  `num_peer_notif` is written `bond-num-grat-arp` (the sysfs file).

Rendered as: `bond-slaves none` in the bond's stanza and one `iface <port> inet manual` stanza
with `bond-master` per port, in enslave order (the form that also works with hotplugged ports);
parsed from either form. The file is meant for `/etc/network/interfaces.d/<bond>`.

Cannot express: peer_notif_delay, ns_ip6_target, arp_missed_max, lacp_active, coupled_control
(newer than ifenslave's list of options), and per-port queue_id and prio (ifenslave has no
per-port key for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import ALIASES, OPTIONS, BondMode, BondSpec, option_word
from sriovkit.model.bond_files._common import (
    OptionReader,
    Parsed,
    PortDraft,
    Rendered,
    bad,
    build_spec,
    ifname,
    logical_lines,
    pick_bond,
    rewrap,
    split_spec,
)

NAME = "interfaces"

_NEWER = "not among ifenslave's bond-* options (the option is newer than ifenslave's hooks)"
REASONS = {
    "peer_notif_delay": _NEWER, "ns_ip6_target": _NEWER, "arp_missed_max": _NEWER,
    "lacp_active": _NEWER, "coupled_control": _NEWER,
}  # fmt: skip
PORT_REASONS = {
    "queue_id": "ifenslave has no per-port queue_id option",
    "prio": "ifenslave has no per-port prio option",
}
_STANZAS = {"iface", "auto", "mapping", "source", "source-directory", "no-auto-down",
            "no-scripts", "rename"}  # fmt: skip


def key_of(option: str) -> str:
    """The ifenslave option for a kernel option (`lacp_rate` -> `bond-lacp-rate`)."""
    name = "num_grat_arp" if option == "num_peer_notif" else option
    return "bond-" + name.replace("_", "-")


def render(spec: BondSpec) -> Rendered:
    """`interfaces.d/<bond>`: the bond's stanza and one per port."""
    kept, dropped = split_spec(spec, REASONS, PORT_REASONS)
    lines = [f"auto {spec.name}", f"iface {spec.name} inet manual", "    bond-slaves none",
             f"    bond-mode {spec.mode.label}"]  # fmt: skip
    for name, value in kept:
        word = " ".join(value) if isinstance(value, tuple) else option_word(value)
        lines.append(f"    {key_of(name)} {word}")
    for port in spec.ports:
        lines += ["", f"auto {port.name}", f"iface {port.name} inet manual",
                  f"    bond-master {spec.name}"]  # fmt: skip
    return Rendered({f"interfaces.d/{spec.name}": "\n".join(lines) + "\n"}, tuple(dropped))


@dataclass
class _Iface:
    name: str
    fname: str
    options: list[tuple[str, str, int]] = field(default_factory=list)  # key, value, line


def stanzas(fname: str, text: str) -> tuple[list[_Iface], list[str]]:
    """Every `iface` stanza (same name twice: merged) and every other line, kept as unknown."""
    ifaces: dict[str, _Iface] = {}
    other: list[str] = []
    current: _Iface | None = None
    for line in logical_lines(text, "#"):
        word, _, rest = line.text.partition(" ")
        if word in _STANZAS or word.startswith("allow-"):
            current = None
            if word == "iface":
                parts = rest.split()
                if len(parts) < 3:
                    raise bad(fname, f"line {line.number}", "iface needs <name> <family> <method>")
                name = ifname(fname, f"line {line.number} iface", parts[0])
                current = ifaces.setdefault(name, _Iface(name, fname))
            elif word not in ("auto",) and not word.startswith("allow-"):
                other.append(f"{fname}: line {line.number} {word}")
            continue
        if current is None:
            reason = f"{line.text!r} is outside any iface stanza (not an interfaces file)"
            raise bad(fname, f"line {line.number}", reason)
        current.options.append((word, rest.strip(), line.number))
    return list(ifaces.values()), other


def parse(files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond and its ports from interfaces(5) text; unrelated stanzas are listed as unknown."""
    ifaces: list[_Iface] = []
    unknown: list[str] = []
    for fname, text in files.items():
        found, other = stanzas(fname, text)
        ifaces += found
        unknown += other
    bonds = [
        i.name for i in ifaces if any(k in ("bond-slaves", "bond-mode") for k, _, _ in i.options)
    ]
    bonds += [v.split()[0] for i in ifaces for k, v, _ in i.options if k == "bond-master" and v]
    name = pick_bond(bonds, bond, "interfaces files")
    by_name = {i.name: i for i in ifaces}
    master = by_name.get(name)
    if master is None:
        raise InvalidInput("bond", f"ports name {name} as bond-master but it has no iface stanza")
    mode, reader, port_names = BondMode.BALANCE_RR, OptionReader(), []
    for key, value, number in master.options:
        where = f"{key} (line {number})"
        if key == "bond-slaves":
            names = [] if value in ("none", "") else value.split()
            if value == "all":
                raise bad(master.fname, where, "`all` names no particular ports; list them")
            port_names += [ifname(master.fname, where, n) for n in names]
        elif key == "bond-mode":
            try:
                mode = BondMode.parse(value, "bond-mode")
            except InvalidInput as exc:
                raise rewrap(master.fname, where, exc) from exc
        elif key.startswith("bond-"):
            _option(master.fname, where, key, value, reader, unknown)
        else:
            unknown.append(f"{master.fname}: iface {name} {key}")
    for iface in ifaces:
        if iface is master:
            continue
        masters = [v for k, v, _ in iface.options if k == "bond-master"]
        if masters[-1:] != [name]:
            if iface.name not in port_names:
                unknown.append(f"{iface.fname}: iface {iface.name} is not a port of {name}")
            continue
        port_names.append(iface.name)
        unknown += [f"{iface.fname}: iface {iface.name} {k}" for k, _, _ in iface.options
                    if k != "bond-master"]  # fmt: skip
    ports = [PortDraft(n, source=master.fname) for n in dict.fromkeys(port_names)]
    try:
        spec = build_spec(name, mode, reader.options(), ports)
    except InvalidInput as exc:
        raise rewrap(master.fname, "bond-slaves", exc) from exc
    return Parsed(spec, tuple(unknown))


def _option(
    fname: str, where: str, key: str, value: str, reader: OptionReader, unknown: list[str]
) -> None:
    option = key.removeprefix("bond-").replace("-", "_")
    option = ALIASES.get(option, option)
    if option not in OPTIONS:
        unknown.append(f"{fname}: {key}")
        return
    if option == "primary" and len(value.split()) > 1:  # ifenslave lets it list candidates
        unknown.append(f"{fname}: {key} candidates after the first: {' '.join(value.split()[1:])}")
        value = value.split(maxsplit=1)[0]
    if option in ("arp_ip_target", "ns_ip6_target"):
        value = ",".join(value.replace(",", " ").split())
    reader.add(fname, where, option, value)


__all__ = ["NAME", "PORT_REASONS", "REASONS", "key_of", "parse", "render", "stanzas"]
