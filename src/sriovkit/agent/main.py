"""The node agent process: which services it runs, in which order (see `supervisor`).

The CNI socket server always; the Kubernetes device plugin (`deviceplugin/`) when asked for, as
two services: `Discovery` (owns the feeds, keeps them current from kernel events) and
`DevicePluginService` (serves them). The feeds are built before anything starts, so a bad config
stops the agent with one clear error and the first ListAndWatch answer is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sriovkit.agent.cni_service import CniService
from sriovkit.agent.replay import CniInstall
from sriovkit.agent.server import Agent
from sriovkit.agent.supervisor import Service, Supervisor

if TYPE_CHECKING:
    from sriovkit.host.events import EventSource

log = logging.getLogger("sriovkit.agent")


@dataclass(frozen=True)
class DevicePluginSetup:
    """What `sriovkit agent --device-plugin` serves: pools from `config` on the host at `root`,
    registered with the kubelet whose root directory is `kubelet_dir`. Device-info files go to
    `/var/run/k8s.cni.cncf.io/devinfo/dp` under `root`; with `cdi`, CDI specs to
    `/var/run/cdi` under `root` (the host's own paths when `root` is `/`)."""

    root: Path
    config: Path
    kubelet_dir: Path
    cdi: bool = False
    registration: str = "socket"
    """`socket`: Register on kubelet.sock; `watcher`: a socket in plugins_registry/ for
    kubelet's plugin watcher (GetInfo / NotifyRegistrationStatus)."""


def _event_sources(root: Path) -> list[EventSource]:
    """The simulated kernel's events on a simulated host; the real kernel's otherwise, and also
    in veth mode, where the VF netdevs are real veth ends whose carrier only the kernel reports."""
    from sriovkit.host.events import kernel_sources  # noqa: PLC0415
    from sriovkit.wiring import is_simulated  # noqa: PLC0415

    sources: list[EventSource] = []
    if is_simulated(root):
        from sriovkit.sim.events import SimEvents  # noqa: PLC0415
        from sriovkit.sim.veth_pairs import VETH_MARKER  # noqa: PLC0415

        sources.append(SimEvents(root))
        if not (root / VETH_MARKER).is_file():
            return sources
    try:
        sources.extend(kernel_sources())
    except OSError as exc:  # no netlink here: the safety-net re-scan still runs
        log.warning("device plugin: no kernel events (%s): re-scanning every 30 s only", exc)
    return sources


def _device_plugin(setup: DevicePluginSetup) -> list[Service]:
    """The discovery (owner of the feeds, re-discovering on events) and the gRPC service that
    serves them: two services, so each starts and stops alone; discovery first, so the feeds
    are complete before kubelet can ask."""
    # grpc and the inventory only when the device plugin is asked for.
    from sriovkit.deviceplugin.discovery import Discovery  # noqa: PLC0415
    from sriovkit.deviceplugin.server import Registration  # noqa: PLC0415
    from sriovkit.deviceplugin.service import DevicePluginService  # noqa: PLC0415
    from sriovkit.wiring import open_netlink  # noqa: PLC0415

    netlink = open_netlink(setup.root)
    sources = _event_sources(setup.root)
    try:
        discovery = Discovery(setup.root, setup.config, netlink, sources)
    except BaseException:
        for source in sources:
            source.close()
        netlink.close()
        raise
    from sriovkit.deviceplugin.cdi import DEFAULT_CDI_DIR  # noqa: PLC0415
    from sriovkit.deviceplugin.devinfo import DEFAULT_DEVINFO_DIR  # noqa: PLC0415

    under = setup.root / DEFAULT_DEVINFO_DIR.relative_to("/")
    cdi = setup.root / DEFAULT_CDI_DIR.relative_to("/") if setup.cdi else None
    mode: Registration = "watcher" if setup.registration == "watcher" else "socket"
    service = DevicePluginService(
        discovery.feeds, setup.kubelet_dir, devinfo_dir=under, cdi_dir=cdi,
        host_root=setup.root, registration=mode,
    )  # fmt: skip
    return [discovery, service]


def run_agent(
    path: Path,
    defaults: Mapping[str, str] | None = None,
    *,
    ready: Callable[[Agent], None] | None = None,
    device_plugin: DevicePluginSetup | None = None,
    install_cni: CniInstall | None = None,
) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT (must be the main thread).

    `path` is the CNI socket, `defaults` the settings requests run with unless they name
    their own; `ready` is called with the CNI server once every service serves. The CNI
    service replays pending DELs, then installs the shims (`install_cni`), before it serves.
    """
    services: list[Service] = []
    if device_plugin is not None:
        services.extend(_device_plugin(device_plugin))
    cni = CniService.at(path, defaults, install_cni)
    supervisor = Supervisor([cni, *services])
    supervisor.run(ready=None if ready is None else lambda: ready(cni.agent))


__all__ = ["DevicePluginSetup", "run_agent"]
