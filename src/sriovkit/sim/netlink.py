"""`FakeNetlink`: a stateful fake of the netlink seams, answering as the real kernel and drivers do.

Composed by concern as the real seam is: the links part here, VF attributes in
`sim/netlink_vfs.py` (through the PF driver's capability table, refusing what the driver refuses
with its errno), addresses and routes in `sim/netlink_addrs.py`, a bonding driver in
`sim/netlink_bonds.py`, one world under them all
(`sim/netlink_seam.py`). Use it in memory (unit tests: `FakeNetlink()` then `add_link(...)`) or
bound to a simulated host (`FakeNetlink(root)`).
"""

from __future__ import annotations

import errno
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from sriovkit.errors import NotFound, Timeout
from sriovkit.host.netlink import LinkChange, LinkInfo, LinkState
from sriovkit.model.vf import normalize_mac
from sriovkit.sim.events import publish as publish_event
from sriovkit.sim.netlink_addrs import FakeAddresses
from sriovkit.sim.netlink_bonds import FakeBonds
from sriovkit.sim.netlink_seam import refused
from sriovkit.sim.netlink_state import SimLink, World
from sriovkit.sim.netlink_store import link_names, link_states, load_world, world_lock
from sriovkit.sim.netlink_vfs import FakeVfAttrs

# Paths that name the namespace a fake was created in (moving a link back "home").
_HOME_NETNS = {"/proc/1/ns/net", "/proc/self/ns/net", "/run/netns/host"}


