"""The rtnetlink connection the pyroute2 seam's parts share: socket, error mapping, link lookups.

`Pyroute2Netlink` (`_pyroute2.py`) is composed of parts by concern (`_pyroute2_links.py`,
`_pyroute2_vfs.py`, `_pyroute2_addrs.py`), each a subclass of `Rtnl`, so they share its sockets
and one name -> ifindex cache: the hot path's socket (`_pyroute2_wire.Wire`), and pyroute2's
IPRoute for the rest, opened on first use. pyroute2 itself is imported only when a seam is
opened.

Namespaces: a socket for another netns is opened by a short-lived thread that enters the namespace,
creates the socket and exits; the socket stays in the namespace it was created in. The calling
thread never changes namespace (the agent's main thread must not, see DESIGN.md), and no child
process is forked (pyroute2's own netns support forks one).
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from sriovkit.errors import HostError, NotFound
from sriovkit.host._pyroute2_wire import Wire
from sriovkit.host.netlink import LinkChange, LinkInfo
from sriovkit.host.netns import socket_in_netns as netns_socket
from sriovkit.host.rtnl_link import parse_link

_NETLINK_ROUTE = 0
RTEXT_FILTER_VF = 1
_IFF_UP = 1
_RTM_NEWLINK = 16
_RTM_GETLINK = 18
_RTEXT_FILTER_SKIP_STATS = 1 << 3


def _host_socket() -> socket.socket:
    """An rtnetlink socket in this thread's netns, bound (the kernel picks the port id)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


def socket_in_netns(netns: Path, groups: int = 0) -> socket.socket:
    """An rtnetlink socket created inside the netns at `netns`, without moving this thread."""
    return netns_socket(
        netns, socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE, (0, groups) if groups else None
    )


@contextlib.contextmanager
def mapped(what: str, name: str | None = None) -> Iterator[None]:
    """NetlinkError/OSError -> our errors, naming what failed and on which device."""
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    try:
        yield
    except NetlinkError as exc:
        code = int(exc.code)
        if code == errno_mod.ENODEV and name is not None:
            raise NotFound(f"link {name} not found") from exc
        raise HostError(f"{what}: {os.strerror(code)}", errno=code) from exc
    except OSError as exc:
        code = exc.errno or errno_mod.EIO
        raise HostError(f"{what}: {os.strerror(code)}", errno=code) from exc


def link_info(msg: Any) -> LinkInfo:
    """One RTM_NEWLINK message pyroute2 received (a dump, a bond's), as a typed record: read
    from the message's own bytes by `rtnl_link.parse_link`, the one reading of a link message,
    the hot path's too."""
    start = int(msg.offset)
    return parse_link(bytes(msg.data[start : start + int(msg["header"]["length"])]))


