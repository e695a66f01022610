"""What every persistent-configuration format shares: results, errors naming file and key, options.

Pure: text in, text out. A caller writes the rendered files and reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.attachment import check_ifname
from sriovkit.model.bond import OPTIONS, BondOptions, BondPort, BondSpec, PortOptions, parse_option

PORT_OPTIONS = ("queue_id", "prio")
"""Per-port options by their kernel names (IFLA_BOND_SLAVE_QUEUE_ID, IFLA_BOND_SLAVE_PRIO)."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """One option (or per-port option of `port`) a format cannot express, and why.

    `option` is a kernel option name, `queue_id` / `prio` with `port`, or `port` for a whole port.
    """

    option: str
    reason: str
    port: str | None = None

    def __str__(self) -> str:
        if self.port is None:
            where = self.option
        elif self.option == "port":  # the whole port
            where = f"port {self.port}"
        else:
            where = f"port {self.port} {self.option}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Rendered:
    """Files (name -> text) for a bond and its ports, what they leave out, and caveats.

    `unsupported` lists every option the format cannot express (so it is not in `files`);
    `caveats` are things written that only some readers of the format honour.
    """

    files: dict[str, str]
    unsupported: tuple[Unsupported, ...] = ()
    caveats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Parsed:
    """A bond read back from files, and every key or line met that is not part of it."""

    spec: BondSpec
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BondFormat:
    """One format: its name, what it is, and its pure render and parse."""

    name: str
    summary: str
    render: Callable[[BondSpec], Rendered]
    parse: Callable[[Mapping[str, str], str | None], Parsed]


def bad(fname: str, key: str, reason: str) -> InvalidInput:
    """InvalidInput naming the key and the file it is in."""
    return InvalidInput(f"{key} in {fname}", reason)


def rewrap(fname: str, key: str, exc: InvalidInput) -> InvalidInput:
    """A model error (which names the option) re-raised naming the file and key too."""
    detail = exc.reason if exc.field in (key, "") else f"{exc.field}: {exc.reason}"
    return bad(fname, key, detail)


def ifname(fname: str, key: str, text: str) -> str:
    """An interface name read from `key` of `fname`, checked as the kernel would."""
    try:
        return check_ifname(text.strip(), key)
    except InvalidInput as exc:
        raise bad(fname, key, exc.reason) from exc


def whole(fname: str, key: str, text: str, low: int, high: int) -> int:
    """A whole number in low..high read from `key` of `fname`."""
    try:
        number = int(text.strip(), 10)
    except ValueError:
        raise bad(fname, key, f"{text!r} is not a whole number") from None
    if not low <= number <= high:
        raise bad(fname, key, f"{number} is out of range {low}-{high}")
    return number


class OptionReader:
    """Bond options read from files: each parsed by the model, errors naming file and key."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.where: dict[str, str] = {}

    def add(self, fname: str, key: str, option: str, value: object) -> None:
        """Option `option` (kernel name or alias) = `value`, read from `key` of `fname`."""
        try:
            name, parsed = parse_option(option, value)
        except InvalidInput as exc:
            raise rewrap(fname, key, exc) from exc
        if name in self.values:
            raise bad(fname, key, f"{name} given twice (also as {self.where[name]})")
        self.values[name] = parsed
        self.where[name] = f"{key} in {fname}"

    def options(self) -> BondOptions:
        """The options read so far."""
        return BondOptions(**self.values)


def split_spec(
    spec: BondSpec,
    reasons: Mapping[str, str],
    port_reasons: Mapping[str, str] | None = None,
    value_reason: Callable[[str, Any], str | None] | None = None,
) -> tuple[list[tuple[str, Any]], list[Unsupported]]:
    """The options of `spec` a format can write, and an `Unsupported` for each other one.

    `reasons` names each option the format cannot express and why; `port_reasons` the same for
    per-port options; `value_reason` may refuse one value of an otherwise expressible option.
    """
    kept: list[tuple[str, Any]] = []
    dropped: list[Unsupported] = []
    for name, value in spec.options.given():
        why = reasons.get(name) or (value_reason(name, value) if value_reason else None)
        if why:
            dropped.append(Unsupported(name, why))
        else:
            kept.append((name, value))
    for port in spec.ports:
        for pname in PORT_OPTIONS:
            if getattr(port.options, pname) is not None and port_reasons and pname in port_reasons:
                dropped.append(Unsupported(pname, port_reasons[pname], port.name))
    return kept, dropped


