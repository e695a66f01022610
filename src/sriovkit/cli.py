"""The `sriovkit` command line: parse, call ops/, print. No logic lives here."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from sriovkit import __version__
from sriovkit.errors import SriovkitError


@dataclass(slots=True)
class CliEnv:
    """What every command gets: the root treated as `/`."""

    root: Path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("SRIOVKIT_ROOT", "/"),
    show_default="/ or $SRIOVKIT_ROOT",
    help="Treat DIR as / (a simulated host from `sriovkit sim create`, or a chroot).",
)
@click.version_option(__version__, prog_name="sriovkit")
@click.pass_context
def cli(ctx: click.Context, root: Path) -> None:
    """sriovkit: SR-IOV hardware, VFs, bonds and Kubernetes plumbing for Linux hosts."""
    ctx.obj = CliEnv(root=Path(root))


def _register() -> None:
    from sriovkit.commands import inventory, sim  # noqa: PLC0415

    cli.add_command(inventory.inventory)
    cli.add_command(inventory.show)
    cli.add_command(sim.sim)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: an error is one clear line on stderr and an exit code, no traceback."""
    try:
        cli.main(args=argv, prog_name="sriovkit", standalone_mode=False)
    except SriovkitError as exc:
        click.echo(f"sriovkit: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("sriovkit: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
