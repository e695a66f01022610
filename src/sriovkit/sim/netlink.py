"""`FakeNetlink`: a stateful fake of the netlink seam that answers like the real kernel and drivers.

VF requests go through the PF driver's capability table (`sim.capabilities`): attributes are
applied in the kernel's order and the first refused one stops the request with the driver's errno,
leaving the earlier ones applied, exactly as `do_setvfinfo()` does. Use it in memory (unit tests:
`FakeNetlink()` then `add_link(...)`) or bound to a simulated host (`FakeNetlink(root)`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from sriovkit.errors import HostError, NotFound, Timeout
from sriovkit.host.netlink import Address, LinkInfo, Route
from sriovkit.model.vf import ATTR_FIELDS, VfInfo, VfSettings, complete_request, normalize_mac
from sriovkit.sim.capabilities import caps_for
from sriovkit.sim.netlink_state import (
    SimLink,
    World,
    link_names,
    load_world,
    save_world,
    world_lock,
)

T = TypeVar("T")

# Paths that name the namespace a fake was created in (moving a link back "home").
_HOME_NETNS = {"/proc/1/ns/net", "/proc/self/ns/net", "/run/netns/host"}


def _refused(code: int, what: str) -> HostError:
    return HostError(f"{what}: {os.strerror(code)}", errno=code)


class FakeNetlink:
    """The fake netlink seam; `root` set = kept with that simulated host's tree."""

    def __init__(
        self, root: Path | None = None, *, _world: World | None = None, _netns: str = ""
    ) -> None:
        self.root = Path(root) if root is not None else None
        self._memory = _world if _world is not None else World()
        self._netns = _netns
        self.requests = 0  # RTM_SETLINK/NEWLINK messages sent, to check "one request" claims

    # -- world handling -------------------------------------------------------------------------

    def _run(self, fn: Callable[[World], T], *, write: bool = False) -> T:
        """`fn` on the world; saved after a change, or after a read that initialised VFs.

        A change is load -> `fn` -> save under the tree's `world_lock` (or the in-memory
        world's lock), so concurrent changes from other processes and threads are never lost;
        the save runs even when `fn` raises, because a refused VF attribute leaves the ones
        before it applied (see the module doc). Reads of a tree take no lock (saves are atomic
        renames): they are the hot path of every CNI request. `fn` must not call `_run` again.
        """
        if self.root is None:
            with self._memory.lock:
                return fn(self._memory)
        if not write:
            world = load_world(self.root)
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
            try:
                return fn(world)
            finally:
                save_world(root, world)

    def add_link(
        self,
        name: str,
        *,
        mac: str = "02:00:00:00:00:01",
        mtu: int = 1500,
        up: bool = True,
        carrier: bool = True,
        speed: int = 1000,
        driver: str | None = None,
        num_vfs: int = 0,
    ) -> None:
        """Seed an in-memory link; `driver` + `num_vfs` make it an SR-IOV PF."""
        if self.root is not None:
            raise TypeError("add_link seeds in-memory fakes; a simulated host's tree has its links")
        index = max((lk.index for lk in self._memory.links.values()), default=0) + 1
        self._memory.links[name] = SimLink(
            key=name,
            index=index,
            name=name,
            mac=mac,
            mtu=mtu,
            up=up,
            carrier=carrier,
            speed=speed,
            driver=driver,
            num_vfs=num_vfs,
            sriov=driver is not None,
            netns=self._netns,
        )

    def set_carrier(self, name: str, carrier: bool) -> None:
        """Cable plugged or pulled (PF carrier gates igb's rate limiting)."""
        self._run(lambda w: setattr(self._find(w, name), "carrier", carrier), write=True)

    def _find(self, world: World, name: str) -> SimLink:
        for link in world.links.values():
            if link.netns == self._netns and (link.name == name or name in link.altnames):
                return link
        raise NotFound(f"link {name} not found")

    @staticmethod
    def _info(link: SimLink) -> LinkInfo:
        running = link.up and link.carrier
        return LinkInfo(
            index=link.index,
            name=link.name,
            mac=link.mac,
            mtu=link.mtu,
            operstate="up" if running else "down",
            carrier=link.carrier if link.up else False,
            up=link.up,
            kind=None,
            altnames=tuple(link.altnames),
            num_vfs=link.num_vfs,
            parent=link.parent,
            parent_bus="pci" if link.parent else None,
        )

    # -- links ----------------------------------------------------------------------------------

    def links(self) -> list[LinkInfo]:
        """Every link in this fake's namespace."""
        return self._run(
            lambda w: [self._info(lk) for lk in w.links.values() if lk.netns == self._netns]
        )

    def link_names(self) -> list[str]:
        """Names of the links in this fake's namespace (cheaper than `links()` on a tree)."""
        if self.root is None:
            return [lk.name for lk in self.links()]
        return link_names(self.root, self._netns)

    def link(self, name: str) -> LinkInfo:
        """The link called `name`; NotFound otherwise."""
        return self._run(lambda w: self._info(self._find(w, name)))

    def link_by_index(self, index: int) -> LinkInfo:
        """The link with ifindex `index` in this fake's namespace; NotFound otherwise."""

        def get(w: World) -> LinkInfo:
            for lk in w.links.values():
                if lk.netns == self._netns and lk.index == index:
                    return self._info(lk)
            raise NotFound(f"link #{index} not found")

        return self._run(get)

    def find_device(self, device_id: str, hint: str | None = None) -> LinkInfo | None:
        """The netdev whose parent is PCI function `device_id`, whatever its name (hint unused)."""

        def get(w: World) -> LinkInfo | None:
            for lk in w.links.values():
                if lk.netns == self._netns and lk.parent == device_id:
                    return self._info(lk)
            return None

        return self._run(get)

    def netns_id(self, netns: Path) -> int | None:
        """The fake keeps no netns ids (nothing in it is a veth)."""
        return None

    def set_link(
        self,
        name: str,
        *,
        new_name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
    ) -> LinkInfo:
        """Rename / MTU / MAC / admin state in one request."""

        def apply(w: World) -> LinkInfo:
            self.requests += 1
            link = self._find(w, name)
            self._configure(w, link, self._netns, new_name=new_name, mtu=mtu, mac=mac, up=up)
            return self._info(link)

        return self._run(apply, write=True)

    def _configure(
        self,
        w: World,
        link: SimLink,
        netns: str,
        *,
        new_name: str | None,
        mtu: int | None,
        mac: str | None,
        up: bool | None,
    ) -> None:
        what = f"failed to configure link {link.name}"
        if new_name is not None and new_name != link.name:
            if not 0 < len(new_name) < 16 or "/" in new_name or new_name.strip() != new_name:
                raise _refused(errno.EINVAL, f"{what}: name {new_name!r}")
            if any(
                o.netns == netns and new_name in (o.name, *o.altnames)
                for o in w.links.values()
                if o is not link
            ):
                raise _refused(errno.EEXIST, f"{what}: {new_name} exists")
        if mtu is not None and not 68 <= mtu <= 9702:
            raise _refused(errno.EINVAL, f"{what}: mtu {mtu}")
        if mac is not None:
            try:
                mac = normalize_mac(mac)
            except Exception as exc:
                raise _refused(errno.EADDRNOTAVAIL, f"{what}: mac {mac}") from exc
        link.netns = netns
        link.name = new_name or link.name
        link.mtu = mtu or link.mtu
        link.mac = mac or link.mac
        link.up = link.up if up is None else up

    def move_link(
        self,
        name: str,
        netns: Path,
        *,
        new_name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
    ) -> None:
        """Move into `netns` (renaming and configuring it) in one message."""

        def apply(w: World) -> None:
            self.requests += 1
            link = self._find(w, name)
            target = "" if str(netns) in _HOME_NETNS else str(netns)
            if link.sriov:
                # A netdev with NETIF_F_NETNS_LOCAL cannot move; PFs stay home in the sim.
                raise _refused(errno.EINVAL, f"failed to move {name} to {netns}")
            # Altnames move along; one that exists in the target makes the kernel refuse.
            if any(
                o.netns == target and set(link.altnames) & {o.name, *o.altnames}
                for o in w.links.values()
                if o is not link
            ):
                raise _refused(errno.EEXIST, f"failed to move {name} to {netns}: altname exists")
            link.up = False  # the kernel closes a netdev before moving it
            self._configure(w, link, target, new_name=new_name or name, mtu=mtu, mac=mac, up=up)

        self._run(apply, write=True)

    def del_altname(self, name: str, altname: str) -> None:
        """Drop an alternative name."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            if altname not in link.altnames:
                raise _refused(errno.ENOENT, f"failed to delete altname {altname} of {name}")
            link.altnames.remove(altname)

        self._run(apply, write=True)

    def add_altname(self, name: str, altname: str) -> None:
        """Add an alternative name; EEXIST when any link in the netns already uses it."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            if any(
                o.netns == link.netns and altname in (o.name, *o.altnames) for o in w.links.values()
            ):
                raise _refused(errno.EEXIST, f"failed to add altname {altname} to {name}")
            link.altnames.append(altname)

        self._run(apply, write=True)

    def wait_link(self, name: str, timeout: float) -> LinkInfo:
        """The fake has no clock: the link is there or it never will be."""
        try:
            return self.link(name)
        except NotFound:
            raise Timeout(f"link {name} did not appear within {timeout:g} s") from None

    def in_netns(self, netns: Path) -> FakeNetlink:
        """A fake bound to another namespace of the same world."""
        return FakeNetlink(self.root, _world=self._memory, _netns=str(netns))

    def close(self) -> None:
        """Nothing to release."""

    # -- addresses and routes -------------------------------------------------------------------

    def addresses(self, name: str) -> list[Address]:
        """IP addresses on the link."""

        def get(w: World) -> list[Address]:
            link = self._find(w, name)
            out = []
            for cidr in link.addresses:
                iface = ipaddress.ip_interface(cidr)
                out.append(Address(link.index, str(iface.ip), iface.network.prefixlen))
            return out

        return self._run(get)

    def add_address(self, name: str, cidr: str) -> None:
        """Add an address; EEXIST if it is already there."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            iface = ipaddress.ip_interface(cidr)
            if any(ipaddress.ip_interface(a).ip == iface.ip for a in link.addresses):
                raise _refused(errno.EEXIST, f"failed to add {cidr} to {name}")
            link.addresses.append(str(iface))

        self._run(apply, write=True)

    def flush_addresses(self, name: str) -> None:
        """Remove every address (and the routes through the link, as the kernel does)."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            link.addresses.clear()
            w.routes = [
                r
                for r in w.routes
                if not (r["netns"] == self._netns and r["ifindex"] == link.index)
            ]

        self._run(apply, write=True)

    def routes(self, name: str | None = None) -> list[Route]:
        """Main-table routes of this namespace."""

        def get(w: World) -> list[Route]:
            index = self._find(w, name).index if name is not None else None
            return [
                Route(dst=r["dst"], gateway=r["gateway"], ifindex=r["ifindex"])
                for r in w.routes
                if r["netns"] == self._netns and (index is None or r["ifindex"] == index)
            ]

        return self._run(get)

    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        """Add a route; ENETUNREACH without a device or a gateway on a connected network."""

        def apply(w: World) -> None:
            norm = "default" if dst == "default" else str(ipaddress.ip_network(dst, strict=False))
            link = self._find(w, dev) if dev is not None else None
            if link is None and gateway is not None:
                gw = ipaddress.ip_address(gateway)
                link = next(
                    (
                        lk
                        for lk in w.links.values()
                        if lk.netns == self._netns
                        and any(gw in ipaddress.ip_interface(a).network for a in lk.addresses)
                    ),
                    None,
                )
            if link is None:
                raise _refused(errno.ENETUNREACH, f"failed to add route {dst}")
            entry = {"netns": self._netns, "dst": norm, "gateway": gateway, "ifindex": link.index}
            if entry in w.routes:
                raise _refused(errno.EEXIST, f"failed to add route {dst}")
            w.routes.append(entry)

        self._run(apply, write=True)

    # -- VFs ------------------------------------------------------------------------------------

    def _pf(self, w: World, pf: str) -> SimLink:
        link = self._find(w, pf)
        if not link.sriov:
            raise _refused(errno.EOPNOTSUPP, f"{pf} has no SR-IOV VFs")
        return link

    def vfs(self, pf: str) -> list[VfInfo]:
        """The VF attributes the PF reports."""
        # A read: the world is saved only if this read initialised the VF table (World.changed).
        return self._run(lambda w: list(w.vf_table(self._pf(w, pf)).values()))

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        """One VF request, applied attribute by attribute in kernel order (see module doc)."""

        def apply(w: World) -> None:
            self.requests += 1
            link = self._pf(w, pf)
            table = w.vf_table(link)
            what = f"failed to set VF {index} on {pf}"
            if not 0 <= index < len(table):
                raise _refused(errno.EINVAL, what)
            caps = caps_for(link.driver)
            current = table[index]
            wanted = current.with_settings(complete_request(current, settings))
            for attr in settings.attrs():
                # Each attribute is applied on its own, on top of what was applied before it.
                step = _only(ATTR_FIELDS[attr], wanted, current)
                code = caps.refusal(attr, step, carrier=link.carrier and link.up, speed=link.speed)
                if code is not None:
                    raise _refused(code, f"{what} ({attr.value})")
                current = step
                table[index] = current

        self._run(apply, write=True)


def _only(names: tuple[str, ...], wanted: VfInfo, current: VfInfo) -> VfInfo:
    return replace(current, **{n: getattr(wanted, n) for n in names})


__all__ = ["FakeNetlink"]
