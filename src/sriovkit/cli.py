"""The `sriovkit` command line: parse, call ops/, print. No logic lives here."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from sriovkit import __version__
from sriovkit.commands.env import CliEnv
from sriovkit.errors import SriovkitError

# Command name -> (module, attribute). Each is imported only when used: `sriovkit inventory`
# must not pay for pyroute2, msgspec or the lab's modules.
_COMMANDS: dict[str, tuple[str, str]] = {
    "inventory": ("sriovkit.commands.inventory", "inventory"),
    "show": ("sriovkit.commands.inventory", "show"),
    "vfs": ("sriovkit.commands.vfs", "vfs"),
    "vf": ("sriovkit.cli", "_bind_command"),
    "bond": ("sriovkit.commands.bond", "bond"),
    "sim": ("sriovkit.commands.sim", "sim"),
    "lab": ("sriovkit.commands.lab", "lab"),
    "node": ("sriovkit.commands.node", "node"),
    "agent": ("sriovkit.commands.agent", "agent"),
    "install-cni": ("sriovkit.commands.agent", "install_cni"),
    "agent-status": ("sriovkit.commands.agent_status", "agent_status"),
    "dp": ("sriovkit.commands.dp", "dp"),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module_name, attr = _COMMANDS[cmd_name]
        obj = getattr(importlib.import_module(module_name), attr)
        cmd = obj() if attr.startswith("_") else obj
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def _bind_command() -> click.Command:
    """`sriovkit vf` plus `bind`, which lives with the VF lifecycle commands."""
    from sriovkit.commands import vf, vfs  # noqa: PLC0415

    if "bind" not in vf.vf.commands:
        vf.vf.add_command(vfs.bind)
    return vf.vf


def main(argv: list[str] | None = None) -> int:
    """Console entry point: an error is one clear line on stderr and an exit code, no traceback."""
    try:
        rv = cli.main(args=argv, prog_name="sriovkit", standalone_mode=False)
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
        # The reader went away (`| head`): point stdout at /dev/null so the interpreter's final
        # flush does not fail again, and exit quietly as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the boundary: a bug is one line too, never a traceback
        if os.environ.get("SRIOVKIT_DEBUG"):
            raise
        click.echo(
            f"sriovkit: internal error: {type(exc).__name__}: {exc} "
            "(set SRIOVKIT_DEBUG=1 for the traceback)",
            err=True,
        )
        return 1
    # Without standalone mode click hands back what `ctx.exit(code)` was given.
    return rv if isinstance(rv, int) else 0


__all__ = ["CliEnv", "cli", "main"]  # CliEnv: re-exported for modules that import it from here


if __name__ == "__main__":
    sys.exit(main())
