"""network-scripts: `ifcfg-<bond>` and `ifcfg-<port>` (initscripts, and NetworkManager's ifcfg-rh).

Where the rules come from:
- Red Hat's Deployment Guide, "Channel Bonding Interfaces" and "Interface Configuration Files":
  the bond's file has DEVICE, TYPE=Bond / BONDING_MASTER=yes, BONDING_OPTS="<option>=<value> ..."
  with the same names and values as `/sys/class/net/<bond>/bonding/`, ONBOOT, BOOTPROTO=none;
  each port's file has DEVICE, MASTER=<bond>, SLAVE=yes.
- initscripts' ifup-eth writes each BONDING_OPTS word to the bond's sysfs file of that name, and
  for `arp_ip_target=a,b` (no leading `+`) adds each address in turn; a word that already starts
  with `+` goes to sysfs as is. So IPv4 targets are written `arp_ip_target=a,b` and IPv6 targets
  (sysfs takes one `+addr` per write) as one `ns_ip6_target=+addr` word each.
- The files are shell: values with spaces are double-quoted; `#` starts a comment.
- `num_peer_notif` is written `num_grat_arp`: that is the sysfs file's name (and NetworkManager's).
- Per-port `queue_id` / `prio`: initscripts have no per-port key. NetworkManager's ifcfg-rh
  reader takes BOND_PORT_QUEUE_ID= and BOND_PORT_PRIO= in the port's file; they are written, with
  a caveat saying only NetworkManager honours them.

Cannot express: `coupled_control` (netlink only: no sysfs file, and NetworkManager has no such
bond option).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import BondMode, BondOptions, BondSpec, option_word, split_words
from sriovkit.model.bond_files._common import (
    OptionReader,
    Parsed,
    PortDraft,
    Rendered,
    bad,
    build_spec,
    ifname,
    pick_bond,
    rewrap,
    split_spec,
    whole,
)

NAME = "ifcfg"

REASONS = {
    "coupled_control": "netlink only: no sysfs file for BONDING_OPTS to write, and "
    "NetworkManager's ifcfg-rh has no such bond option",
}

CAVEATS = (
    "BOND_PORT_QUEUE_ID= / BOND_PORT_PRIO= in a port's file are read by NetworkManager's "
    "ifcfg-rh plugin (queue-id since 1.34, prio since 1.44); legacy initscripts ignore them",
)

_SAFE = re.compile(r"^[A-Za-z0-9_.,:+/=@%-]*$")
_BOND_KEYS = {"DEVICE", "NAME", "TYPE", "BONDING_MASTER", "BONDING_OPTS", "ONBOOT", "BOOTPROTO"}
_PORT_KEYS = {"DEVICE", "NAME", "TYPE", "MASTER", "SLAVE", "ONBOOT", "BOOTPROTO",
              "BOND_PORT_QUEUE_ID", "BOND_PORT_PRIO"}  # fmt: skip


def quote(value: str) -> str:
    """A value as ifcfg (shell) writes it: bare when safe, else in double quotes."""
    if value and _SAFE.match(value):
        return value
    escaped = "".join("\\" + c if c in '"\\$`' else c for c in value)
    return f'"{escaped}"'


def opts_text(spec: BondSpec, kept: list[tuple[str, object]]) -> str:
    """BONDING_OPTS's words: mode first, then each option by its sysfs name."""
    words = [f"mode={spec.mode.label}"]
    for name, value in kept:
        if name == "ns_ip6_target" and isinstance(value, tuple):
            words.extend(f"ns_ip6_target=+{addr}" for addr in value)
        elif name == "num_peer_notif":
            words.append(f"num_grat_arp={option_word(value)}")
        else:
            words.append(f"{name}={option_word(value)}")
    return " ".join(words)


