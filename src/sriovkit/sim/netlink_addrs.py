"""The fake netlink's addresses part: IP addresses on links and main-table routes."""

from __future__ import annotations

import errno
import ipaddress

from sriovkit.host.netlink import Address, Route
from sriovkit.sim.netlink_seam import FakeSeam, refused
from sriovkit.sim.netlink_state import World


class FakeAddresses(FakeSeam):
    """`Addresses` of the fake (see `sriovkit.host.netlink.Addresses`)."""

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
                raise refused(errno.EEXIST, f"failed to add {cidr} to {name}")
            link.addresses.append(str(iface))

        self._run(apply, write=True)

    def del_address(self, name: str, cidr: str) -> bool:
        """Remove one address; False if the link does not have it (the kernel's
        EADDRNOTAVAIL)."""

        def apply(w: World) -> bool:
            link = self._find(w, name)
            iface = ipaddress.ip_interface(cidr)
            kept = [a for a in link.addresses if ipaddress.ip_interface(a) != iface]
            if len(kept) == len(link.addresses):
                return False
            link.addresses[:] = kept
            return True

        return self._run(apply, write=True)

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
                raise refused(errno.ENETUNREACH, f"failed to add route {dst}")
            entry = {"netns": self._netns, "dst": norm, "gateway": gateway, "ifindex": link.index}
            if entry in w.routes:
                raise refused(errno.EEXIST, f"failed to add route {dst}")
            w.routes.append(entry)

        self._run(apply, write=True)


__all__ = ["FakeAddresses"]
