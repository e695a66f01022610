"""The fake netlink's world: links, VF attributes, addresses, routes; in memory or kept with a tree.

On a simulated host (`root` given) the links and VF counts come from the sysfs tree on every load
(`ROOT/sys/class/net/<if>`, the PF's `device/sriov_numvfs`, `device/driver`, `carrier`, `speed`),
and what netlink changed (VF attributes, names, MTU, MAC, state, netns, addresses, routes) is
kept in `ROOT/.sriovkit-sim/netlink.json`, so successive CLI calls see earlier changes.

Concurrency, as the kernel gives it: every change is a load -> modify -> save of that one file,
done under an exclusive flock() of `ROOT/.sriovkit-sim/netlink.lock` (`world_lock`), so two
processes (CLI calls, the agent, the in-process CNI fallback) or two threads changing different
VFs of one PF never lose each other's update. Reads take no lock: a save is a rename over the
file, so a reader sees the old world or the new one, never a torn one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.model.vf import VfInfo, VfStats
from sriovkit.sim.capabilities import caps_for
from sriovkit.sim.netlink_bondstate import SimBond, SimPort, port_to_json

STATE_FILE = ".sriovkit-sim/netlink.json"
LOCK_FILE = ".sriovkit-sim/netlink.lock"


@dataclass(slots=True)
class SimLink:
    """One netdev of the fake. `key` is its identity (the tree name on a simulated host)."""

    key: str
    index: int
    name: str
    mac: str
    mtu: int = 1500
    up: bool = False
    carrier: bool = True
    speed: int = 1000
    driver: str | None = None
    num_vfs: int = 0
    sriov: bool = False
    parent: str | None = None
    netns: str = ""
    altnames: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    kind: str | None = None  # "bond" for a bond the fake created
    master: str | None = None  # key of the bond this link is a port of
    port: SimPort | None = None  # what its bond keeps about it while it is a port
    max_mtu: int = 9702
    master_index: int | None = None  # the bond's ifindex, kept beside `master` for LinkInfo

    def overrides(self) -> dict[str, Any]:
        """What netlink may change, for the state file."""
        out: dict[str, Any] = {
            "name": self.name,
            "mac": self.mac,
            "mtu": self.mtu,
            "up": self.up,
            "netns": self.netns,
            "altnames": list(self.altnames),
            "addresses": list(self.addresses),
        }
        if self.master is not None and self.port is not None:
            out["master"] = self.master
            out["port"] = port_to_json(self.port)
        return out


@dataclass(slots=True)
class World:
    """Everything the fake kernel holds."""

    links: dict[str, SimLink] = field(default_factory=dict)
    vfs: dict[str, dict[int, VfInfo]] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)
    bonds: dict[str, SimBond] = field(default_factory=dict)  # by the bond link's key
    changed: bool = False  # set by a read that (re)initialised a VF table: it must be saved
    # Serialises the changes of an in-memory world (shared by a fake and its `in_netns` views)
    # across threads; a world loaded from a tree is guarded by `world_lock` instead.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def vf_table(self, link: SimLink) -> dict[int, VfInfo]:
        """The VF attributes of PF `link`, created as the driver initialises new VFs."""
        table = self.vfs.setdefault(link.key, {})
        if len(table) != link.num_vfs:
            # sriov_numvfs can only go N -> 0 -> M, and every VF creation resets the VFs'
            # attributes, so a changed count means fresh VFs.
            caps = caps_for(link.driver)
            self.changed = True
            table.clear()
            for i in range(link.num_vfs):
                table[i] = VfInfo(
                    index=i,
                    spoofchk=caps.default_spoofchk,
                    rss_query=False if caps.reports_rss_query else None,
                    stats=VfStats(),
                )
        return table


def _in_root(root: str, path: str) -> str:
    """Follow a symlink that may be absolute (written as on a real host) inside `root`."""
    try:
        target = os.readlink(path)
    except OSError:
        return path  # not a link
    if target.startswith("/"):
        return root + target
    return os.path.join(os.path.dirname(path), target)


def _read(path: str, default: str = "") -> str:
    # os-level reads: a buffered text file object costs ~3x more, and the fake reads dozens of
    # these per netlink call.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return default
    try:
        return os.read(fd, 65536).decode("utf-8", "replace").strip()
    except OSError:
        return default
    finally:
        os.close(fd)


def _int(text: str, default: int) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return default


def links_from_tree(root: Path, keys: Collection[str] | None = None) -> dict[str, SimLink]:
    """The netdevs a simulated host's sysfs tree shows, keyed by their tree name (only `keys`,
    when given: a request about one link reads that netdev, not the 4,096 others).

    Plain string paths and os calls: every netlink call of the fake reads the tree again, and
    pathlib's overhead made that a visible part of each CNI ADD in the integration tier.
    """
    top = str(root).rstrip("/")
    base = f"{top}/sys/class/net"
    found: dict[str, SimLink] = {}
    try:
        names = sorted(os.listdir(base))
    except OSError:
        names = []
    for pos, name in enumerate(names, start=1):
        if name == "bonding_masters":  # a file, not a link, while bonding is loaded
            continue
        if keys is None or name in keys:
            found[name] = _tree_link(top, f"{base}/{name}", name, pos)
    return found


def _tree_link(top: str, entry: str, name: str, pos: int) -> SimLink:
    """One netdev of the tree; `pos` its place in the listing (the ifindex when none is kept)."""
    netdev = _in_root(top, entry)
    device_link = f"{netdev}/device"
    try:
        driver: str | None = os.path.basename(os.readlink(f"{device_link}/driver"))
    except OSError:
        driver = None
    try:  # one readlink says both whether `device` is a link and where it points
        target = os.readlink(device_link)
    except OSError:
        device, parent = device_link, None
    else:
        device = top + target if target.startswith("/") else f"{netdev}/{target}"
        parent = os.path.basename(os.path.normpath(device))
    numvfs = _read(f"{device}/sriov_numvfs")
    flags_text = _read(f"{netdev}/flags")
    operstate = _read(f"{netdev}/operstate", "unknown")
    carrier = _read(f"{netdev}/carrier", "0") == "1"
    # `carrier` reads only while the netdev is up, so it stands in for a missing `flags`.
    up = bool(_int(flags_text, 0) & 1) if flags_text else operstate == "up" or carrier
    return SimLink(
        key=name,
        index=_int(_read(f"{netdev}/ifindex"), pos),
        name=name,
        mac=_read(f"{netdev}/address", "00:00:00:00:00:00"),
        mtu=_int(_read(f"{netdev}/mtu", "1500"), 1500),
        up=up,
        carrier=carrier,
        speed=max(_int(_read(f"{netdev}/speed", "0"), 0), 0),
        driver=driver,
        num_vfs=_int(numvfs, 0),
        sriov=numvfs != "",
        parent=parent,
    )


__all__ = [
    "LOCK_FILE",
    "STATE_FILE",
    "SimLink",
    "World",
    "links_from_tree",
]
