"""`sriovkit lab setup` and `sriovkit lab run`: the emulated SR-IOV lab (QEMU igb guest)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from sriovkit.errors import InvalidInput
from sriovkit.lab.runner import Outcome, run_in_guest
from sriovkit.lab.setup import default_cache, ensure_lab

_CACHE_HELP = "Lab cache directory [default: $SRIOVKIT_LAB_CACHE or /var/cache/sriovkit-lab]."
# Passed through to the guest when set on the host: tests behave as in CI there too.
_PASS_ENV = ("CI", "SRIOVKIT_LAB_TIMEOUT")


def _log(line: str) -> None:
    click.echo(f"lab: {line}", err=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:])


@click.group("lab")
def lab() -> None:
    """The emulated SR-IOV lab: a QEMU guest with a dual-port Intel 82576 (igb) and real VFs."""


@lab.command("setup")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help=_CACHE_HELP)
@click.option(
    "--no-install", is_flag=True, help="Never install packages; fail if QEMU with igb is missing."
)
def setup(cache: Path | None, no_install: bool) -> None:
    """Install QEMU with igb if needed, fetch a guest kernel and build the initramfs (cached)."""
    started = time.monotonic()
    assets = ensure_lab(cache or default_cache(), install=not no_install, log=_log)
    click.echo(f"qemu       {assets.qemu}")
    click.echo(f"kernel     {assets.kernel_release} ({assets.kernel})")
    click.echo(f"initramfs  {assets.initramfs}")
    click.echo(f"lab ready in {assets.cache} ({time.monotonic() - started:.1f} s)")


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidInput("--env", f"{pair!r} is not NAME=VALUE")
        env[key] = value
    return env


@lab.command("run", context_settings={"allow_interspersed_args": False})
@click.option("--timeout", type=click.FloatRange(min=1), default=900.0, show_default=True,
              help="Kill the guest after this many seconds (exit 124).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help=_CACHE_HELP)
@click.option("--cwd", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to run the command in (a host path) [default: the current one].")
@click.option("--env", "-e", "env_pairs", multiple=True, metavar="NAME=VALUE",
              help="Set an environment variable in the guest (repeatable).")
@click.option("--share", type=click.Path(file_okay=False, path_type=Path),
              help="Host directory the guest sees at /run/sriovkit-lab (kept) "
              "[default: a temporary one, removed after a clean run].")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def run(
    ctx: click.Context, timeout: float, cache: Path | None, cwd: Path | None,
    env_pairs: tuple[str, ...], share: Path | None, command: tuple[str, ...],
) -> None:
    """Boot a lab guest, run COMMAND in it, stream its output and exit with its exit code.

    Exit codes of the run itself: 124 timeout, 125 the guest died, 130 interrupted.
    """
    env = _parse_env(env_pairs)
    assets = ensure_lab(cache or default_cache(), log=_log)
    keep = share is not None
    share_dir = share.resolve() if share else Path(tempfile.mkdtemp(prefix="sriovkit-lab-"))
    try:
        result = run_in_guest(
            assets, list(command), share_dir, out=sys.stdout.buffer,
            cwd=(cwd or Path.cwd()).resolve(), env=env, timeout=timeout,
        )
    except BaseException:
        # Interrupted: QEMU is already killed; drop the temporary share unless asked to keep it.
        if not keep:
            shutil.rmtree(share_dir, ignore_errors=True)
        raise
    if result.outcome is Outcome.EXITED:
        _log(f"guest exited {result.exit_code} after {result.wall:.1f} s")
    else:
        keep = True
        what = {
            Outcome.TIMEOUT: "timed out",
            Outcome.STALLED: "was stopped: its kernel reported an RCU stall (an emulator fault)",
        }.get(result.outcome, "died")
        _log(f"the guest {what} after {result.wall:.1f} s; kernel log {result.console_log}:")
        click.echo(_tail(result.console_log), err=True)
        click.echo(_tail(result.qemu_log, 10), err=True)
    if not keep:
        shutil.rmtree(share_dir, ignore_errors=True)
    ctx.exit(result.exit_code)
