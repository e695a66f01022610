"""The pyroute2 seam's addresses part: IP addresses on links, main-table routes."""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from sriovkit.errors import HostError
from sriovkit.host._pyroute2_conn import Rtnl, mapped
from sriovkit.host.netlink import Address, Route

_RTM_NEWADDR = 20
_RTM_DELADDR = 21
_CREATE_EXCL = 0x400 | 0x200  # NLM_F_CREATE | NLM_F_EXCL, as `ip addr add`


class Pyroute2Addresses(Rtnl):
    """`Addresses` on the running kernel (see `sriovkit.host.netlink.Addresses`)."""

    def addresses(self, name: str) -> list[Address]:
        """Addresses on the link."""
        index = self.link(name).index
        with mapped(f"cannot list addresses of {name}", name):
            msgs = self._ipr.get_addr(index=index)
        return [
            Address(index, str(m.get_attr("IFA_ADDRESS")), int(m["prefixlen"]))
            for m in msgs
            if m.get_attr("IFA_ADDRESS") is not None
        ]

    def add_address(self, name: str, cidr: str) -> None:
        """Add `cidr` to the link (one RTM_NEWADDR; EEXIST if it is there)."""
        with self._on(name, f"failed to add {cidr} to {name}") as index:
            self._wire.request(_addr_msg(index, cidr, broadcast=True), _RTM_NEWADDR, _CREATE_EXCL)

    def del_address(self, name: str, cidr: str) -> bool:
        """One RTM_DELADDR for `cidr`; False if the link does not have it (EADDRNOTAVAIL)."""
        try:
            with self._on(name, f"failed to remove {cidr} from {name}") as index:
                self._wire.request(_addr_msg(index, cidr, broadcast=False), _RTM_DELADDR)
        except HostError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return False
            raise
        return True

    def flush_addresses(self, name: str) -> None:
        """Remove every address from the link."""
        index = self.link(name).index
        with mapped(f"failed to flush addresses of {name}", name):
            self._ipr.flush_addr(index=index)

    def routes(self, name: str | None = None) -> list[Route]:
        """Main-table routes (IPv4 and IPv6), optionally only through `name`."""
        oif = self.link(name).index if name is not None else None
        with mapped("cannot list routes"):
            msgs = list(self._ipr.get_routes(table=254))
        out = []
        for m in msgs:
            if oif is not None and m.get_attr("RTA_OIF") != oif:
                continue
            dst = m.get_attr("RTA_DST")
            out.append(
                Route(
                    dst=f"{dst}/{m['dst_len']}" if dst else "default",
                    gateway=m.get_attr("RTA_GATEWAY"),
                    ifindex=m.get_attr("RTA_OIF"),
                    table=int(m.get_attr("RTA_TABLE") or m["table"]),
                    scope=int(m["scope"]),
                )
            )
        return out

    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        """Add a main-table route."""
        args: dict[str, Any] = {"dst": "0.0.0.0/0" if dst == "default" else dst}
        if gateway is not None:
            args["gateway"] = gateway
            if dst == "default" and ":" in gateway:
                args["dst"] = "::/0"
        if dev is not None:
            args["oif"] = self._index(dev)
        with mapped(f"failed to add route {dst}", dev):
            self._ipr.route("add", **args)


def _addr_msg(index: int, cidr: str, *, broadcast: bool) -> Any:
    """An ifaddrmsg for `cidr` on link `index`, as `ip addr add` sends it: IFA_LOCAL and
    IFA_ADDRESS for IPv4, IFA_ADDRESS for IPv6."""
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: PLC0415

    iface = ipaddress.ip_interface(cidr)
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    msg["prefixlen"] = iface.network.prefixlen
    msg["index"] = index
    attrs: list[tuple[str, str]] = [("IFA_ADDRESS", str(iface.ip))]
    if iface.version == 4:
        attrs.insert(0, ("IFA_LOCAL", str(iface.ip)))
        if broadcast and iface.network.prefixlen < 31:
            # As `ip addr add ... brd +` and the reference plugins do: without IFA_BROADCAST
            # the kernel leaves the address without one, and subnet broadcasts go unanswered.
            attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    msg["attrs"] = attrs
    return msg


__all__ = ["Pyroute2Addresses"]