class FakeNetlink(FakeVfAttrs, FakeAddresses, FakeBonds):
    """The fake netlink seam (every concern); `root` set = kept with that simulated host's tree."""

    # Its VF netdevs are simulated real ones: they never die with a netns. (A veth-mode host's
    # stand-ins do; its seam, `SplitNetlink`, says so.)
    netdevs_die_with_netns = False

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
        max_mtu: int = 9702,
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
            max_mtu=max_mtu,
        )

    def set_carrier(self, name: str, carrier: bool) -> None:
        """Cable plugged or pulled (PF carrier gates igb's rate limiting).

        On a simulated host the tree's `carrier` and `operstate` change, as the kernel shows
        carrier there (the world is re-read from the tree on every load). Nothing netlink keeps
        changes, so for a link that is neither a bond nor a bond's port (whose bond follows its
        carrier: a full change) only that link is read and no state is saved; the link event
        names it either way.
        """

        def apply(w: World) -> None:
            link = self._find(w, name)
            link.carrier = carrier
            if self.root is not None:
                self._write_carrier(self.root, link, carrier)

        if self.root is not None:
            with world_lock(self.root):  # ordered with every other change of this host
                link = self._find(load_world(self.root, {name}, self._netns), name)
                if link.kind is None and link.master is None:
                    self._write_carrier(self.root, link, carrier)
                    publish_event(self.root, "link", link.name)
                    return
        self._run(apply, write=True)

    @staticmethod
    def _write_carrier(root: Path, link: SimLink, carrier: bool) -> None:
        netdev = root / "sys/class/net" / link.key
        (netdev / "carrier").write_text("1\n" if carrier else "0\n")
        running = carrier and link.up
        (netdev / "operstate").write_text("up\n" if running else "down\n")

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
            kind=link.kind,
            altnames=tuple(link.altnames),
            num_vfs=link.num_vfs,
            parent=link.parent,
            parent_bus="pci" if link.parent else None,
            master=link.master_index,
            max_mtu=link.max_mtu,
        )

    # -- links ----------------------------------------------------------------------------------

    def links(self) -> list[LinkInfo]:
        """Every link in this fake's namespace."""
        return self._run(
            lambda w: [self._info(lk) for lk in w.links.values() if lk.netns == self._netns]
        )

    def link_states(self, names: Collection[str] | None = None) -> list[LinkState]:
        """Admin state and carrier of every link in this fake's namespace (or of those called
        `names`), as `link()` gives them; on a tree, read from `flags` and `carrier` alone
        (`netlink_store.link_states`)."""
        if self.root is None:
            found = [LinkState(lk.name, lk.up, lk.carrier) for lk in self.links()]
            return found if names is None else [s for s in found if s.name in names]
        states = link_states(self.root, self._netns, names)
        return [LinkState(n, up, carrier) for n, up, carrier in states]

    def link_names(self) -> list[str]:
        """Names of the links in this fake's namespace (cheaper than `links()` on a tree)."""
        if self.root is None:
            return [lk.name for lk in self.links()]
        return link_names(self.root, self._netns)

    def link(self, name: str) -> LinkInfo:
        """The link called `name`; NotFound otherwise (reads that one netdev of a tree)."""
        return self._run(lambda w: self._info(self._find(w, name)), names={name})

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

    def set_link(self, name: str, change: LinkChange) -> LinkInfo:
        """Rename / MTU / MAC / admin state in one request."""

        def apply(w: World) -> LinkInfo:
            self.requests += 1
            link = self._find(w, name)
            self._configure(w, link, self._netns, change)
            return self._info(link)

        return self._run(apply, write=True)

    def apply_link(self, name: str, change: LinkChange) -> None:
        """`set_link` without the read back (the fake reads nothing more either way)."""
        self.set_link(name, change)

    @staticmethod
    def _configure(w: World, link: SimLink, netns: str, change: LinkChange) -> None:
        what = f"failed to configure link {link.name}"
        new_name, mtu, mac = change.new_name, change.mtu, change.mac
        if new_name is not None and new_name != link.name:
            if not 0 < len(new_name) < 16 or "/" in new_name or new_name.strip() != new_name:
                raise refused(errno.EINVAL, f"{what}: name {new_name!r}")
            if any(
                o.netns == netns and new_name in (o.name, *o.altnames)
                for o in w.links.values()
                if o is not link
            ):
                raise refused(errno.EEXIST, f"{what}: {new_name} exists")
        if mtu is not None and not 68 <= mtu <= link.max_mtu:
            raise refused(errno.EINVAL, f"{what}: mtu {mtu}")
        bond = w.bonds.get(link.key)
        ports = [w.links[k] for k in bond.ports] if bond is not None and mtu is not None else []
        if any(mtu is not None and mtu > p.max_mtu for p in ports):
            raise refused(errno.EINVAL, f"{what}: mtu {mtu} is above a port's maximum")
        if mac is not None:
            try:
                mac = normalize_mac(mac)
            except Exception as exc:
                raise refused(errno.EADDRNOTAVAIL, f"{what}: mac {mac}") from exc
        link.netns = netns
        link.name = new_name or link.name
        link.mtu = mtu or link.mtu
        link.mac = mac or link.mac
        went_down = link.up and change.up is False
        link.up = link.up if change.up is None else change.up
        for port in ports:  # a bond's MTU goes to its ports (measured in the lab)
            port.mtu = link.mtu
        if bond is not None or link.master is not None:
            from sriovkit.sim.netlink_bonds import settle  # noqa: PLC0415

            settle(w, link, went_down=went_down)

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        """Move into `netns` (renaming and configuring it) in one message."""

        def apply(w: World) -> None:
            self.requests += 1
            link = self._find(w, name)
            target = "" if str(netns) in _HOME_NETNS else str(netns)
            if link.sriov:
                # A netdev with NETIF_F_NETNS_LOCAL cannot move; PFs stay home in the sim.
                raise refused(errno.EINVAL, f"failed to move {name} to {netns}")
            # Altnames move along; one that exists in the target makes the kernel refuse.
            if any(
                o.netns == target and set(link.altnames) & {o.name, *o.altnames}
                for o in w.links.values()
                if o is not link
            ):
                raise refused(errno.EEXIST, f"failed to move {name} to {netns}: altname exists")
            link.up = False  # the kernel closes a netdev before moving it
            renamed = replace(change, new_name=change.new_name or name)
            self._configure(w, link, target, renamed)

        self._run(apply, write=True)

    def del_altname(self, name: str, altname: str) -> None:
        """Drop an alternative name."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            if altname not in link.altnames:
                raise refused(errno.ENOENT, f"failed to delete altname {altname} of {name}")
            link.altnames.remove(altname)

        self._run(apply, write=True)

    def add_altname(self, name: str, altname: str) -> None:
        """Add an alternative name; EEXIST when any link in the netns already uses it."""

        def apply(w: World) -> None:
            link = self._find(w, name)
            if any(
                o.netns == link.netns and altname in (o.name, *o.altnames) for o in w.links.values()
            ):
                raise refused(errno.EEXIST, f"failed to add altname {altname} to {name}")
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


__all__ = ["FakeNetlink"]
