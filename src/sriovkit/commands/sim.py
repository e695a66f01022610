"""`sriovkit sim ...`: list hardware profiles and write simulated hosts."""

from __future__ import annotations

from pathlib import Path

import click

from sriovkit.errors import InvalidInput


@click.group()
def sim() -> None:
    """Simulated hosts: sysfs/procfs trees with SR-IOV hardware, for tests and demos."""


@sim.command("profiles")
def profiles() -> None:
    """List the NIC profiles a simulated host can carry."""
    from sriovkit.sim import PROFILES, profile_names  # noqa: PLC0415 - keep CLI start fast

    width = max(len(n) for n in profile_names())
    for name in profile_names():
        click.echo(f"{name:<{width}}  {PROFILES[name].summary}")


@sim.command("create")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--profile",
    "profile_list",
    multiple=True,
    required=True,
    help="A card to install (repeat for more cards); see `sriovkit sim profiles`.",
)
@click.option("--vfs", type=int, default=None, help="Enable N VFs on every PF (capped).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for MACs.")
@click.option("--no-extras", is_flag=True, help="Leave out chipset, GPU, NVMe and onboard NIC.")
def create(
    directory: Path, profile_list: tuple[str, ...], vfs: int | None, seed: int, no_extras: bool
) -> None:
    """Write a simulated host under DIRECTORY (use it with `sriovkit --root DIRECTORY`)."""
    from sriovkit.sim import PROFILES, create_host  # noqa: PLC0415

    for name in profile_list:
        if name not in PROFILES:
            raise InvalidInput(
                "profile", f"unknown profile {name!r} (known: {', '.join(sorted(PROFILES))})"
            )
    if vfs is not None and vfs < 0:
        raise InvalidInput("vfs", f"{vfs} is negative")
    host = create_host(directory, list(profile_list), vfs, extras=not no_extras, seed=seed)
    pfs = host.pfs
    click.echo(
        f"simulated host at {host.root}: {len(host.devices)} PCI functions, "
        f"{len(pfs)} PFs, {sum(p.num_vfs for p in pfs)} VFs"
    )
    for pf in pfs:
        click.echo(
            f"  {pf.address}  {pf.netdev or '-':<16} {pf.profile:<10} {pf.driver:<10} "
            f"VFs {pf.num_vfs}/{pf.total_vfs}"
        )


@sim.command("veth")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--profile", default="82576", show_default=True, help="The one card to install.")
@click.option("--vfs", type=int, default=2, show_default=True, help="VFs per PF.")
@click.option("--prefix", help="VF netdev name prefix (default: random `sk` + 4 hex).")
def veth(directory: Path, profile: str, vfs: int, prefix: str | None) -> None:
    """A simulated host whose VF netdevs are real veth ends in this netns (needs root).

    Netns moves, renames, MTU, addresses and IPAM on these VFs are real; the PF-side VF
    attributes are kept by the simulated driver. Remove the veths with `sim veth-remove`.
    """
    from sriovkit.sim import PROFILES  # noqa: PLC0415
    from sriovkit.sim.veth import create_veth_host  # noqa: PLC0415

    if profile not in PROFILES:
        raise InvalidInput(
            "profile", f"unknown profile {profile!r} (known: {', '.join(sorted(PROFILES))})"
        )
    host = create_veth_host(directory, profile, vfs, prefix=prefix)
    click.echo(f"veth-mode host at {host.root}: {len(host.pairs)} VFs backed by veth pairs")
    for pair in host.pairs:
        click.echo(f"  VF {pair.index} of {pair.pf}: {pair.vf}  netdev {pair.name}  mac {pair.mac}")


@sim.command("veth-remove")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def veth_remove(directory: Path) -> None:
    """Delete the veth pairs of a veth-mode host (only the ones it created)."""
    from sriovkit.sim.veth import remove_veths  # noqa: PLC0415

    remove_veths(directory)
    click.echo(f"veth pairs of {directory} removed")
