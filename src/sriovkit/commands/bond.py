"""`sriovkit bond ...`: Linux bonds with every mode and option, their status and their files.

Thin: parse, call `ops/bond.py`, print. What a port was before it joined a bond (MTU, MAC, admin
state) is kept under the host root (`host/bondrecords.py`), so that `bond delete` and
`remove-port`, run later, give every port back as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sriovkit.commands.bondview import render_files, show_spec, state_json, state_lines
from sriovkit.errors import InvalidInput
from sriovkit.host.bondrecords import BondRecords
from sriovkit.model.bond import BondMode, BondPort, BondSpec, PortOptions, parse_options
from sriovkit.model.bond_files import FORMATS
from sriovkit.model.bond_status import parse_bond_status
from sriovkit.ops import bond as ops
from sriovkit.wiring import open_netlink, open_sysfs

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv
    from sriovkit.host.netlink import Netlink
    from sriovkit.model.bond_state import BondState

_OPTION_HELP = "A bond option as the kernel names it, KEY=VALUE (repeatable): -o miimon=100."
_FORMAT_HELP = "ifcfg, modprobe, nm (NetworkManager), networkd or interfaces (ifupdown)."
_PORT_HELP = "A port, optionally with its options: eth1 or eth1,queue_id=2,prio=10 (repeatable)."


@contextmanager
def _netlink(env: CliEnv) -> Iterator[Netlink]:
    with closing(open_netlink(env.root)) as netlink:
        yield netlink


def _options(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput("-o", f"{pair!r} is not KEY=VALUE")
        if key in out:
            raise InvalidInput(key, "given twice")
        out[key] = value
    return out


def _port(text: str) -> BondPort:
    name, *rest = text.split(",")
    values: dict[str, int] = {}
    for item in rest:
        key, sep, value = item.partition("=")
        if key not in ("queue_id", "prio") or not sep:
            raise InvalidInput("--port", f"{item!r} is not queue_id=N or prio=N")
        try:
            values[key] = int(value)
        except ValueError:
            raise InvalidInput(f"--port {key}", f"{value!r} is not a whole number") from None
    return BondPort(name, PortOptions(**values))


def _lines(env: CliEnv, state: BondState) -> list[str]:
    vfs = ops.vf_ports(open_sysfs(env.root), state)
    return state_lines(state, vfs, ops.spec_of(state).options)


@click.group()
def bond() -> None:
    """Bonds: create, show, list, set, add-port, remove-port, delete, render."""


@bond.command()
@click.argument("name")
@click.option("--mode", "mode", required=True, help="balance-rr, active-backup, ... or 0-6.")
@click.option("--port", "ports", multiple=True, required=True, help=_PORT_HELP)
@click.option("-o", "--option", "options", multiple=True, help=_OPTION_HELP)
@click.option("--mtu", type=int, default=None, help="The bond's MTU [the first port's].")
@click.option("--dry-run", is_flag=True, help="Check and print the steps; change nothing.")
@click.pass_obj
def create(
    env: CliEnv,
    name: str,
    mode: str,
    ports: tuple[str, ...],
    options: tuple[str, ...],
    mtu: int | None,
    dry_run: bool,
) -> None:
    """Create bond NAME with its options and enslave its ports, or change nothing."""
    spec = BondSpec(
        name, BondMode.parse(mode, "mode"), parse_options(_options(options)),
        tuple(_port(p) for p in ports),
    )  # fmt: skip
    records = BondRecords(env.root)
    with _netlink(env) as netlink:
        if dry_run:
            plan = ops.plan_bond(netlink, spec, mtu=mtu)
            for line in plan.lines():
                click.echo(line)
            return
        state, originals = ops.create_and_record(netlink, spec, mtu=mtu)
        records.save(name, originals)
        for line in _lines(env, state):
            click.echo(line)


@bond.command()
@click.argument("name", required=False)
@click.option("--from-file", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Parse a saved /proc/net/bonding/<bond> text instead.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(env: CliEnv, name: str | None, from_file: Path | None, as_json: bool) -> None:
    """Show bond NAME as the kernel reports it (or a saved /proc/net/bonding text)."""
    if from_file is not None:
        try:
            text = from_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput("--from-file", f"cannot read {from_file}: {exc}") from None
        status = parse_bond_status(text, source=str(from_file), name=name)
        show_spec(status, as_json)
        return
    if name is None:
        raise InvalidInput("NAME", "give a bond name (or --from-file)")
    with _netlink(env) as netlink:
        state = ops.read_bond(netlink, name)
    vfs = ops.vf_ports(open_sysfs(env.root), state)
    if as_json:
        click.echo(json.dumps(state_json(state, vfs), indent=2))
        return
    for line in state_lines(state, vfs, ops.spec_of(state).options):
        click.echo(line)


@bond.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(env: CliEnv, as_json: bool) -> None:
    """Every bond: name, mode, state, ports."""
    with _netlink(env) as netlink:
        states = ops.list_bonds(netlink)
    if as_json:
        sysfs = open_sysfs(env.root)
        out: list[dict[str, Any]] = [state_json(s, ops.vf_ports(sysfs, s)) for s in states]
        click.echo(json.dumps(out, indent=2))
        return
    for state in states:
        ports = ",".join(state.port_names) or "-"
        updown = "UP" if state.up else "DOWN"
        click.echo(f"{state.name:<16} {state.mode.label:<14} {updown:<5} ports {ports}")


@bond.command(name="set")
@click.argument("name")
@click.option("-o", "--option", "options", multiple=True, required=True, help=_OPTION_HELP)
@click.pass_obj
def set_(env: CliEnv, name: str, options: tuple[str, ...]) -> None:
    """Change options of bond NAME (checked against its mode; undone if the kernel refuses)."""
    with _netlink(env) as netlink:
        state = ops.set_options(netlink, name, parse_options(_options(options)))
    for line in _lines(env, state):
        click.echo(line)


@bond.command(name="add-port")
@click.argument("name")
@click.argument("port")
@click.pass_obj
def add_port(env: CliEnv, name: str, port: str) -> None:
    """Enslave PORT (eth1 or eth1,queue_id=2,prio=10) to bond NAME."""
    with _netlink(env) as netlink:
        state, original = ops.add_port(netlink, name, _port(port))
    BondRecords(env.root).add(name, original)
    for line in _lines(env, state):
        click.echo(line)


@bond.command(name="remove-port")
@click.argument("name")
@click.argument("port")
@click.pass_obj
def remove_port(env: CliEnv, name: str, port: str) -> None:
    """Release PORT from bond NAME and give it back its MTU, MAC and admin state."""
    records = BondRecords(env.root)
    with _netlink(env) as netlink:
        state = ops.remove_port(netlink, name, port, records.original(name, port))
    records.drop(name, port)
    for line in _lines(env, state):
        click.echo(line)


@bond.command()
@click.argument("name")
@click.pass_obj
def delete(env: CliEnv, name: str) -> None:
    """Release every port of bond NAME, give each back as it was, delete the bond."""
    records = BondRecords(env.root)
    with _netlink(env) as netlink:
        ops.delete_bond(netlink, name, records.load(name))
    records.forget(name)
    click.echo(f"bond {name} deleted; its ports are back as they were")


@bond.command()
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help=_FORMAT_HELP)  # fmt: skip
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the files into DIR instead of printing them.")  # fmt: skip
@click.pass_obj
def render(env: CliEnv, name: str, fmt: str, out: Path | None) -> None:
    """The persistent configuration of bond NAME as it is now, in one of the hosts' formats."""
    with _netlink(env) as netlink:
        state = ops.read_bond(netlink, name)
    render_files(ops.spec_of(state), fmt, out)


__all__ = ["bond"]
