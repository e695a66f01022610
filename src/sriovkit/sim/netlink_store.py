"""The fake netlink's world kept with a simulated host's tree: load, save, lock.

`load_world` is the tree's links (`netlink_state.links_from_tree`) with what netlink changed on
top, from `ROOT/.sriovkit-sim/netlink.json`; `save_world` writes that file back atomically under
`world_lock`. The concurrency rules are in `sim/netlink_state.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Collection, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from sriovkit.model.vf import LinkState, VfInfo, VfStats, VlanProto
from sriovkit.sim.netlink_bondstate import SimBond, port_from_json
from sriovkit.sim.netlink_state import (
    LOCK_FILE,
    STATE_FILE,
    SimLink,
    World,
    _in_root,
    _int,
    _read,
    links_from_tree,
)

_TMP_FILE = ".sriovkit-sim/.netlink.json.tmp"


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


def _saved(root: Path) -> dict[str, Any]:
    try:
        saved: dict[str, Any] = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        saved = {}
    return saved


_shared_lock = threading.Lock()
_shared: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}
_SHARED_MAX = 8


def _saved_shared(root: Path) -> dict[str, Any]:
    """The state file as `_saved` parses it, parsed once per version of the file and shared
    by the reads that only look at it (`link_names`, `link_states`): they must not change it.

    The version is the open file's inode, mtime and size: a save is a rename of a new file
    over the old one, so a file never changes under the same inode, and a reader never mixes
    one version's stat with another's content. A health read of 4,096 links then costs no
    parse of the whole state file while netlink changed nothing.
    """
    path = str(Path(root) / STATE_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        with _shared_lock:
            hit = _shared.get(path)
        if hit is not None and hit[0] == version:
            return hit[1]
        with os.fdopen(os.dup(fd), "rb") as fh:
            try:
                saved: dict[str, Any] = json.loads(fh.read())
            except ValueError:
                saved = {}
    except OSError:
        return {}
    finally:
        os.close(fd)
    with _shared_lock:
        if len(_shared) >= _SHARED_MAX:
            _shared.clear()
        _shared[path] = (version, saved)
    return saved


def link_names(root: Path, netns: str = "") -> list[str]:
    """Names of the tree's netdevs in `netns` ("" is the host's), after netlink's renames and
    moves: what `load_world` would give, from one listing and the state file, without reading
    every netdev's attributes (the veth-mode seam needs only the names, on every request)."""
    try:
        keys = os.listdir(f"{str(root).rstrip('/')}/sys/class/net")
    except OSError:
        keys = []
    saved = _saved_shared(root)
    changed = saved.get("links", {})
    out = []
    bonds = saved.get("bonds", {})
    for key in sorted(keys):
        if key == "bonding_masters" or key in bonds:
            continue
        over = changed.get(key)
        name, where = (over["name"], over["netns"]) if over else (key, "")
        if where == netns:
            out.append(name)
    out.extend(b["link"]["name"] for b in bonds.values() if b["link"]["netns"] == netns)
    return out


def link_states(
    root: Path, netns: str = "", names: Collection[str] | None = None
) -> list[tuple[str, bool, bool]]:
    """(name, up, carrier) of each link in `netns` (of those called `names`), as `load_world`
    then the seam's `link()` give them (carrier is reported only while up); reads only
    `carrier`, and `flags` of a netdev whose admin state netlink never set: the device plugin's
    health pass over 4,096 VF netdevs, without reading every other attribute of each."""
    top = str(root).rstrip("/")
    base = f"{top}/sys/class/net"
    try:
        keys = sorted(os.listdir(base))
    except OSError:
        keys = []
    saved = _saved_shared(root)
    changed: dict[str, Any] = saved.get("links", {})
    bonds: dict[str, Any] = saved.get("bonds", {})
    out = []
    for key in keys:
        if key == "bonding_masters" or key in bonds:
            continue
        over = changed.get(key)
        name, where = (over["name"], over["netns"]) if over else (key, "")
        if where != netns or (names is not None and name not in names):
            continue
        netdev = _in_root(top, f"{base}/{key}")
        carrier = _read(f"{netdev}/carrier", "0") == "1"
        if over:
            up = bool(over["up"])
        else:  # as `links_from_tree` reads it
            flags = _read(f"{netdev}/flags")
            up = bool(_int(flags, 0) & 1) if flags else (
                _read(f"{netdev}/operstate", "unknown") == "up" or carrier
            )  # fmt: skip
        out.append((name, up, carrier and up))
    for data in bonds.values():
        over = data["link"]
        if over["netns"] == netns and (names is None or over["name"] in names):
            up = bool(over["up"])
            out.append((over["name"], up, up and bool(over.get("carrier", False))))
    return out


def _keys_named(saved: dict[str, Any], names: Collection[str], netns: str) -> set[str]:
    """The tree keys of the links that netns `netns` knows by one of `names` (or an altname):
    a netdev netlink never touched keeps its tree name, in the host netns."""
    changed: dict[str, Any] = saved.get("links", {})
    wanted = set(names)
    keys = {n for n in wanted if netns == "" and n not in changed}
    for key, over in changed.items():
        if over["netns"] == netns and (
            over["name"] in wanted or not wanted.isdisjoint(over["altnames"])
        ):
            keys.add(key)
    return keys


def load_world(root: Path, names: Collection[str] | None = None, netns: str = "") -> World:
    """The links from the tree with netlink's recorded changes on top.

    With `names`: only the links known by those names in `netns` (and every bond, which costs
    no tree read), so a request about one link does not read the 4,096 others. What it holds of
    them is exactly what the whole world holds.
    """
    saved = _saved(root)
    keys = None if names is None else _keys_named(saved, names, netns)
    world = World(links=links_from_tree(root, keys))
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
            k: {
                "link": {
                    **world.links[k].overrides(),
                    "index": world.links[k].index,
                    "carrier": world.links[k].carrier,
                },
                "bond": b.to_json(),
            }
            for k, b in world.bonds.items()
            if k in world.links
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
    "link_names",
    "link_states",
    "load_world",
    "save_world",
    "vf_from_json",
    "vf_to_json",
    "world_lock",
]
