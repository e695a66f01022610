"""`sriovkit node setup`: the node tier's kubelet, containerd and pause image (cached)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sriovkit.node.setup import default_cache, ensure_node

_CACHE_HELP = "Node cache directory [default: $SRIOVKIT_NODE_CACHE or /var/cache/sriovkit-node]."


def _log(line: str) -> None:
    click.echo(f"node: {line}", err=True)


@click.group("node")
def node() -> None:
    """The node tier: a real kubelet and containerd running our device plugin and CNI."""


@node.command("setup")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help=_CACHE_HELP)
@click.option("--no-install", is_flag=True,
              help="Never install packages or build; fail if anything is missing.")
def setup(cache: Path | None, no_install: bool) -> None:
    """Install containerd/runc, build the kubelet and pause from Debian's source (cached)."""
    started = time.monotonic()
    assets = ensure_node(cache or default_cache(), install=not no_install, log=_log)
    click.echo(f"kubelet    {assets.kubelet_version} ({assets.kubelet})")
    click.echo(f"source     kubernetes {assets.source_version}")
    click.echo(f"pause      {assets.pause_image} ({assets.pause_archive})")
    click.echo(f"node ready in {assets.cache} ({time.monotonic() - started:.1f} s)")
