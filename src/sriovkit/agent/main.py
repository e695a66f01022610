"""The node agent process: which services it runs, in which order (see `supervisor`).

Today one, the CNI socket server; the device plugin will be added here as another service.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sriovkit.agent.cni_service import CniService
from sriovkit.agent.server import Agent
from sriovkit.agent.supervisor import Supervisor


def run_agent(
    path: Path,
    defaults: Mapping[str, str] | None = None,
    *,
    ready: Callable[[Agent], None] | None = None,
) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (must be the main thread).

    `path` is the CNI socket, `defaults` the settings requests run with unless they name
    their own; `ready` is called with the CNI server once every service serves.
    """
    cni = CniService.at(path, defaults)
    supervisor = Supervisor([cni])
    supervisor.run(ready=None if ready is None else lambda: ready(cni.agent))


__all__ = ["run_agent"]
