"""The fake netlink's common part: the world it acts on and how a request loads and saves it.

`FakeNetlink` (`sim/netlink.py`) is composed of parts by concern, as the real seam is: its links
(in `sim/netlink.py`), VF attributes (`sim/netlink_vfs.py`), addresses and routes
(`sim/netlink_addrs.py`), each a subclass of `FakeSeam`, so all of them act on one world.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from sriovkit.errors import HostError, NotFound
from sriovkit.sim.events import publish as publish_event
from sriovkit.sim.netlink_bondview import publish
from sriovkit.sim.netlink_state import SimLink, World
from sriovkit.sim.netlink_store import load_world, save_world, world_lock

T = TypeVar("T")


def refused(code: int, what: str) -> HostError:
    """The error a refused request raises: `what` with the errno's text, and the errno."""
    return HostError(f"{what}: {os.strerror(code)}", errno=code)


class FakeSeam:
    """One netns of a fake world; `root` set = the world kept with that simulated host's tree."""

    def __init__(
        self, root: Path | None = None, *, _world: World | None = None, _netns: str = ""
    ) -> None:
        self.root = Path(root) if root is not None else None
        self._memory = _world if _world is not None else World()
        self._netns = _netns
        self.requests = 0  # RTM_SETLINK/NEWLINK messages sent, to check "one request" claims

    def _run(
        self,
        fn: Callable[[World], T],
        *,
        write: bool = False,
        names: Collection[str] | None = None,
    ) -> T:
        """`fn` on the world; saved after a change, or after a read that initialised VFs.

        A change is load -> `fn` -> save under the tree's `world_lock` (or the in-memory
        world's lock), so concurrent changes from other processes and threads are never lost;
        the save runs even when `fn` raises, because a refused VF attribute leaves the ones
        before it applied (`sim/netlink_vfs.py`). Reads of a tree take no lock (saves are atomic
        renames): they are the hot path of every CNI request. A read that only needs the links
        known by `names` (in this fake's netns) loads only those from the tree. `fn` must not
        call `_run` again.
        """
        if self.root is None:
            with self._memory.lock:
                return fn(self._memory)
        if not write:
            world = load_world(self.root, names, self._netns)
            try:
                result = fn(world)
            except Exception:
                if not world.changed:
                    raise
            else:
                if not world.changed:
                    return result
            # The read (re)initialised a VF table, which must be saved: done as a change, on a
            # world loaded under the lock, or the save could undo a concurrent writer's change.
        return self._change(self.root, fn)

    @staticmethod
    def _change(root: Path, fn: Callable[[World], T]) -> T:
        with world_lock(root):
            world = load_world(root)
            before = _snapshot(world)
            try:
                return fn(world)
            finally:
                save_world(root, world)
                publish(root, world)  # /proc/net/bonding follows every change, like the kernel's
                # What rtnetlink would announce: RTM_NEWLINK naming each link that changed (a
                # PF whose VF attributes changed included), RTM_DELLINK for one that left.
                changed = _changed_links(before, _snapshot(world))
                if changed:
                    publish_event(root, "link", changed)

    def _find(self, world: World, name: str) -> SimLink:
        for link in world.links.values():
            if link.netns == self._netns and (link.name == name or name in link.altnames):
                return link
        raise NotFound(f"link {name} not found")


_LinkView = tuple[str, str, bool, bool, int, str, tuple[str, ...], "str | None", object]


def _snapshot(world: World) -> dict[str, _LinkView]:
    """What a link event would be sent for, per link key: its netlink state and VF table."""
    out: dict[str, _LinkView] = {}
    for key, lk in world.links.items():
        table = world.vfs.get(key)
        vfs = None if table is None else tuple(table.values())
        out[key] = (
            lk.name, lk.netns, lk.up, lk.carrier, lk.mtu, lk.mac, tuple(lk.altnames), lk.master,
            vfs,
        )  # fmt: skip
    return out


def _changed_links(before: dict[str, _LinkView], after: dict[str, _LinkView]) -> list[str]:
    """The names (old and new) of the links whose view differs between the two snapshots."""
    names: dict[str, None] = {}
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old != new:
            for view in (old, new):
                if view is not None:
                    names[view[0]] = None
    return sorted(names)


__all__ = ["FakeSeam", "refused"]