class Rtnl:
    """One rtnetlink socket bound to the caller's netns or to `netns`, and its link lookups.

    Link look-ups, moves and changes, and addresses go over `_wire` (`_pyroute2_wire`: pyroute2's
    messages on the socket directly, the CNI hot path); everything else over pyroute2's IPRoute,
    opened on a second socket in the same netns only when first needed (`_ipr`).
    """

    def __init__(self, netns: Path | None = None) -> None:
        self.netns = netns
        # name -> ifindex of links this seam looked up. A seam lives for one request (the VF's
        # lock held), and a lookup costs a netlink round trip, so the index found by the first
        # lookup serves the later requests on the same link. An index never names another
        # device (the kernel allocates them afresh), so a stale entry can only fail with
        # ENODEV, never act on the wrong link; moves, renames and errors drop entries.
        self._indexes: dict[str, int] = {}
        self._iproute: Any = None
        with mapped("cannot open rtnetlink"):
            sock = socket_in_netns(netns) if netns is not None else _host_socket()
        self._wire = Wire(sock)

    @property
    def _ipr(self) -> Any:
        """pyroute2's IPRoute on this seam's netns, opened on first use (~140 ms to import
        pyroute2 the first time in a process, ~0.4 ms to open)."""
        if self._iproute is None:
            from pyroute2 import IPRoute  # noqa: PLC0415 - ~140 ms, paid only by real hosts

            with mapped("cannot open rtnetlink"):
                if self.netns is None:
                    self._iproute = IPRoute(groups=0)
                else:
                    self._iproute = IPRoute(groups=0, fileno=socket_in_netns(self.netns).detach())
        return self._iproute

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the sockets (and pyroute2's event loop, if it was opened)."""
        try:
            self._wire.close()
        finally:
            if self._iproute is not None:
                self._iproute.close()

    def _getlink(
        self, *, index: int = 0, name: str | None = None, vfs: bool = True, raw: bool = False
    ) -> Any:
        """One RTM_GETLINK by index or name (the kernel also resolves altnames), decoded by
        pyroute2, or with `raw` the message undecoded. With `vfs`, the PF's IFLA_NUM_VF and
        IFLA_VFINFO_LIST too (RTEXT_FILTER_VF); `raw` skips the statistics (nothing read from
        the raw message needs them)."""
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

        msg = ifinfmsg()
        msg["index"] = index
        attrs: list[tuple[str, Any]] = []
        if name is not None:
            attrs.append(("IFLA_IFNAME", name))
        mask = (RTEXT_FILTER_VF if vfs else 0) | (_RTEXT_FILTER_SKIP_STATS if raw else 0)
        if mask:
            attrs.append(("IFLA_EXT_MASK", mask))
        msg["attrs"] = attrs
        return self._wire.request(msg, _RTM_GETLINK, reply=bytes if raw else None)[0]

    def _link_info(self, *, index: int = 0, name: str | None = None, vfs: bool = True) -> LinkInfo:
        """One RTM_GETLINK read straight into `LinkInfo` (`rtnl_link.parse_link`)."""
        return parse_link(self._getlink(index=index, name=name, vfs=vfs, raw=True))

    def _setlink(self, index: int, change: LinkChange, netns_fd: int | None = None) -> None:
        """One RTM_NEWLINK on the link `index`: into the netns open as `netns_fd` (first, in the
        kernel), then MTU, MAC, name and admin state, whichever are given."""
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

        msg = ifinfmsg()
        msg["index"] = index
        attrs: list[tuple[str, Any]] = []
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        if change.new_name is not None:
            attrs.append(("IFLA_IFNAME", change.new_name))
        if change.mtu is not None:
            attrs.append(("IFLA_MTU", change.mtu))
        if change.mac is not None:
            attrs.append(("IFLA_ADDRESS", change.mac))
        if change.up is not None:
            msg["flags"] = _IFF_UP if change.up else 0
            msg["change"] = _IFF_UP
        msg["attrs"] = attrs
        self._wire.request(msg, _RTM_NEWLINK)

    def _get(self, name: str) -> Any:
        with mapped(f"cannot read link {name}", name):
            return self._getlink(name=name)

    def link(self, name: str) -> LinkInfo:
        """The link called `name` (the kernel also resolves altnames)."""
        with mapped(f"cannot read link {name}", name):
            info = self._link_info(name=name)
        self._indexes[name] = self._indexes[info.name] = info.index
        return info

    def _index(self, name: str) -> int:
        index = self._indexes.get(name)
        return index if index is not None else self.link(name).index

    def _forget(self, index: int) -> None:
        for key in [k for k, v in self._indexes.items() if v == index]:
            del self._indexes[key]

    @contextlib.contextmanager
    def _on(self, name: str, what: str) -> Iterator[int]:
        """The link's index for one request; its cache entries go if the request fails."""
        index = self._index(name)
        try:
            with mapped(what, name):
                yield index
        except (HostError, NotFound):
            self._forget(index)
            raise


__all__ = ["RTEXT_FILTER_VF", "Rtnl", "link_info", "mapped", "socket_in_netns"]
