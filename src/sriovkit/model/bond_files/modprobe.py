"""`/etc/modprobe.d/<bond>.conf`: `alias <bond> bonding` and `options <bond> <param>=<value> ...`.

Where the rules come from:
- modprobe.d(5): `alias wildcard modulename`; `options modulename option...`, where modulename
  may be an alias; `#` comments; a trailing backslash continues a line.
- The kernel's Documentation/networking/bonding.rst, "Bonding Driver Options" and `modinfo
  bonding`: the module parameters are max_bonds, tx_queues, num_grat_arp, num_unsol_na, miimon,
  updelay, downdelay, use_carrier, mode, primary, primary_reselect, lacp_rate, ad_select,
  xmit_hash_policy, arp_interval, arp_ip_target (an array: comma-separated), arp_validate,
  arp_all_targets, fail_over_mac, all_slaves_active, resend_igmp, packets_per_slave,
  lp_interval, min_links, tlb_dynamic_lb. The other options exist only in sysfs / netlink.

Decision (`options bond0` vs `options bonding`): module parameters are not per bond. They are
read once, when the module loads, and become the defaults of every bond the driver creates from
then on; loading creates bond0..bond<max_bonds-1>. We write `alias <bond> bonding` and
`options <bond> ...`, so the options are taken when the module is loaded through that alias (as
`modprobe <bond>` or the kernel's request for the name does) and only then. Parse reads both
`options <bond>` and `options bonding`. A bond's ports cannot be written here at all: the module
does not enslave anything (Red Hat's guides pair this file with ifcfg files for that).
"""

from __future__ import annotations

from collections.abc import Mapping

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import ALIASES, OPTIONS, BondMode, BondOptions, BondSpec, option_word
from sriovkit.model.bond_files._common import (
    OptionReader,
    Parsed,
    Rendered,
    Unsupported,
    bad,
    ifname,
    logical_lines,
    pick_bond,
    split_spec,
)

NAME = "modprobe"

MODULE_PARAMS = frozenset({
    "num_peer_notif", "miimon", "updelay", "downdelay", "use_carrier", "primary",
    "primary_reselect", "lacp_rate", "ad_select", "xmit_hash_policy", "arp_interval",
    "arp_ip_target", "arp_validate", "arp_all_targets", "fail_over_mac", "all_slaves_active",
    "resend_igmp", "packets_per_slave", "lp_interval", "min_links", "tlb_dynamic_lb",
})  # fmt: skip
"""Bond options that are also module parameters (num_peer_notif as num_grat_arp)."""

MODULE_ONLY = frozenset({"max_bonds", "tx_queues"})
"""Module parameters that are not options of one bond: kept as unknown when read."""

REASONS = {
    name: "not a parameter of the bonding module (sysfs / netlink only)"
    for name in OPTIONS
    if name not in MODULE_PARAMS
}
_PORT_REASON = "the bonding module does not enslave ports; use ifcfg, nm, networkd or interfaces"

CAVEATS = (
    "module parameters are read once, when the module is loaded through this alias, and are "
    "the defaults of every bond created after that; loading creates bond0..bond<max_bonds-1> "
    "(max_bonds defaults to 1)",
)


def render(spec: BondSpec) -> Rendered:
    """`<bond>.conf` for /etc/modprobe.d/."""
    kept, dropped = split_spec(spec, REASONS)
    for port in spec.ports:
        dropped.append(Unsupported("port", _PORT_REASON, port.name))
    words = [f"mode={spec.mode.label}"]
    for name, value in kept:
        key = "num_grat_arp" if name == "num_peer_notif" else name
        words.append(f"{key}={option_word(value)}")
    text = (
        f"# bonding options for {spec.name}: read when the module loads through the alias\n"
        f"alias {spec.name} bonding\n"
        f"options {spec.name} {' '.join(words)}\n"
    )
    return Rendered({f"{spec.name}.conf": text}, tuple(dropped), CAVEATS)


def parse(files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond from modprobe.d files (no ports: the format has none)."""
    aliases: dict[str, str] = {}
    options: list[tuple[str, str, list[str]]] = []  # (file, target, words)
    unknown: list[str] = []
    for fname, text in files.items():
        for line in logical_lines(text):
            words = line.text.split()
            command = words[0]
            if command == "alias" and len(words) == 3:
                if words[2] == "bonding":
                    aliases[ifname(fname, "alias", words[1])] = fname
                else:
                    unknown.append(f"{fname}: line {line.number} alias for {words[2]}")
            elif command == "options" and len(words) >= 2:
                options.append((fname, words[1], words[2:]))
            elif command in ("install", "remove", "blacklist", "softdep", "alias", "options"):
                unknown.append(f"{fname}: line {line.number} {command}")
            else:
                raise bad(
                    fname, f"line {line.number}", f"{line.text!r} is not a modprobe.d command"
                )
    if aliases or not any(target == "bonding" for _, target, _ in options):
        name = pick_bond(aliases, bond, "modprobe.d files")
    else:  # only `options bonding`: the driver's own first bond unless one is named
        name = bond or "bond0"
    reader = OptionReader()
    mode = BondMode.BALANCE_RR
    for fname, target, words in options:
        if target not in (name, "bonding"):
            unknown.append(f"{fname}: options {target}")
            continue
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise bad(fname, f"options {target}", f"{word!r} is not name=value")
            option = ALIASES.get(key.lower(), key.lower())
            if key.lower() == "mode":
                try:
                    mode = BondMode.parse(value, "mode")
                except InvalidInput as exc:
                    raise bad(fname, f"options {target}", f"mode: {exc.reason}") from exc
            elif key.lower() in MODULE_ONLY:
                unknown.append(f"{fname}: {key} (a module parameter, not a bond option)")
            elif option in OPTIONS and option not in MODULE_PARAMS:
                raise bad(fname, f"options {target}", f"{key} is not a bonding module parameter")
            else:
                reader.add(fname, f"options {target}", key, value)
    opts: BondOptions = reader.options()
    return Parsed(BondSpec(name, mode, opts), tuple(unknown))


__all__ = ["MODULE_PARAMS", "NAME", "REASONS", "parse", "render"]
