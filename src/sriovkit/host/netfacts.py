"""`NetFacts(root)`: what the device plugin's pools need beyond the PCI inventory.

Which interfaces carry the default route, which are bond ports, and per function its link type,
RDMA devices and ACPI index. All of it is read from files under the root (procfs and sysfs), so
a simulated host answers the same way as the real one; no netlink socket is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from sriovkit.model.pci import PciAddress

CLASS_NET = "sys/class/net"
PCI_DEVICES = "sys/bus/pci/devices"

# ARPHRD_* from <linux/if_arp.h>, named as iproute2 and netlink's EncapType name them (what
# upstream compares `linkTypes` against).
LINK_TYPES = {
    1: "ether",
    32: "infiniband",
    512: "ppp",
    768: "ipip",
    772: "loopback",
    776: "sit",
    778: "gre",
    823: "ip6gre",
    65534: "none",
}
_RTF_UP = 0x1
_RTF_REJECT = 0x200


def _read(path: str) -> str | None:
    # os-level reads: a text file object costs ~3x more, and the pools read one `type` file per
    # VF netdev (4,096 on a big host) at every agent start.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):  # /proc/net/route can exceed one read
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def default_route_ifaces(route: str | None, ipv6_route: str | None) -> set[str]:
    """Interfaces with a default route in `/proc/net/route` and `/proc/net/ipv6_route` text.

    IPv4: destination and mask 0, route up. IPv6: ::/0 that is not an unreachable (RTF_REJECT)
    entry; the kernel lists one of those on `lo` on every host.
    """
    out: set[str] = set()
    for line in (route or "").splitlines()[1:]:  # the first line is a header
        cols = line.split()
        if len(cols) >= 8 and cols[1] == "00000000" and cols[7] == "00000000":
            try:
                if int(cols[3], 16) & _RTF_UP:
                    out.add(cols[0])
            except ValueError:
                continue
    for line in (ipv6_route or "").splitlines():
        cols = line.split()
        if len(cols) < 10 or cols[1] != "00" or cols[0].strip("0"):
            continue
        try:
            flags = int(cols[8], 16)
        except ValueError:
            continue
        if flags & _RTF_UP and not flags & _RTF_REJECT and cols[9] != "lo":
            out.add(cols[9])
    return out


class NetFacts:
    """Reads under `root` (treated as `/`)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = Path(root)
        self._root_s = str(self.root).rstrip("/")

    def _p(self, rel: str) -> str:
        return f"{self._root_s}/{rel}"

    def _lowers(self, ifname: str) -> list[str]:
        """Interfaces below `ifname`: a VLAN's parent, a bond's ports (`lower_<name>` links)."""
        try:
            names = os.listdir(self._p(f"{CLASS_NET}/{ifname}"))
        except OSError:
            return []
        return [n.removeprefix("lower_") for n in names if n.startswith("lower_")]

    def default_route_links(self) -> dict[str, str]:
        """Interface -> the interface holding the default route that runs over it.

        Upstream only looks at a device's own netdev; here a route on a VLAN or a bond on top of
        a PF counts for the PF too (`lower_*` links, followed down), as the traffic goes there.
        """
        routed = default_route_ifaces(
            _read(self._p("proc/net/route")), _read(self._p("proc/net/ipv6_route"))
        )
        out: dict[str, str] = {}
        for top in sorted(routed):
            todo = [top]
            while todo:
                name = todo.pop()
                if name in out:
                    continue
                out[name] = top
                todo.extend(self._lowers(name))
        return out

    def bond_ports(self) -> dict[str, str]:
        """Port -> bond, for every bond in `sys/class/net/bonding_masters`."""
        masters = _read(self._p(f"{CLASS_NET}/bonding_masters"))
        out: dict[str, str] = {}
        for bond in (masters or "").split():
            slaves = _read(self._p(f"{CLASS_NET}/{bond}/bonding/slaves"))
            for port in (slaves or "").split():
                out[port] = bond
        return out

    def link_type(self, ifname: str) -> str | None:
        """`ether`, `infiniband`, ... from `sys/class/net/<if>/type`; None when unreadable."""
        text = _read(self._p(f"{CLASS_NET}/{ifname}/type"))
        try:
            arphrd = int((text or "").strip())
        except ValueError:
            return None
        return LINK_TYPES.get(arphrd, f"arphrd-{arphrd}")

    def has_rdma(self, addr: PciAddress) -> bool:
        """True when the function has an RDMA device (`<function>/infiniband/<dev>`)."""
        try:
            return bool(os.listdir(self._p(f"{PCI_DEVICES}/{addr}/infiniband")))
        except OSError:
            return False

    def acpi_index(self, addr: PciAddress) -> str | None:
        """The firmware's `acpi_index` of the function (what `acpiIndexes` selects on)."""
        text = _read(self._p(f"{PCI_DEVICES}/{addr}/acpi_index"))
        return text.strip() if text and text.strip() else None


__all__ = ["LINK_TYPES", "NetFacts", "default_route_ifaces"]