def _file(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{key}={quote(value)}\n" for key, value in pairs)


def render(spec: BondSpec) -> Rendered:
    """`ifcfg-<bond>` and one `ifcfg-<port>` per port."""
    kept, dropped = split_spec(spec, REASONS)
    files = {
        f"ifcfg-{spec.name}": _file([
            ("DEVICE", spec.name), ("NAME", spec.name), ("TYPE", "Bond"),
            ("BONDING_MASTER", "yes"), ("BONDING_OPTS", opts_text(spec, kept)),
            ("ONBOOT", "yes"), ("BOOTPROTO", "none"),
        ]),
    }  # fmt: skip
    caveats: tuple[str, ...] = ()
    for port in spec.ports:
        pairs = [("DEVICE", port.name), ("NAME", port.name), ("TYPE", "Ethernet"),
                 ("MASTER", spec.name), ("SLAVE", "yes"), ("ONBOOT", "yes"),
                 ("BOOTPROTO", "none")]  # fmt: skip
        if port.options.queue_id is not None:
            pairs.append(("BOND_PORT_QUEUE_ID", str(port.options.queue_id)))
        if port.options.prio is not None:
            pairs.append(("BOND_PORT_PRIO", str(port.options.prio)))
        if port.options.queue_id is not None or port.options.prio is not None:
            caveats = CAVEATS
        files[f"ifcfg-{port.name}"] = _file(pairs)
    return Rendered(files, tuple(dropped), caveats)


def variables(fname: str, text: str) -> dict[str, str]:
    """The `KEY=value` assignments of an ifcfg file, unquoted as the shell would."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError as exc:
            raise bad(fname, f"line {number}", f"{line!r}: {exc}") from None
        if words and words[0] == "export":
            words = words[1:]
        if not words:
            continue
        key, sep, value = words[0].partition("=")
        if len(words) != 1 or not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise bad(fname, f"line {number}", f"{line!r} is not KEY=value (not an ifcfg file)")
        out[key] = value
    return out


def _is_bond(env: Mapping[str, str]) -> bool:
    return env.get("BONDING_MASTER", "").lower() == "yes" or env.get("TYPE", "").lower() == "bond"


def parse(files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond (and its ports) from ifcfg files; other files and keys are listed as unknown."""
    envs = {fname: variables(fname, text) for fname, text in files.items()}
    bonds: dict[str, str] = {}
    for fname, env in envs.items():
        if _is_bond(env):
            device = env.get("DEVICE") or fname.removeprefix("ifcfg-")
            bonds[ifname(fname, "DEVICE", device)] = fname
    name = pick_bond(bonds, bond, "ifcfg files")
    bond_file = bonds[name]
    env = envs[bond_file]
    unknown = [f"{bond_file}: {key}" for key in env if key not in _BOND_KEYS]
    mode, options = _bonding_opts(bond_file, env.get("BONDING_OPTS", ""))
    ports: list[PortDraft] = []
    for fname, penv in envs.items():
        if fname == bond_file:
            continue
        if penv.get("MASTER") != name:
            unknown.append(f"{fname}: not a port of {name}")
            continue
        device = penv.get("DEVICE") or fname.removeprefix("ifcfg-")
        port = PortDraft(ifname(fname, "DEVICE", device), source=fname)
        if "BOND_PORT_QUEUE_ID" in penv:
            port.queue_id = whole(fname, "BOND_PORT_QUEUE_ID", penv["BOND_PORT_QUEUE_ID"],
                                  0, 65535)  # fmt: skip
        if "BOND_PORT_PRIO" in penv:
            port.prio = whole(fname, "BOND_PORT_PRIO", penv["BOND_PORT_PRIO"], -(2**31), 2**31 - 1)
        unknown.extend(f"{fname}: {key}" for key in penv if key not in _PORT_KEYS)
        ports.append(port)
    try:
        spec = build_spec(name, mode, options, ports)
    except InvalidInput as exc:
        raise rewrap(bond_file, "MASTER", exc) from exc
    return Parsed(spec, tuple(unknown))


def _bonding_opts(fname: str, text: str) -> tuple[BondMode, BondOptions]:
    try:
        words = split_words(text, "BONDING_OPTS")
    except InvalidInput as exc:
        raise rewrap(fname, "BONDING_OPTS", exc) from exc
    reader = OptionReader()
    mode = BondMode.BALANCE_RR  # the kernel's default when BONDING_OPTS names none
    for option, value in words:
        if option.lower() == "mode":
            try:
                mode = BondMode.parse(value, "mode")
            except InvalidInput as exc:
                raise rewrap(fname, "BONDING_OPTS", exc) from exc
            continue
        reader.add(fname, "BONDING_OPTS", option, value)
    return mode, reader.options()


__all__ = ["NAME", "REASONS", "parse", "quote", "render", "variables"]
