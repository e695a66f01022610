"""What the device plugin advertises: the plugin's own small interface to whoever builds pools.

The gRPC side (`server`, `service`) knows nothing about discovery or configuration: it is given
one `ResourceFeed` per resource and serves whatever the feed currently holds. The pool builder
calls `ResourceFeed.update()` with the whole new device list whenever anything changes (a VF
appears, a driver is rebound, a link loses carrier); every ListAndWatch stream of that resource
is woken at once and sends the new list. Whole lists, not deltas, because that is what
ListAndWatch sends: kubelet replaces its view with each answer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Policy = Literal["spread", "pack", "none"]
"""How GetPreferredAllocation picks among equally good devices (after must_include and NUMA):
`spread` across PFs (a bond of VFs wants its members on different PFs), `pack` one PF first
(keeps whole PFs free for later requests), `none` (kubelet's own order)."""

log = logging.getLogger("sriovkit.agent")

POLICIES: tuple[Policy, ...] = ("spread", "pack", "none")

_RESOURCE_NAME = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclass(frozen=True)
class Device:
    """One advertised device (a VF), identified to kubelet by its PCI address.

    `numa` is None when the topology is unknown or excluded; `pf` groups devices for the
    spread/pack policies; `driver` and `iommu_group` decide what Allocate hands the container
    (vfio-pci: the group's device node); `extra` is the pool's additionalInfo, passed on in the
    `_INFO` env under "extra" as sriov-network-device-plugin does. `vhost_net`: the pool's
    selector asked for needVhostNet, so the container also gets /dev/vhost-net and /dev/net/tun
    (a DPDK virtio-user or a VM's vhost backend needs them beside the VF).
    """

    id: str
    healthy: bool = True
    numa: int | None = None
    pf: str | None = None
    driver: str | None = None
    iommu_group: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict, compare=True, hash=False)
    vhost_net: bool = False


@dataclass(frozen=True)
class Resource:
    """A resource as it stands: its name (`<prefix>/<name>`), policy and devices, in order."""

    name: str
    devices: tuple[Device, ...] = ()
    policy: Policy = "none"
    generation: int = 0

    def by_id(self) -> dict[str, Device]:
        return {d.id: d for d in self.devices}


def check_resource_name(name: str) -> str:
    """`<prefix>/<name>` as kubelet accepts it (a DNS-like prefix and a name), or ValueError."""
    if not _RESOURCE_NAME.match(name):
        raise ValueError(f"resource name {name!r} is not <prefix>/<name> (letters, digits, '-._')")
    return name


class ResourceFeed:
    """The current device list of one resource, and a way to wait for the next one.

    Thread-safe: `update()` is called from the pool builder's thread, `wait_newer()` from gRPC's
    stream threads. Each update bumps a generation number; a stream remembers the generation it
    sent and waits for a newer one, so no update is lost between two waits and a burst of
    updates costs one answer carrying the latest list.
    """

    def __init__(
        self, name: str, devices: Iterable[Device] = (), *, policy: Policy = "none"
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
        self._cond = threading.Condition()
        self._resource = Resource(check_resource_name(name), _unique(devices), policy, 1)
        self._listeners: list[Callable[[Resource], None]] = []
        self._notify = threading.Lock()

    @property
    def name(self) -> str:
        return self._resource.name

    def current(self) -> Resource:
        with self._cond:
            return self._resource

    def update(self, devices: Iterable[Device]) -> None:
        """Replace the whole device list; every ListAndWatch stream sends it at once."""
        new = _unique(devices)
        with self._cond:
            old = self._resource
            self._resource = Resource(old.name, new, old.policy, old.generation + 1)
            self._cond.notify_all()
        self._tell_listeners()

    def set_policy(self, policy: Policy) -> None:
        """Change the GetPreferredAllocation policy (a config edit). The device list is the
        same, so no ListAndWatch stream is woken: kubelet never sees the policy, only the
        answers of the next GetPreferredAllocation, which reads it from `current()`."""
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
        with self._cond:
            self._resource = replace(self._resource, policy=policy)

    def subscribe(self, listener: Callable[[Resource], None]) -> None:
        """Call `listener` with the new resource after every `update()` (in the updating
        thread, outside the feed's lock, one call at a time, always with the latest list): what
        must follow the list on disk (CDI specs, device-info files) hooks in here, so the pool
        builder only ever calls `update()`. A listener's exception is logged, not raised."""
        with self._cond:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Resource], None]) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _tell_listeners(self) -> None:
        with self._notify:
            with self._cond:
                res, listeners = self._resource, list(self._listeners)
            for listener in listeners:
                try:
                    listener(res)
                except Exception:
                    log.exception("device plugin: %s: update listener failed", res.name)

    def wake(self) -> None:
        """Wake every waiter without a change (a stream being cancelled re-checks and leaves)."""
        with self._cond:
            self._cond.notify_all()

    def wait_newer(self, generation: int, timeout: float) -> Resource | None:
        """The resource once its generation is past `generation`; None after `timeout` or a
        `wake()` with nothing new."""
        with self._cond:
            if self._resource.generation <= generation:
                self._cond.wait(timeout)
            res = self._resource
        return res if res.generation > generation else None


def _unique(devices: Iterable[Device]) -> tuple[Device, ...]:
    out = tuple(devices)
    seen: set[str] = set()
    for d in out:
        if d.id in seen:
            raise ValueError(f"device {d.id} listed twice")
        seen.add(d.id)
    return out
