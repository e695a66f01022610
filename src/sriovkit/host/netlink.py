"""The netlink seams: small typed protocols in domain verbs, one per concern.

A caller takes the narrowest one it needs: `Links` (links, moves, renames, altnames, the netns
the seam is bound to), `VfAttrs` (VF attributes set through a PF), `Addresses` (IP addresses
and routes), and `Bonds` (bond links and their ports). `Netlink` is all of them at once:
what an implementation provides and what `AttachContext.netlink` holds.

Implementations: `sriovkit.host._pyroute2.Pyroute2Netlink` (the real kernel; it and its
`_pyroute2_*` parts are the only modules that import pyroute2), `sriovkit.sim.netlink.FakeNetlink`
(a stateful fake that refuses what the real drivers refuse, with the same errno) and
`sriovkit.sim.veth_netlink.SplitNetlink` (veth mode: the kernel's links, the fake's VF
attributes). Every implementation raises only sriovkit errors: `NotFound` for a missing link,
`HostError(msg, errno=...)` for what the kernel refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

from sriovkit.model.bond import BondMode, BondOptions, PortOptions
from sriovkit.model.bond_state import BondState
from sriovkit.model.vf import VfInfo, VfSettings


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One netdev as RTM_GETLINK reports it (in the netns the seam is bound to)."""

    index: int
    name: str
    mac: str
    mtu: int
    operstate: str = "unknown"
    carrier: bool = False
    up: bool = False
    kind: str | None = None
    altnames: tuple[str, ...] = ()
    num_vfs: int = 0
    parent: str | None = None  # IFLA_PARENT_DEV_NAME: the PCI address for a PCI netdev
    link_netnsid: int | None = None  # set for a veth whose peer lives in another netns
    master: int | None = None
    link: int | None = None  # IFLA_LINK: a veth's peer ifindex (in `link_netnsid`'s netns)
    parent_bus: str | None = None  # IFLA_PARENT_DEV_BUS_NAME: "pci" for a PCI netdev
    max_mtu: int | None = None  # IFLA_MAX_MTU: the largest MTU the driver takes


@dataclass(frozen=True, slots=True)
class LinkState:
    """A link's admin state and carrier, as `Links.link` reports them: what the device
    plugin's health needs of every link, read for thousands at once."""

    name: str
    up: bool
    carrier: bool


