"""Re-discovery and health: the feeds kept current while the agent runs, without a restart.

`Discovery` owns the resource feeds the device plugin serves. It builds them once before any
service starts (so the first ListAndWatch answer after an agent restart is complete), then runs
as its own agent service: one thread waits with select() on the host's event sources
(`host/events.py` on a real host, `sim/events.py` on a simulated one) and on a wake pipe, and
after each burst of events (settled for `settle` seconds, so 256 VFs appearing cost one pass):

- only link events: re-read the state (admin up, carrier) of the named links (one RTM_GETLINK
  each, or one dump for hundreds; the simulated kernel names them too; a dump when an event
  names none) and recompute health of the devices already in the pools; no PCI re-read (the
  common case: carrier flaps, CNI moves);
- device events (VF created or removed, driver bound or unbound, netdev added, moved or
  renamed) that each name a PCI function or netdev this can place: re-read only the *families*
  they touch, a PF with its VFs or a function of its own (`members.py` says why the rest stays
  as a whole-host pass would find it), and the links of their members: a change on one PF does
  not re-read the other 3,840 VFs of a 4,096-VF host;
- a device event naming nothing or something unknown, a lost-events `rescan`, a changed config
  file, or the safety-net timer (`rescan`, 30 s): re-evaluate the pools on a fresh inventory of
  the whole host and dump every link's state (`benchmarks/deviceplugin.py` has the costs).

A feed is updated only when its device list or a device's health differs from what it holds:
`ResourceFeed.update` wakes every ListAndWatch stream, and an unchanged list must not be sent.

Health (the issue's four cases), computed per device on each pass:
- its PF is admin up and has no carrier (cable pulled, switch port down): Unhealthy. A PF that
  is admin down is left alone: that is the operator's choice, not a fault;
- its own netdev is admin up and has no carrier (operstate down/lowerlayerdown): Unhealthy. A
  VF netdev that is admin down (nobody uses it yet: VFs come up down) stays Healthy, and a netdev
  not in the host netns (moved into a pod, or bound to vfio-pci) is not judged;
- it disappeared: a VF removed by `sriov_numvfs` leaves the list (kubelet drops it from
  capacity; pods holding it keep their allocation);
- its driver no longer matches the pool: a device still present that its pool no longer selects
  (unbound, or bound to a driver the pool does not take) and that no other pool took stays listed
  in its pool as Unhealthy, and is Healthy again when it is rebound; if another pool selects it
  now (e.g. netdevice -> vfio-pci with a vfio pool), it moves there. A config change drops these.

A config change re-reads the file. The agent passes a `host/filewatch.FileWatch` among the sources
(inotify on the file's directories: in-place writes, renames, a ConfigMap's `..data` swap); its
`config` events only wake the loop, and the file's inode/mtime/size, checked on every wake-up and
every `config_poll` s (the safety net), decide. The device lists of existing resources follow it; a
resource it adds gets a feed and one it removes has its feed emptied (kubelet's capacity drops at
once) and dropped; `subscribe_resources` listeners (the gRPC service) start and stop their servers.
A config that is refused (unreadable, or invalid: the error names the entry and field) is logged
and the previous one keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from sriovkit.agent.supervisor import OnExit
from sriovkit.deviceplugin.members import Member, healthy, members_of, merge
from sriovkit.deviceplugin.model import Device, ResourceFeed
from sriovkit.deviceplugin.pools import host_pools, pool_policy, read_config
from sriovkit.errors import SriovkitError
from sriovkit.host.events import Event, EventSource
from sriovkit.host.netlink import LinkState
from sriovkit.host.sysfs import SysfsReader
from sriovkit.model.dp_config import DEFAULT_PREFIX, DpConfig
from sriovkit.model.pci import PciAddress

log = logging.getLogger("sriovkit.agent")


class LinkReader(Protocol):
    """What health needs of the netlink seam: admin state and carrier of the links of the host
    netns, every one (one dump without VF attributes) or the named ones."""

    def link_states(self, names: Collection[str] | None = None) -> list[LinkState]: ...


def _config_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ResourcesListener(Protocol):
    """Told the feeds a config edit added and removed (`Discovery.subscribe_resources`)."""

    def __call__(self, added: list[ResourceFeed], removed: list[ResourceFeed]) -> None: ...


class Discovery:
    """The pools of `config_path` on the host at `root`, kept current (see the module doc).

    Construction reads the config and the host (raising on a bad config, so the agent stops with
    one clear error); `feeds` are then ready to hand to `DevicePluginService`. `sources` are
    owned (closed by `stop()`).
    """

    name = "device-discovery"

    def __init__(
        self,
        root: Path,
        config_path: Path,
        links: LinkReader,
        sources: Sequence[EventSource] = (),
        *,
        prefix: str = DEFAULT_PREFIX,
        rescan: float = 30.0,
        config_poll: float = 1.0,
        settle: float = 0.05,
    ) -> None:
        self.root = root
        self.config_path = config_path
        self.prefix = prefix
        self.rescan_interval = rescan
        self.config_poll = config_poll
        self.settle = settle
        self._links_seam = links
        self._sources = list(sources)
        self._stamp = _config_stamp(config_path)
        self._config: DpConfig = read_config(config_path, prefix)
        self._links: dict[str, LinkState] = {}
        self._members: dict[str, list[Member]] = {}
        self._sysfs = SysfsReader(root)
        self._family: dict[PciAddress, PciAddress] = {}  # each function -> its PF (or itself)
        self._owner: dict[str, PciAddress] = {}  # each netdev -> its function
        self.passes = {"full": 0, "family": 0, "links": 0}
        self._read_links()
        self._repool(sticky=False)
        self.feeds = [
            ResourceFeed(name, self._advertised(name), policy=pool_policy(name, self._config))
            for name in self._members
        ]
        self._by_name = {f.name: f for f in self.feeds}
        self._resource_listeners: list[ResourcesListener] = []
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None

    # --- the passes -------------------------------------------------------------------

    def full_pass(self, *, config_changed: bool = False) -> list[str]:
        """Re-read the host (and the config when it changed) and push what changed."""
        reloaded = config_changed and self._reload_config()
        self._read_links()
        self._repool(sticky=not reloaded)
        if reloaded:
            self._sync_resources()
        self.passes["full"] += 1
        return self._push()

    def family_pass(
        self, families: set[PciAddress], names: Collection[str] | None = ()
    ) -> list[str]:
        """Re-read the functions of `families` (PFs with their VFs, or functions of their own)
        and their links' states, and push what changed: the other functions keep their members,
        which is what a full pass would find (see `members.py`). `names`: links that link
        events of the same burst named, read too (None: every link)."""
        self._repool(sticky=True, families=families)
        wanted = set(names or ())
        for members in self._members.values():
            for m in members:
                if m.family in families:
                    wanted.update(n for n in (m.netdev, m.device.pf) if n)
        self._read_links(None if names is None else wanted)
        self.passes["family"] += 1
        return self._push()

    def families(self, events: Sequence[Event]) -> set[PciAddress] | None:
        """The families the device events of a burst name, or None when one names nothing or
        a PCI function this pass cannot place (then the whole host is read).

        A netdev that is no PCI function's, now (sysfs) or at the last pass, is skipped: a
        pod's veth, a bond or a VLAN coming or going changes no function (a PCI netdev comes
        and goes with its driver's bind and unbind, whose events name the function).
        """
        out: set[PciAddress] = set()
        for event in events:
            if event.kind == "link":
                continue
            if event.kind != "device" or not event.name:
                return None
            addr = PciAddress.try_parse(event.name)
            if addr is None:  # a netdev: its function, as last seen or as sysfs says now
                addr = self._owner.get(event.name) or self._sysfs.netdev_pci(event.name)
                if addr is None:
                    continue
            family = self._family.get(addr)
            if family is None:  # new since the last pass: a VF just created, a hot-plug
                physfn = self._sysfs.link_base(addr, "physfn")
                family = PciAddress.try_parse(physfn) if physfn else None
                if family is None and self._sysfs.exists(addr):
                    family = addr
                if family is None:
                    return None
            out.add(family)
        return out

    def links_pass(self, names: Collection[str] | None = None) -> list[str]:
        """Re-read link state only (of `names`, else all) and push health changes.

        rtnetlink names the netdev in each event, so a carrier flap costs one RTM_GETLINK, not
        a dump of every link on the host; an unnamed one takes the dump.
        """
        self._read_links(names)
        self.passes["links"] += 1
        return self._push()

    def _read_links(self, names: Collection[str] | None = None) -> None:
        try:
            states = self._links_seam.link_states(names)
        except SriovkitError as exc:  # keep the last known state; the next pass retries
            log.warning("device plugin: cannot read links: %s", exc)
            return
        if names is None:
            self._links = {link.name: link for link in states}
            return
        for name in names:  # one that is not found any more is gone (or left the netns)
            self._links.pop(name, None)
        self._links.update((link.name, link) for link in states)

    def _repool(self, *, sticky: bool, families: set[PciAddress] | None = None) -> None:
        inventory, found = host_pools(self.root, self._config, families, details=False)
        present = {str(d.address) for d in inventory.devices}
        self._members = merge(
            self._members, members_of(found, self._config), present, families, sticky=sticky
        )
        if families is None:
            self._family, self._owner = {}, {}
        else:
            gone = {a for a, f in self._family.items() if f in families}
            self._family = {a: f for a, f in self._family.items() if a not in gone}
            self._owner = {n: a for n, a in self._owner.items() if a not in gone}
        for dev in inventory.devices:
            self._family[dev.address] = dev.physfn or dev.address
            for netdev in dev.netdevs:
                self._owner[netdev] = dev.address

    def _advertised(self, name: str) -> list[Device]:
        out = []
        for m in self._members.get(name, []):
            ok = healthy(m, self._links)
            out.append(m.device if ok else replace(m.device, healthy=False))
        return out

    def _push(self) -> list[str]:
        changed = []
        for feed in self.feeds:
            # `update` keeps the feed's policy; only a config edit changes it, set here
            # without waking the streams (kubelet does not see policies).
            policy = pool_policy(feed.name, self._config)
            if policy != feed.current().policy:
                feed.set_policy(policy)
                log.info("device plugin: %s: preferred allocation %s", feed.name, policy)
            devices = self._advertised(feed.name)
            if tuple(devices) != feed.current().devices:
                feed.update(devices)
                changed.append(feed.name)
                log.info("device plugin: %s: %d devices, %d unhealthy", feed.name,
                         len(devices), sum(not d.healthy for d in devices))  # fmt: skip
        return changed

    def _reload_config(self) -> bool:
        """Re-read the config file; False, with the previous one kept, when it is refused."""
        try:
            self._config = read_config(self.config_path, self.prefix)
        except SriovkitError as exc:  # the agent keeps serving: never stop it for an edit
            log.error("device plugin: config %s refused, still serving the previous one: %s",
                      self.config_path, exc)  # fmt: skip
            return False
        return True

    def subscribe_resources(self, listener: ResourcesListener) -> None:
        """Call `listener(added, removed)` (in discovery's thread) when a config edit adds or
        removes resources; `feeds` is already the new list then."""
        self._resource_listeners.append(listener)

    def _sync_resources(self) -> None:
        """Feeds for resources the config added, in config order; removed ones emptied first,
        so every ListAndWatch stream of theirs tells kubelet the devices are gone."""
        added = [
            ResourceFeed(name, self._advertised(name), policy=pool_policy(name, self._config))
            for name in self._members
            if name not in self._by_name
        ]
        removed = [f for f in self.feeds if f.name not in self._members]
        if not added and not removed:
            return
        for feed in removed:
            feed.update([])
        by_name = self._by_name | {f.name: f for f in added}
        self.feeds = [by_name[name] for name in self._members]
        self._by_name = {f.name: f for f in self.feeds}
        log.info("device plugin: config %s adds %s and removes %s", self.config_path,
                 ", ".join(f.name for f in added) or "nothing",
                 ", ".join(f.name for f in removed) or "nothing")  # fmt: skip
        for listener in list(self._resource_listeners):
            listener(added, removed)

    # --- the service ------------------------------------------------------------------

    def start(self, on_exit: OnExit) -> None:
        """Start the thread that waits for events; returns at once."""
        self._stopping.clear()

        def run() -> None:
            error: BaseException | None = None
            try:
                self._loop()
            except BaseException as exc:  # handed to the supervisor
                error = exc
                log.error("device discovery stopped: %s", exc)
            if not self._stopping.is_set():
                on_exit(error)

        self._thread = threading.Thread(target=run, name="device-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the event sources."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for source in self._sources:
            source.close()
        self._sources = []
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wait(self, timeout: float) -> list[Event]:
        fds = [s.fileno() for s in self._sources]
        ready, _, _ = select.select([self._wake_r, *fds], [], [], max(timeout, 0.0))
        events: list[Event] = []
        for source in self._sources:
            if source.fileno() in ready:
                events.extend(source.read())
        if self._wake_r in ready:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 64)
        return events

    def _loop(self) -> None:
        next_rescan = time.monotonic() + self.rescan_interval
        retry_at: float | None = None
        while not self._stopping.is_set():
            now = time.monotonic()
            deadline = min(next_rescan, now + self.config_poll, retry_at or next_rescan)
            events = self._wait(deadline - now)
            if self._stopping.is_set():
                return
            if events:  # let the burst finish: one pass for all of it
                time.sleep(self.settle)
                events.extend(self._wait(0))
            # A `config` event (host/filewatch.py) only wakes the loop: the stamp decides.
            events = [e for e in events if e.kind != "config"]
            stamp = _config_stamp(self.config_path)
            config_changed = stamp != self._stamp
            now = time.monotonic()
            full = (
                config_changed or now >= next_rescan or (retry_at is not None and now >= retry_at)
            )  # fmt: skip
            if not full and not events:
                continue
            try:
                families = None if full else self.families(events)
                linked = {e.name for e in events if e.kind == "link"}
                named = None if None in linked else {n for n in linked if n}
                if full or families is None:
                    self.full_pass(config_changed=config_changed)
                    next_rescan = time.monotonic() + self.rescan_interval
                elif families:
                    self.family_pass(families, named)
                elif named is None or named:
                    self.links_pass(named)
                retry_at = None
            except (SriovkitError, OSError) as exc:  # a device vanished mid-read, a bad edit
                log.warning("device plugin: re-discovery failed, retrying: %s", exc)
                retry_at = time.monotonic() + 1.0
            finally:
                self._stamp = stamp  # a bad config is reported once, not every second


__all__ = ["Discovery", "LinkReader", "Member", "healthy"]
