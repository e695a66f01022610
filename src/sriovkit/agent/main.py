"""The node agent process: which services it runs, in which order (see `supervisor`).

The CNI socket server always; the Kubernetes device plugin (`deviceplugin/`) when asked for. The
device plugin's feeds are built before anything starts, so a bad config stops the agent with
one clear error and the first ListAndWatch answer is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sriovkit.agent.cni_service import CniService
from sriovkit.agent.server import Agent
from sriovkit.agent.supervisor import Service, Supervisor


@dataclass(frozen=True)
class DevicePluginSetup:
    """What `sriovkit agent --device-plugin` serves: pools from `config` on the host at `root`,
    registered with the kubelet whose root directory is `kubelet_dir`."""

    root: Path
    config: Path
    kubelet_dir: Path


def _device_plugin(setup: DevicePluginSetup) -> Service:
    # grpc and the inventory only when the device plugin is asked for.
    from sriovkit.deviceplugin.pools import load_feeds  # noqa: PLC0415
    from sriovkit.deviceplugin.service import DevicePluginService  # noqa: PLC0415

    return DevicePluginService(load_feeds(setup.root, setup.config), setup.kubelet_dir)


def run_agent(
    path: Path,
    defaults: Mapping[str, str] | None = None,
    *,
    ready: Callable[[Agent], None] | None = None,
    device_plugin: DevicePluginSetup | None = None,
) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (must be the main thread).

    `path` is the CNI socket, `defaults` the settings requests run with unless they name
    their own; `ready` is called with the CNI server once every service serves.
    """
    services: list[Service] = []
    if device_plugin is not None:
        services.append(_device_plugin(device_plugin))
    cni = CniService.at(path, defaults)
    supervisor = Supervisor([cni, *services])
    supervisor.run(ready=None if ready is None else lambda: ready(cni.agent))


__all__ = ["DevicePluginSetup", "run_agent"]