@dataclass(frozen=True, slots=True)
class Address:
    """One IP address on a link."""

    ifindex: int
    address: str
    prefixlen: int

    @property
    def cidr(self) -> str:
        """`10.0.0.1/24` form."""
        return f"{self.address}/{self.prefixlen}"

    @property
    def family(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the main table: `dst` is a CIDR (`default` for 0.0.0.0/0 and ::/0)."""

    dst: str
    gateway: str | None = None
    ifindex: int | None = None
    table: int = 254
    scope: int = 0


@dataclass(frozen=True, slots=True)
class LinkChange:
    """What one RTM_SETLINK changes on a link besides its netns: name, MTU, MAC, admin state.

    None leaves that attribute as it is. One value object for `set_link` and `move_link`, so
    the four attributes are spelled out once, not in every implementation and caller.
    """

    new_name: str | None = None
    mtu: int | None = None
    mac: str | None = None
    up: bool | None = None

    @property
    def empty(self) -> bool:
        """True when the change sets nothing."""
        return self.new_name is None and self.mtu is None and self.mac is None and self.up is None


@runtime_checkable
class Links(Protocol):
    """Links of one network namespace: look up, find by device, configure, move, wait."""

    @property
    def netdevs_die_with_netns(self) -> bool:
        """True when the VF netdevs this seam shows are stand-ins destroyed with their netns.

        A real VF netdev whose pod netns is deleted comes back to the host netns (once the
        kernel's asynchronous netns cleanup ran); the veth end standing in for a VF in a
        veth-mode simulated host is destroyed instead. Only the veth-mode seam says True, so
        the VF identity and DEL paths never guess from a netdev they cannot find.
        """
        ...

    def links(self) -> list[LinkInfo]:
        """Every link in the namespace."""
        ...

    def link_states(self, names: Collection[str] | None = None) -> list[LinkState]:
        """Every link in the namespace (or the links called `names`; a missing one is left
        out), its admin state and carrier only: no VF attributes, and on a simulated host no
        netdev attribute beyond those two."""
        ...

    def link(self, name: str) -> LinkInfo:
        """The link called `name` (or having it as an altname); NotFound if there is none."""
        ...

    def link_by_index(self, index: int) -> LinkInfo:
        """The link with ifindex `index` in this netns; NotFound if there is none."""
        ...

    def find_device(self, device_id: str, hint: str | None = None) -> LinkInfo | None:
        """The netdev of PCI function `device_id` in this netns, whatever it is called now.

        Identity by device, never by name (DESIGN.md, "Identity of a VF"): a pod can rename
        links and create new ones, but not give a link a PCI parent. `hint` is a name to try
        first (one request instead of a dump). The seam's later requests naming the returned
        link's name act on this very ifindex, even if the pod renames links meanwhile.
        """
        ...

    def netns_id(self, netns: Path) -> int | None:
        """The id this seam's netns gives the netns at `netns` (RTM_GETNSID), None if none."""
        ...

    def set_link(self, name: str, change: LinkChange) -> LinkInfo:
        """Rename / set MTU / MAC / admin state of a link in one request; returns the new state."""
        ...

    def apply_link(self, name: str, change: LinkChange) -> None:
        """`set_link` without reading the link back (one request fewer on the CNI hot path)."""
        ...

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        """Move `name` into the netns at path `netns`, with `change` applied, in one message."""
        ...

    def del_altname(self, name: str, altname: str) -> None:
        """Drop an alternative name of a link (a moved VF must not keep a name that clashes)."""
        ...

    def add_altname(self, name: str, altname: str) -> None:
        """Give a link an alternative name back (what DEL restores after a pod had the VF)."""
        ...

    def wait_link(self, name: str, timeout: float) -> LinkInfo:
        """Wait on link events (no polling) until `name` exists; Timeout if it never does."""
        ...

    def in_netns(self, netns: Path) -> Self:
        """A seam of the same kind bound to the netns at `netns` (close it when done)."""
        ...

    def close(self) -> None:
        """Release the socket."""
        ...


@runtime_checkable
class VfAttrs(Protocol):
    """VF attributes as a PF reports and sets them (IFLA_VFINFO_LIST on the PF's link)."""

    def vfs(self, pf: str) -> list[VfInfo]:
        """The VF attributes the PF `pf` reports (IFLA_VFINFO_LIST), by VF index."""
        ...

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        """Apply every set field of `settings` to VF `index` in ONE RTM_SETLINK.

        The kernel applies the attributes in order (mac, vlan, rate, spoofchk, link-state, trust)
        and stops at the first one the driver refuses, leaving the earlier ones applied: the
        caller reads back to learn which one that was. A vlan change missing qos/proto, or a rate
        change missing one of min/max, is completed from the VF's current state.
        """
        ...


@runtime_checkable
class Addresses(Protocol):
    """IP addresses on links and main-table routes."""

    def addresses(self, name: str) -> list[Address]:
        """IP addresses on the link."""
        ...

    def add_address(self, name: str, cidr: str) -> None:
        """Add `cidr` (e.g. `10.1.0.2/24`) to the link."""
        ...

    def flush_addresses(self, name: str) -> None:
        """Remove every IP address from the link."""
        ...

    def del_address(self, name: str, cidr: str) -> bool:
        """Remove `cidr` from the link; False if the link does not have that address."""
        ...

    def routes(self, name: str | None = None) -> list[Route]:
        """Main-table routes, optionally only those through link `name`."""
        ...

    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        """Add a main-table route (`dst` a CIDR or `default`)."""
        ...


@runtime_checkable
class Bonds(Protocol):
    """Bond links and their ports (the kernel's bonding driver), in domain verbs.

    Kernel facts every implementation follows (measured in the lab, kernel 6.12): options are
    applied by the kernel in its own fixed order whatever order they are sent in, and all of
    them are accepted at creation, when the bond is down and has no ports; afterwards `mode`
    and `fail_over_mac` need a bond without ports (ENOTEMPTY), an option the mode does not have
    is refused (EACCES), `active_slave` must name a current port (EINVAL). Enslaving a link
    brings it up, gives it the bond's MTU and (fail_over_mac none) the bond's MAC, the first
    port giving the bond its MAC; releasing puts back the MTU and MAC it had when enslaved and
    leaves it DOWN. Enslaving a port of another bond moves it (no refusal): callers check.
    """

    def create_bond(
        self, name: str, mode: BondMode, options: BondOptions, *, mtu: int | None = None
    ) -> LinkInfo:
        """ONE RTM_NEWLINK: kind bond, its mode and every given option (IFLA_BOND_*), MTU.

        `primary` is sent as the ifindex of that link (so it must exist); `active_slave`
        needs ports and is refused here (set it with `set_bond` after enslaving).
        """
        ...

    def set_bond(self, name: str, options: BondOptions, *, mode: BondMode | None = None) -> None:
        """ONE RTM_NEWLINK changing the given options (and the mode) of an existing bond."""
        ...

    def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
        """Make `port` a port of `bond` (IFLA_MASTER), then its per-port options.

        The kernel takes no IFLA_INFO_SLAVE_DATA in the message that sets the master
        (EOPNOTSUPP: the link is not a port yet when it is parsed), so per-port options go in
        a second message.
        """
        ...

    def set_port(self, port: str, options: PortOptions) -> None:
        """Per-port options of a current port (IFLA_INFO_SLAVE_DATA: queue_id, prio)."""
        ...

    def release(self, port: str) -> None:
        """Take `port` out of its bond (IFLA_MASTER 0)."""
        ...

    def bond(self, name: str) -> BondState:
        """The bond read back: mode, every option, ports with their state, 802.3ad info."""
        ...

    def bonds(self) -> list[str]:
        """Names of the bond links in this netns."""
        ...

    def delete_link(self, name: str) -> None:
        """Delete a (virtual) link: the bond itself (its ports are released by the kernel)."""
        ...


@runtime_checkable
class Netlink(Links, VfAttrs, Addresses, Bonds, Protocol):
    """Every netlink concern over rtnetlink, bound to one network namespace."""


__all__ = [
    "Address",
    "Addresses",
    "Bonds",
    "LinkChange",
    "LinkInfo",
    "LinkState",
    "Links",
    "Netlink",
    "Route",
    "VfAttrs",
]
