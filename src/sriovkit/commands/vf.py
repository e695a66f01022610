"""`sriovkit vf set|show|reset`: VF attributes as `ip link set PF vf N ...` sets them."""

from __future__ import annotations

import json
from contextlib import closing
from typing import TYPE_CHECKING, Any

import click

from sriovkit.model.vf import LinkState, VfInfo, VfSettings, VlanProto
from sriovkit.ops.discover import pf_netdev
from sriovkit.ops.vfconfig import VfChange, apply_vf, read_vf, reset_vf
from sriovkit.wiring import open_netlink, open_sysfs

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv

_ON_OFF = click.Choice(["on", "off"], case_sensitive=False)


def _onoff(value: bool | None) -> str:
    return "on" if value else "off"


def vf_line(vf: VfInfo) -> str:
    """One VF as `ip link show` prints it under the PF."""
    parts = [f"vf {vf.index:<5} link/ether {vf.mac} brd ff:ff:ff:ff:ff:ff"]
    if vf.vlan:
        parts.append(f"vlan {vf.vlan}")
        if vf.qos:
            parts.append(f"qos {vf.qos}")
        if vf.proto is not VlanProto.DOT1Q:
            parts.append(f"vlan protocol {vf.proto.label}")
    if vf.max_tx_rate:
        parts.append(f"max_tx_rate {vf.max_tx_rate}Mbps")
    if vf.min_tx_rate:
        parts.append(f"min_tx_rate {vf.min_tx_rate}Mbps")
    if vf.spoofchk is not None:
        parts.append(f"spoof checking {_onoff(vf.spoofchk)}")
    parts.append(f"link-state {vf.link_state.label}")
    if vf.trust is not None:
        parts.append(f"trust {_onoff(vf.trust)}")
    if vf.rss_query is not None:
        parts.append(f"query_rss {_onoff(vf.rss_query)}")
    return ", ".join(parts)


def vf_json(vf: VfInfo) -> dict[str, Any]:
    """Stable JSON keys for one VF."""
    stats = None
    if vf.stats is not None:
        stats = {f: getattr(vf.stats, f) for f in type(vf.stats).__dataclass_fields__}
    return {
        "vf": vf.index,
        "mac": vf.mac,
        "vlan": vf.vlan,
        "qos": vf.qos,
        "proto": vf.proto.label,
        "spoofchk": vf.spoofchk,
        "trust": vf.trust,
        "link_state": vf.link_state.label,
        "min_tx_rate": vf.min_tx_rate,
        "max_tx_rate": vf.max_tx_rate,
        "rss_query": vf.rss_query,
        "stats": stats,
    }


def _value(value: object) -> str:
    label = getattr(value, "label", None)
    if isinstance(label, str):
        return label
    if isinstance(value, bool) or value is None:
        return _onoff(bool(value)) if value is not None else "unreported"
    return str(value)


def _report(change: VfChange) -> None:
    where = f"VF {change.index} on {change.pf}"
    if not change.changes:
        click.echo(f"{where}: nothing to change")
        return
    verb = "would change" if change.dry_run else "changed"
    for c in change.changes:
        click.echo(
            f"{where}: {verb} {c.field.replace('_', '-')} {_value(c.old)} -> {_value(c.new)}"
        )
    if change.dry_run:
        attrs = ", ".join(a.value for a in change.request.attrs())
        click.echo(f"{where}: one RTM_SETLINK request carrying {attrs}")


@click.group()
def vf() -> None:
    """Configure VFs from their PF (MAC, VLAN, QoS, proto, spoofchk, trust, link-state, rates)."""


@vf.command("set")
@click.argument("pf")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--mac", help="Administrative MAC (00:00:00:00:00:00 clears it).")
@click.option("--vlan", type=int, help="Port VLAN id 0-4094 (0 removes it).")
@click.option("--qos", type=int, help="802.1p priority 0-7 (needs --vlan).")
@click.option("--proto", help="VLAN protocol: 802.1Q or 802.1ad (needs --vlan).")
@click.option("--spoofchk", type=_ON_OFF, help="MAC/VLAN spoof checking.")
@click.option("--trust", type=_ON_OFF, help="Trusted VF (promiscuous, MAC changes).")
@click.option("--state", type=click.Choice(["auto", "enable", "disable"]), help="VF link state.")
@click.option("--min-rate", type=int, help="Minimum TX rate in Mbit/s (0: none).")
@click.option("--max-rate", type=int, help="Maximum TX rate in Mbit/s (0: unlimited).")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_obj
def set_cmd(
    env: CliEnv,
    pf: str,
    index: int,
    mac: str | None,
    vlan: int | None,
    qos: int | None,
    proto: str | None,
    spoofchk: str | None,
    trust: str | None,
    state: str | None,
    min_rate: int | None,
    max_rate: int | None,
    dry_run: bool,
) -> None:
    """Set attributes of VF INDEX of PF (a netdev name); unnamed attributes stay as they are."""
    settings = VfSettings(
        mac=mac,
        vlan=vlan,
        qos=qos,
        proto=VlanProto.parse(proto) if proto is not None else None,
        spoofchk=None if spoofchk is None else spoofchk.lower() == "on",
        trust=None if trust is None else trust.lower() == "on",
        link_state=LinkState.parse(state) if state is not None else None,
        min_tx_rate=min_rate,
        max_tx_rate=max_rate,
    )
    if settings.empty:
        raise click.UsageError("name at least one attribute to set (see --help)")
    pf = pf_netdev(open_sysfs(env.root), pf)
    with closing(open_netlink(env.root)) as netlink:
        _report(apply_vf(netlink, pf, index, settings, dry_run=dry_run))


@vf.command("show")
@click.argument("pf")
@click.argument("index", type=click.IntRange(min=0), required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(env: CliEnv, pf: str, index: int | None, as_json: bool) -> None:
    """Show the VFs of PF (or only VF INDEX) as the PF driver reports them."""
    pf = pf_netdev(open_sysfs(env.root), pf)
    with closing(open_netlink(env.root)) as netlink:
        vfs = [read_vf(netlink, pf, index)] if index is not None else netlink.vfs(pf)
    if as_json:
        click.echo(json.dumps({"pf": pf, "vfs": [vf_json(v) for v in vfs]}, indent=2))
        return
    for v in vfs:
        click.echo(f"    {vf_line(v)}")


@vf.command("reset")
@click.argument("pf")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_obj
def reset(env: CliEnv, pf: str, index: int, dry_run: bool) -> None:
    """Put VF INDEX of PF back to defaults (no MAC, no VLAN, spoofchk on, trust off, auto)."""
    pf = pf_netdev(open_sysfs(env.root), pf)
    with closing(open_netlink(env.root)) as netlink:
        _report(reset_vf(netlink, pf, index, dry_run=dry_run))


__all__ = ["vf", "vf_json", "vf_line"]
