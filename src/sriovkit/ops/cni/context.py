"""The seams one CNI invocation runs against, whatever kind of attachment it makes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import Netlink
from sriovkit.host.netns import HOST_NETNS, netns_alive
from sriovkit.host.netns import announce as send_announcement
from sriovkit.host.podresources import PodDevices
from sriovkit.host.state import StateStore
from sriovkit.host.sysfs import Sysfs

Announcer = Callable[[Path, str, str, Sequence[str]], object]
"""Gratuitous ARP / unsolicited NA: (pod netns, ifname, MAC, addresses) (host.netns.announce)."""


@dataclass(frozen=True)
class AttachContext:
    """The seams CNI operations run against (built by the adapter: agent, shim fallback, tests).

    `checkpoint` is called with a step name after each ADD step (fault-injection tests kill the
    process there). `netns_alive` decides whether a recorded pod netns still exists (a seam so
    unit tests on a simulated host can name fake namespaces). `return_timeout` bounds the wait
    for a real VF to come back to the host netns after its pod netns was deleted.
    `still_wanted` is called by ADD once it holds its locks, before it changes anything: the
    adapter raises `Abandoned` there when the request's client left or its deadline passed
    (the runtime gave up and will send, or already sent, DEL), so a stale ADD never runs.
    `announce` turns the ARP/NA announcement after ADD on or off; `announcer` sends it.
    `pod_devices` answers which devices of a resource a pod holds (kubelet's PodResources API,
    `host.podresources`); only an ADD whose config has a `resourceName` and no deviceID asks.
    `boot_id` is this boot's id (`host.boot.boot_id`): ADD stamps it on its record, and a
    record stamped with another one is an earlier boot's (`earlier_boot`). None: unknown, and
    then no record is taken for an earlier boot's.
    """

    sysfs: Sysfs
    netlink: Netlink
    ipam: Ipam
    store: StateStore
    lock_timeout: float = 30.0
    checkpoint: Callable[[str], None] | None = None
    host_netns: Path = HOST_NETNS
    netns_alive: Callable[[Path], bool] = field(default=netns_alive)
    announce: bool = True
    announcer: Announcer = field(default=send_announcement)
    return_timeout: float = 2.0
    still_wanted: Callable[[], None] | None = None
    pod_devices: PodDevices | None = None
    boot_id: str | None = None

    def earlier_boot(self, record_boot_id: str | None) -> bool:
        """Whether a record stamped `record_boot_id` was written by an earlier boot: both ids
        known and different (the kernel state it describes died with that boot)."""
        return (
            record_boot_id is not None
            and self.boot_id is not None
            and record_boot_id != self.boot_id
        )

    def step(self, name: str) -> None:
        """ADD finished step `name` (for fault injection; nothing otherwise)."""
        if self.checkpoint is not None:
            self.checkpoint(name)


__all__ = ["Announcer", "AttachContext"]
