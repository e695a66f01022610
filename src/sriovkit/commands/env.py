"""`CliEnv`, what the `sriovkit` group hands every command (`click.pass_obj`).

It lives here, not in `sriovkit.cli`, so that `commands/` modules never import the module that
assembles them: `cli` imports `commands.*`, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class CliEnv:
    """What every command gets: the root treated as `/`."""

    root: Path


__all__ = ["CliEnv"]
