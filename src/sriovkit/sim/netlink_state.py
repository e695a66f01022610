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

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sriovkit.model.vf import LinkState, VfInfo, VfStats, VlanProto
from sriovkit.sim.capabilities import caps_for
from sriovkit.sim.netlink_bondstate import SimBond, SimPort, port_from_json, port_to_json

STATE_FILE = ".sriovkit-sim/netlink.json"
LOCK_FILE = ".sriovkit-sim/netlink.lock"
_TMP_FILE = ".sriovkit-sim/.netlink.json.tmp"


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


def vf_to_json(vf: VfInfo) -> dict[str, Any]:
    """A VF's attributes as plain JSON (stats are not kept: the fake passes no traffic)."""
    return {
        "mac": vf.mac,
        "vlan": vf.vlan,
        "qos": vf.qos,
        "proto": int(vf.proto),
        "spoofchk": vf.spoofchk,
        "trust": vf.trust,
        "link_state": int(vf.link_state),
        "min_tx_rate": vf.min_tx_rate,
        "max_tx_rate": vf.max_tx_rate,
        "rss_query": vf.rss_query,
    }


def vf_from_json(index: int, data: dict[str, Any]) -> VfInfo:
    """Inverse of `vf_to_json`."""
    return VfInfo(
        index=index,
        mac=data["mac"],
        vlan=data["vlan"],
        qos=data["qos"],
        proto=VlanProto(data["proto"]),
        spoofchk=data["spoofchk"],
        trust=data["trust"],
        link_state=LinkState(data["link_state"]),
        min_tx_rate=data["min_tx_rate"],
        max_tx_rate=data["max_tx_rate"],
        rss_query=data["rss_query"],
        stats=VfStats(),
    )


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


def links_from_tree(root: Path) -> dict[str, SimLink]:
    """The netdevs a simulated host's sysfs tree shows, keyed by their tree name.

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
        netdev = _in_root(top, f"{base}/{name}")
        device_link = f"{netdev}/device"
        try:
            driver: str | None = os.path.basename(os.readlink(f"{device_link}/driver"))
        except OSError:
            driver = None
        is_link = os.path.islink(device_link)
        device = _in_root(top, device_link)
        parent = os.path.basename(os.path.normpath(device)) if is_link else None
        numvfs = _read(f"{device}/sriov_numvfs")
        flags_text = _read(f"{netdev}/flags")
        operstate = _read(f"{netdev}/operstate", "unknown")
        carrier = _read(f"{netdev}/carrier", "0") == "1"
        # `carrier` reads only while the netdev is up, so it stands in for a missing `flags`.
        up = bool(_int(flags_text, 0) & 1) if flags_text else operstate == "up" or carrier
        found[name] = SimLink(
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
    return found


def _saved(root: Path) -> dict[str, Any]:
    try:
        saved: dict[str, Any] = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        saved = {}
    return saved


def link_names(root: Path, netns: str = "") -> list[str]:
    """Names of the tree's netdevs in `netns` ("" is the host's), after netlink's renames and
    moves: what `load_world` would give, from one listing and the state file, without reading
    every netdev's attributes (the veth-mode seam needs only the names, on every request)."""
    try:
        keys = os.listdir(f"{str(root).rstrip('/')}/sys/class/net")
    except OSError:
        keys = []
    changed = _saved(root).get("links", {})
    out = []
    bonds = _saved(root).get("bonds", {})
    for key in sorted(keys):
        if key == "bonding_masters" or key in bonds:
            continue
        over = changed.get(key)
        name, where = (over["name"], over["netns"]) if over else (key, "")
        if where == netns:
            out.append(name)
    out.extend(b["link"]["name"] for b in bonds.values() if b["link"]["netns"] == netns)
    return out


def load_world(root: Path) -> World:
    """The links from the tree with netlink's recorded changes on top."""
    world = World(links=links_from_tree(root))
    saved = _saved(root)
    for key, over in saved.get("links", {}).items():
        if key in world.links:
            link = world.links[key]
            world.links[key] = replace(
                link,
                name=over["name"],
                mac=over["mac"],
                mtu=over["mtu"],
                up=over["up"],
                netns=over["netns"],
                altnames=list(over["altnames"]),
                addresses=list(over["addresses"]),
                master=over.get("master"),
                port=port_from_json(over["port"]) if "port" in over else None,
            )
    for key, data in saved.get("bonds", {}).items():
        over = data["link"]
        world.links[key] = SimLink(
            key=key, index=int(over["index"]), name=over["name"], mac=over["mac"],
            mtu=over["mtu"], up=over["up"], carrier=bool(over.get("carrier", False)),
            netns=over["netns"], altnames=list(over["altnames"]),
            addresses=list(over["addresses"]), kind="bond", max_mtu=65535,
            master=over.get("master"),
        )  # fmt: skip
        world.bonds[key] = SimBond.from_json(data["bond"])
    for link in world.links.values():
        if link.master is not None and link.master in world.links:
            link.master_index = world.links[link.master].index
    for key, table in saved.get("vfs", {}).items():
        world.vfs[key] = {int(i): vf_from_json(int(i), d) for i, d in table.items()}
    world.routes = list(saved.get("routes", []))
    return world


@contextlib.contextmanager
def world_lock(root: Path) -> Iterator[None]:
    """Hold the simulated host's netlink lock: wrap load -> change -> `save_world` in it.

    flock() belongs to the open file, so a fresh open per call makes two threads of one process
    exclude each other as well as two processes, and a holder killed mid-change releases the
    lock with its fd. Not re-entrant: a thread holding it must not take it again. The lock file
    is never deleted (a waiter would otherwise lock an inode nobody else sees).
    """
    path = Path(root) / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def save_world(root: Path, world: World) -> None:
    """Write the recorded changes atomically (temp file, fsync, rename); hold `world_lock`.

    The lock makes one fixed temp name safe, and a writer killed before its rename leaves that
    one file for the next writer to truncate, instead of a new stray file per crash.
    """
    data = {
        "links": {k: link.overrides() for k, link in world.links.items()},
        "vfs": {
            k: {str(i): vf_to_json(v) for i, v in table.items()} for k, table in world.vfs.items()
        },
        "routes": world.routes,
        "bonds": {
            k: {"link": {**world.links[k].overrides(), "index": world.links[k].index,
                         "carrier": world.links[k].carrier}, "bond": b.to_json()}
            for k, b in world.bonds.items() if k in world.links
        },
    }
    target = Path(root) / STATE_FILE
    tmp = Path(root) / _TMP_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = [
    "LOCK_FILE",
    "STATE_FILE",
    "SimLink",
    "World",
    "link_names",
    "links_from_tree",
    "load_world",
    "save_world",
    "vf_from_json",
    "vf_to_json",
    "world_lock",
]
