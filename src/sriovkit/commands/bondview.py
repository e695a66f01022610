"""How `sriovkit bond` prints a bond: lines for people, stable JSON keys for programs."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from sriovkit.host.atomicfile import write_file
from sriovkit.model.bond import BondOptions, BondSpec
from sriovkit.model.bond_files import render
from sriovkit.model.bond_state import BondState
from sriovkit.model.bond_status import BondStatus
from sriovkit.model.pci import PciAddress

VfPorts = Mapping[str, tuple[PciAddress, int]]
"""Port name -> (PF PCI address, VF index) for the ports that are VFs."""


def _plain(value: Any) -> Any:
    """A JSON-able form: enums by their label, dataclasses as dicts, tuples as lists."""
    label = getattr(value, "label", None)
    if isinstance(value, enum.Enum):
        return label if isinstance(label, str) else value.name.lower()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, PciAddress):
        return str(value)
    return value


def state_json(state: BondState, vfs: VfPorts) -> dict[str, Any]:
    """One bond: its mode, every option the kernel reports, ports (with PF and VF index)."""
    ports = []
    for port in state.ports:
        entry = _plain(port)
        vf = vfs.get(port.name)
        entry["pf"], entry["vf"] = (str(vf[0]), vf[1]) if vf else (None, None)
        ports.append(entry)
    return {
        "name": state.name,
        "mode": state.mode.label,
        "up": state.up,
        "carrier": state.carrier,
        "mtu": state.mtu,
        "mac": state.mac,
        "active_port": state.active_port,
        "options": {k: _plain(v) for k, v in state.options.given()},
        "ad_info": _plain(state.ad_info),
        "ports": ports,
    }


def state_lines(state: BondState, vfs: VfPorts, chosen: BondOptions) -> list[str]:
    """One bond for people: a header, the options not at the mode's default (`chosen`), one
    line per port (with its PF and VF index when it is a VF)."""
    updown = "UP" if state.up else "DOWN"
    carrier = "carrier" if state.carrier else "no carrier"
    out = [f"{state.name}: {state.mode.label}, {updown}, {carrier}, mtu {state.mtu}, "
           f"mac {state.mac}"]  # fmt: skip
    words = " ".join(f"{k}={v}" for k, v in chosen.words())
    out.append(f"  options {words or '(the defaults of the mode)'}")
    if state.active_port is not None:
        out.append(f"  active port {state.active_port}")
    if state.ad_info is not None:
        ad = state.ad_info
        out.append(f"  802.3ad aggregator {ad.aggregator}: {ad.num_ports} port(s), "
                   f"actor key {ad.actor_key}, partner key {ad.partner_key}, "
                   f"partner {ad.partner_mac}")  # fmt: skip
    for port in state.ports:
        vf = vfs.get(port.name)
        where = f" (VF {vf[1]} of PF {vf[0]})" if vf else ""
        out.append(f"  port {port.name}{where}: {port.role.label}, mii {port.mii_status.label}, "
                   f"link failures {port.link_failure_count}, perm {port.perm_hwaddr}, "
                   f"queue {port.queue_id}")  # fmt: skip
    return out


def show_spec(status: BondStatus, as_json: bool) -> None:
    """A parsed /proc/net/bonding text: JSON of every field, or its main lines."""
    if as_json:
        click.echo(json.dumps(_plain(status), indent=2))
        return
    click.echo(f"mode {status.mode.label}, mii {_label(status.mii_status)}, "
               f"active {status.active_slave or '-'}")  # fmt: skip
    for slave in status.slaves:
        speed = f"{slave.speed} Mbps" if slave.speed is not None else "speed unknown"
        click.echo(f"  slave {slave.name}: mii {_label(slave.mii_status)}, {speed}, "
                   f"link failures {slave.link_failure_count}, "
                   f"perm {slave.permanent_hw_addr}")  # fmt: skip


def _label(value: object) -> str:
    label = getattr(value, "label", None)
    return label if isinstance(label, str) else "-"


def render_files(spec: BondSpec, fmt: str, out: Path | None) -> None:
    """Print (or write into `out`) the files of `fmt`; say what the format cannot express."""
    rendered = render(spec, fmt)
    for name, text in sorted(rendered.files.items()):
        if out is not None:
            write_file(out / name, text.encode(), mode=0o644, parents=True)
            click.echo(f"wrote {out / name}")
        else:
            click.echo(f"# --- {name}")
            click.echo(text, nl=not text.endswith("\n"))
    for item in rendered.unsupported:
        click.echo(f"# not expressible in {fmt}: {item}", err=True)
    for caveat in getattr(rendered, "caveats", ()):
        click.echo(f"# note: {caveat}", err=True)


__all__ = ["VfPorts", "render_files", "show_spec", "state_json", "state_lines"]
