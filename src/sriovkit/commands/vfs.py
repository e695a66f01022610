"""`sriovkit vfs PF --count N` and `sriovkit vf bind`: the VF lifecycle from the command line."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from sriovkit.errors import HostError
from sriovkit.ops import vf as vf_ops
from sriovkit.ops.discover import resolve
from sriovkit.wiring import open_sysfs

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv


def _progress(msg: str) -> None:
    click.echo(f"... {msg}", err=True)


@click.command()
@click.argument("pf")
@click.option("--count", type=click.IntRange(min=0), help="Wanted number of VFs (0 removes all).")
@click.option(
    "--driver", help="Bind the VFs to this driver (e.g. vfio-pci) instead of the default."
)
@click.option(
    "--timeout", type=float, help="Seconds to wait for VFs and netdevs [scaled by count]."
)
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def vfs(
    env: CliEnv,
    pf: str,
    count: int | None,
    driver: str | None,
    timeout: float | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Show or set the VF count of PF (a PCI address or the PF's netdev)."""
    sysfs = open_sysfs(env.root)
    addr = resolve(sysfs, pf)
    info = sysfs.sriov(addr)
    if info is None:
        raise HostError(f"{addr} is not SR-IOV capable (no sriov_totalvfs)")
    if count is not None and dry_run:
        plan = vf_ops.num_vfs_plan(sysfs, addr, count, driver)
        click.echo("\n".join(plan.lines()) or f"{addr} already has {count} VFs: nothing to do")
        return
    if count is not None:
        result = vf_ops.set_num_vfs(sysfs, addr, count, timeout=timeout, driver=driver,
                                    progress=_progress)  # fmt: skip
    else:
        result = vf_ops.list_vfs(sysfs, addr)
    if as_json:
        json.dump(
            [{"index": v.index, "address": str(v.address), "driver": v.driver,
              "netdevs": list(v.netdevs)} for v in result],
            sys.stdout, indent=2,
        )  # fmt: skip
        sys.stdout.write("\n")
        return
    click.echo(f"{addr}: {len(result)} VFs (total {info.total_vfs})")
    for v in result:
        nets = ",".join(v.netdevs) or "-"
        click.echo(f"  VF {v.index:<3} {v.address}  driver {v.driver or '-'}  netdev {nets}")


@click.command()
@click.argument("address")
@click.option(
    "--driver",
    required=True,
    help="vfio-pci, uio_pci_generic, or `kernel` for the VF's default driver.",
)
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.pass_obj
def bind(env: CliEnv, address: str, driver: str, dry_run: bool) -> None:
    """Bind a VF (or any PCI function) to a driver through driver_override."""
    sysfs = open_sysfs(env.root)
    addr = resolve(sysfs, address)
    wanted = None if driver == "kernel" else driver
    if dry_run:
        plan = vf_ops.bind_plan(sysfs, addr, wanted)
        current = sysfs.link_base(addr, "driver") or "no driver"
        if not plan:
            click.echo(f"{addr}: already bound to {current}: nothing to do")
            return
        how = ", ".join(kind.value for kind in plan.kinds())
        click.echo(f"{addr}: would rebind from {current} to {driver} ({how})")
        return
    bound = vf_ops.bind_driver(sysfs, addr, wanted)
    click.echo(f"{addr}: bound to {bound or 'no driver'}")
