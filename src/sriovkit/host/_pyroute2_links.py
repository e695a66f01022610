"""The pyroute2 seam's links part: look-ups, find by device, configure, move, altnames, wait."""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Self

from sriovkit.errors import HostError, NotFound, Timeout
from sriovkit.host._pyroute2_conn import RTEXT_FILTER_VF, Rtnl, link_info, mapped, socket_in_netns
from sriovkit.host.netlink import LinkChange, LinkInfo, LinkState

_RTMGRP_LINK = 1
_IFF_UP = 0x1
_RTM_GETNSID = 90


_GET_EACH_MAX = 512  # above this many names one dump costs less than a request per name


def _state(msg: Any) -> LinkState:
    return LinkState(
        str(msg.get_attr("IFLA_IFNAME")),
        bool(int(msg["flags"]) & _IFF_UP),
        bool(msg.get_attr("IFLA_CARRIER")),
    )


class Pyroute2Links(Rtnl):
    """`Links` on the running kernel (see `sriovkit.host.netlink.Links`)."""

    # Real netdevs: a VF netdev of a deleted netns comes back to the host netns.
    netdevs_die_with_netns = False

    def links(self) -> list[LinkInfo]:
        """Every link in the namespace."""
        with mapped("cannot list links"):
            return [link_info(m) for m in self._ipr.get_links(ext_mask=RTEXT_FILTER_VF)]

    def link_states(self, names: Collection[str] | None = None) -> list[LinkState]:
        """Every link's (or the named links') admin state and carrier: a dump without the PFs'
        IFLA_VFINFO_LIST, which on a host with thousands of VFs is most of what `links()`
        reads; a few names: one RTM_GETLINK each instead of parsing every link."""
        if names is not None and len(names) <= _GET_EACH_MAX:
            out: list[LinkState] = []
            for name in names:
                with contextlib.suppress(NotFound), mapped(f"cannot read link {name}", name):
                    info = self._link_info(name=name, vfs=False)
                    out.append(LinkState(info.name, info.up, info.carrier))
            return out
        with mapped("cannot list links"):
            found = [_state(m) for m in self._ipr.get_links()]
        return found if names is None else [s for s in found if s.name in names]

    def link_by_index(self, index: int) -> LinkInfo:
        """The link with ifindex `index` (its name is remembered for this index)."""
        with mapped(f"cannot read link #{index}", f"#{index}"):
            info = self._link_info(index=index)
        self._indexes[info.name] = info.index
        return info

    def find_device(self, device_id: str, hint: str | None = None) -> LinkInfo | None:
        """The link whose parent device is PCI function `device_id` (IFLA_PARENT_DEV_NAME).

        Only the kernel sets a link's parent, from the device the driver registered it on: a
        pod cannot give a veth or a renamed link one. The name found is remembered with its
        ifindex, so the next request on that name acts on this link even if renamed meanwhile.
        """
        if hint is not None:
            with contextlib.suppress(NotFound, HostError):
                info = self.link(hint)
                if _is_device(info, device_id):
                    return info
        # A plain dump: every PF's IFLA_VFINFO_LIST (what `links()` asks for) is not needed
        # here, and on a host with thousands of VFs it is most of the dump.
        with mapped("cannot list links"):
            msgs = self._ipr.get_links()
        for info in map(link_info, msgs):
            if _is_device(info, device_id):
                self._indexes[info.name] = info.index
                return info
        return None

    def netns_id(self, netns: Path) -> int | None:
        """RTM_GETNSID for the netns at `netns`: its id in this seam's netns, None if unset."""
        from pyroute2.netlink.rtnl.nsidmsg import nsidmsg  # noqa: PLC0415

        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            with mapped(f"cannot read the netns id of {netns}"):
                msg = nsidmsg()
                msg["attrs"] = [("NETNSA_FD", fd)]
                replies = self._wire.request(msg, _RTM_GETNSID)
        finally:
            os.close(fd)
        nsid = replies[0].get_attr("NETNSA_NSID") if replies else None
        if nsid is None:
            return None
        nsid = int(nsid)
        nsid = nsid - (1 << 32) if nsid >= 1 << 31 else nsid  # u32 on the wire, -1 = unset
        return None if nsid < 0 else nsid

    def set_link(self, name: str, change: LinkChange) -> LinkInfo:
        """One RTM_SETLINK with whichever of name / MTU / MAC / admin state is given."""
        with self._on(name, f"failed to configure link {name}") as index:
            self._setlink(index, change)
        self._forget(index)
        with mapped(f"cannot read link #{index}", f"#{index}"):
            info = self._link_info(index=index, vfs=False)
        self._indexes[info.name] = index
        return info

    def apply_link(self, name: str, change: LinkChange) -> None:
        """One RTM_SETLINK, as `set_link`, without reading the link back."""
        with self._on(name, f"failed to configure link {name}") as index:
            self._setlink(index, change)
        if change.new_name is not None:
            self._forget(index)

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        """One RTM_SETLINK: IFLA_NET_NS_FD + IFLA_IFNAME + MTU + address + flags."""
        with self._on(name, f"failed to move link {name} to {netns}") as index:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._setlink(index, change, netns_fd=fd)
            finally:
                os.close(fd)
        self._forget(index)  # gone from this namespace

    def del_altname(self, name: str, altname: str) -> None:
        """Drop one alternative name."""
        with self._on(name, f"failed to delete altname {altname} of {name}") as index:
            self._ipr.link("property_del", index=index, altname=altname)

    def add_altname(self, name: str, altname: str) -> None:
        """Add one alternative name."""
        with self._on(name, f"failed to add altname {altname} to {name}") as index:
            self._ipr.link("property_add", index=index, altname=altname)

    def wait_link(self, name: str, timeout: float) -> LinkInfo:
        """Subscribe to link events first, then look, then wait for events until it shows up."""
        ns = self.netns or Path("/proc/self/ns/net")
        events = socket_in_netns(ns, groups=_RTMGRP_LINK)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with contextlib.suppress(NotFound):
                    return self.link(name)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"link {name} did not appear within {timeout:g} s")
                ready, _, _ = select.select([events], [], [], left)
                if ready:
                    events.recv(65536)  # content not needed: any link event -> look again
        finally:
            events.close()

    def in_netns(self, netns: Path) -> Self:
        """A seam of the same kind bound to the netns at `netns` (close it when done)."""
        return type(self)(netns)


def _is_device(info: LinkInfo, device_id: str) -> bool:
    return info.parent == device_id and info.parent_bus in (None, "pci")


__all__ = ["Pyroute2Links"]
