"""`sriovkit dp pools`: what each device plugin pool would advertise on this host, and why a
device the selectors pick is left out. Reads only; never imports grpc (the agent serves)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

# deviceplugin.pools never loads grpc (the gRPC side is deviceplugin.server and .service).
from sriovkit.deviceplugin.pools import DEFAULT_CONFIG, host_pools, read_config
from sriovkit.model.dp_config import DEFAULT_PREFIX
from sriovkit.model.dp_pool import Pool

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv

def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def _table(rows: Sequence[tuple[str, ...]], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]


def _pool_lines(pool: Pool) -> list[str]:
    count = len(pool.devices)
    lines = [f"{pool.full_name} ({pool.device_type}): {count} device{'s' * (count != 1)}"]
    if pool.devices:
        rows = [("PCI", "PF", "VF", "DRIVER", "NETDEV", "NUMA")]
        rows += [
            (str(d.pci), _opt(d.pf_name), _opt(d.vf_index), d.driver, _opt(d.netdev),
             _opt(d.numa))
            for d in pool.devices
        ]  # fmt: skip
        lines += _table(rows, "  ")
    if pool.excluded:
        lines.append("  left out:")
        lines += _table([(str(e.pci), e.detail) for e in pool.excluded], "    ")
    lines += [f"  note: {n}" for n in pool.notes]
    return lines


@click.group()
def dp() -> None:
    """The Kubernetes device plugin: pools from sriov-network-device-plugin's config.json (or
    its YAML form)."""


@dp.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The device plugin's config: config.json, or its YAML form (.yaml/.yml) "
    f"[default: /{DEFAULT_CONFIG} under --root].",
)
@click.option(
    "--resource-prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Prefix of resources without resourcePrefix (upstream's --resource-prefix).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with stable keys.")
@click.pass_obj
def pools(env: CliEnv, config_path: Path | None, resource_prefix: str, as_json: bool) -> None:
    """Each pool's devices (PCI, PF, VF index, driver, netdev, NUMA) and the devices it leaves
    out, with the reason."""
    path = config_path if config_path is not None else env.root / DEFAULT_CONFIG
    config = read_config(path, resource_prefix, option="--config")
    found = host_pools(env.root, config)[1]
    if as_json:
        json.dump({"pools": [p.to_json() for p in found]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not found:
        click.echo(f"no resources in {path}")
    for i, pool in enumerate(found):
        if i:
            click.echo("")
        click.echo("\n".join(_pool_lines(pool)))


__all__ = ["dp", "pools"]