def without(spec: BondSpec, dropped: Iterable[Unsupported]) -> BondSpec:
    """`spec` with every unsupported option cleared: what a round trip through a format gives."""
    items = list(dropped)
    bond_names = {u.option for u in items if u.port is None and u.option in OPTIONS}
    options = replace(spec.options, **dict.fromkeys(bond_names))
    ports: list[BondPort] = []
    for port in spec.ports:
        if any(u.port == port.name and u.option == "port" for u in items):
            continue
        cleared = {u.option: None for u in items if u.port == port.name and u.option != "port"}
        ports.append(replace(port, options=replace(port.options, **cleared)))
    return replace(spec, options=options, ports=tuple(ports))


def pick_bond(found: Iterable[str], bond: str | None, what: str) -> str:
    """The one bond the files describe (or `bond` if named and present)."""
    names = list(dict.fromkeys(found))
    if bond is not None:
        if bond not in names:
            have = ", ".join(names) or "none"
            raise InvalidInput("bond", f"{bond} is not in the {what} given (bonds there: {have})")
        return bond
    if not names:
        raise InvalidInput("bond", f"the {what} given hold no bond")
    if len(names) > 1:
        raise InvalidInput("bond", f"the {what} given hold bonds {', '.join(names)}: name one")
    return names[0]


@dataclass(slots=True)
class PortDraft:
    """A port as read, before the spec is built."""

    name: str
    queue_id: int | None = None
    prio: int | None = None
    source: str = ""

    def build(self) -> BondPort:
        """The model's BondPort."""
        return BondPort(self.name, PortOptions(self.queue_id, self.prio))


def build_spec(name: str, mode: Any, options: BondOptions, ports: Iterable[PortDraft]) -> BondSpec:
    """The BondSpec, with the model's own checks (duplicate ports, the bond as its own port)."""
    return BondSpec(name, mode, options, tuple(p.build() for p in ports))


@dataclass(frozen=True, slots=True)
class Line:
    """One logical line of a text file: its number (1-based, of its first physical line)."""

    number: int
    text: str


def logical_lines(text: str, comment: str = "#", continuation: bool = True) -> list[Line]:
    """Non-blank, non-comment lines; a trailing backslash joins the next line when allowed."""
    out: list[Line] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped[0] in comment):
            continue
        if not pending:
            start = number
        if continuation and stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        out.append(Line(start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        out.append(Line(start, " ".join(p for p in pending if p)))
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    """One `key=value` of an INI-style file (systemd units, NetworkManager keyfiles)."""

    section: str
    key: str
    value: str
    number: int


_SECTION = re.compile(r"^\[([^\]]+)\]$")


def ini_entries(fname: str, text: str, comment: str, continuation: bool) -> list[Entry]:
    """Every entry of an INI-style file, in order; text that is not the format is InvalidInput."""
    entries: list[Entry] = []
    section = ""
    saw_section = False
    for line in logical_lines(text, comment, continuation):
        match = _SECTION.match(line.text)
        if match:
            section, saw_section = match.group(1).strip(), True
            continue
        key, sep, value = line.text.partition("=")
        if not sep or not key.strip():
            raise bad(fname, f"line {line.number}", f"{line.text!r} is not [section] or key=value")
        if not saw_section:
            raise bad(fname, key.strip(), f"line {line.number} comes before any [section]")
        entries.append(Entry(section, key.strip(), value.strip(), line.number))
    return entries


def yes_no(value: bool) -> str:
    """A boolean as systemd and NetworkManager write it."""
    return "yes" if value else "no"
