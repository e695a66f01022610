"""The netlink seam of a veth-mode simulated host: the PF side from the fake, links from the kernel.

See `sriovkit.sim.veth` for how the tree and the kernel stay coherent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from sriovkit.errors import NotFound
from sriovkit.host.netlink import Address, LinkChange, LinkInfo, LinkState, Netlink, Route
from sriovkit.model.bond import BondMode, BondOptions, PortOptions
from sriovkit.model.bond_state import BondState
from sriovkit.model.vf import VfInfo, VfSettings
from sriovkit.sim.veth_pairs import VethPair, load_pairs


class SplitNetlink:
    """Netlink for veth mode: the PF side from the fake, every real link from the kernel.

    `tree_links` are the netdevs that exist only in the tree (the PFs and other simulated
    NICs): requests naming them, and every VF attribute request, go to `pf_side`; the rest go
    to `kernel`.

    The VF netdevs it shows are veth ends standing in for VFs: deleting the netns a veth end is
    in destroys the pair, where a real VF netdev would come back to the host netns. So this
    seam says `netdevs_die_with_netns`, and DEL does not wait for such a netdev to return.
    """

    netdevs_die_with_netns = True

    def __init__(
        self,
        pf_side: Netlink,
        kernel: Netlink,
        tree_links: frozenset[str],
        pairs: Mapping[str, VethPair] | None = None,
        *,
        host: Netlink | None = None,
        netns: Path | None = None,
    ) -> None:
        self.pf_side = pf_side
        self.kernel = kernel
        self.tree_links = tree_links
        self.pairs = dict(pairs or {})  # VF PCI address -> its pair
        self._host = host  # the host netns's kernel seam (owned by the parent) when in a pod
        self._netns = netns

    def __enter__(self) -> SplitNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _for(self, name: str) -> Netlink:
        return self.pf_side if name in self.tree_links else self.kernel

    def links(self) -> list[LinkInfo]:
        """The kernel's links in this netns plus the tree-only netdevs (PFs)."""
        fake = [lk for lk in self.pf_side.links() if lk.name in self.tree_links]
        return self.kernel.links() + fake

    def link_states(self, names: Collection[str] | None = None) -> list[LinkState]:
        """The kernel's link states in this netns plus the tree-only netdevs' (PFs)."""
        if names is None:
            fake = [s for s in self.pf_side.link_states() if s.name in self.tree_links]
            return self.kernel.link_states() + fake
        kernel = [n for n in names if n not in self.tree_links]
        tree = [n for n in names if n in self.tree_links]
        return (self.kernel.link_states(kernel) if kernel else []) + (
            self.pf_side.link_states(tree) if tree else []
        )

    def link(self, name: str) -> LinkInfo:
        """One link, from whichever side holds it."""
        return self._for(name).link(name)

    def link_by_index(self, index: int) -> LinkInfo:
        """The kernel's link with ifindex `index` (tree-only links have no real index)."""
        return self.kernel.link_by_index(index)

    def find_device(self, device_id: str, hint: str | None = None) -> LinkInfo | None:
        """The veth end standing in for VF `device_id`, found through its recorded peer.

        A veth has no PCI parent, so the simulated host's own record stands in for one: the
        peer end it created stays in the host netns, and the kernel reports that peer's other
        end (IFLA_LINK) with the id of the netns it is in (IFLA_LINK_NETNSID). Only that end
        is the VF: a link the pod made, whatever its name, MAC or kind, is never taken for it.
        """
        pair = self.pairs.get(device_id)
        if pair is None:
            return self.pf_side.find_device(device_id, hint)
        host = self._host if self._host is not None else self.kernel
        try:
            peer = host.link(pair.peer)
        except NotFound:
            return None  # the pair was destroyed (its VF end was deleted, or its netns)
        if peer.kind != "veth" or peer.link is None:
            return None
        if self._netns is None:  # bound to the host netns: the end must be here too
            if peer.link_netnsid is not None:
                return None
        elif peer.link_netnsid is None or peer.link_netnsid != host.netns_id(self._netns):
            return None
        try:
            end = self.kernel.link_by_index(peer.link)
        except NotFound:
            return None
        if end.kind != "veth" or end.link != peer.index:
            return None
        return end

    def netns_id(self, netns: Path) -> int | None:
        """The kernel's id for the netns at `netns`."""
        return self.kernel.netns_id(netns)

    def vfs(self, pf: str) -> list[VfInfo]:
        """VF attributes as the PF reports them: kept by the fake."""
        return self.pf_side.vfs(pf)

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        """VF attributes through the fake, with the PF driver's capability table."""
        self.pf_side.set_vf(pf, index, settings)

    def set_link(self, name: str, change: LinkChange) -> LinkInfo:
        """Rename / MTU / MAC / admin state on whichever side holds the link."""
        return self._for(name).set_link(name, change)

    def apply_link(self, name: str, change: LinkChange) -> None:
        """`set_link` on whichever side holds the link, without reading it back."""
        self._for(name).apply_link(name, change)

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        """A real netns move for a veth end (a PF refuses, as the fake's NETNS_LOCAL PF does)."""
        self._for(name).move_link(name, netns, change)

    def add_altname(self, name: str, altname: str) -> None:
        """Add an altname on whichever side holds the link."""
        self._for(name).add_altname(name, altname)

    def del_altname(self, name: str, altname: str) -> None:
        """Drop an altname on whichever side holds the link."""
        self._for(name).del_altname(name, altname)

    def addresses(self, name: str) -> list[Address]:
        """Addresses of the link."""
        return self._for(name).addresses(name)

    def add_address(self, name: str, cidr: str) -> None:
        """Add an address to the link."""
        self._for(name).add_address(name, cidr)

    def del_address(self, name: str, cidr: str) -> bool:
        """Remove one address from the link."""
        return self._for(name).del_address(name, cidr)

    def flush_addresses(self, name: str) -> None:
        """Remove every address of the link."""
        self._for(name).flush_addresses(name)

    def routes(self, name: str | None = None) -> list[Route]:
        """Kernel routes (the tree-only links carry none that matter to attachment)."""
        if name is not None and name in self.tree_links:
            return self.pf_side.routes(name)
        return self.kernel.routes(name)

    def add_route(self, dst: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        """Add a route on whichever side holds `dev` (the kernel when no device is given)."""
        side = self._for(dev) if dev is not None else self.kernel
        side.add_route(dst, gateway=gateway, dev=dev)

    # Bonds go to the kernel: the ports would be the veth ends, which only the kernel holds,
    # and the simulated bonding driver cannot enslave a real link. Where the host kernel has
    # no bonding (this project's CI machine) it answers EOPNOTSUPP, named by the seam.

    def create_bond(
        self, name: str, mode: BondMode, options: BondOptions, *, mtu: int | None = None
    ) -> LinkInfo:
        """A bond in the host kernel (veth mode has no simulated bonds)."""
        return self.kernel.create_bond(name, mode, options, mtu=mtu)

    def set_bond(self, name: str, options: BondOptions, *, mode: BondMode | None = None) -> None:
        """Bond options in the host kernel."""
        self.kernel.set_bond(name, options, mode=mode)

    def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
        """Enslave a kernel link to a kernel bond."""
        self.kernel.enslave(port, bond, options)

    def set_port(self, port: str, options: PortOptions) -> None:
        """Per-port options in the host kernel."""
        self.kernel.set_port(port, options)

    def release(self, port: str) -> None:
        """Release a kernel link from its bond."""
        self.kernel.release(port)

    def bond(self, name: str) -> BondState:
        """A kernel bond read back."""
        return self.kernel.bond(name)

    def bonds(self) -> list[str]:
        """The kernel's bonds."""
        return self.kernel.bonds()

    def delete_link(self, name: str) -> None:
        """Delete a kernel link (a bond)."""
        self.kernel.delete_link(name)

    def wait_link(self, name: str, timeout: float) -> LinkInfo:
        """Wait for a link on whichever side would hold it."""
        return self._for(name).wait_link(name, timeout)

    def in_netns(self, netns: Path) -> SplitNetlink:
        """The seam bound to another netns: there are no tree-only links there."""
        kernel = self.kernel.in_netns(netns)
        try:
            host = self._host if self._host is not None else self.kernel
            return SplitNetlink(
                self.pf_side.in_netns(netns), kernel, frozenset(), self.pairs,
                host=host, netns=netns,
            )  # fmt: skip
        except BaseException:
            kernel.close()
            raise

    def close(self) -> None:
        """Close both sides."""
        try:
            self.kernel.close()
        finally:
            self.pf_side.close()


def open_veth_netlink(root: Path) -> SplitNetlink:
    """The split seam for the veth-mode host at `root`: FakeNetlink(root) + the kernel."""
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415 - pyroute2 ~140 ms
    from sriovkit.sim.netlink import FakeNetlink  # noqa: PLC0415

    fake = FakeNetlink(Path(root))
    pairs = load_pairs(root)
    veth_ends = {p.name for p in pairs}
    tree_links = frozenset(fake.link_names()) - veth_ends - {"lo"}
    return SplitNetlink(fake, Pyroute2Netlink(), tree_links, {p.vf: p for p in pairs})


__all__ = ["SplitNetlink", "open_veth_netlink"]
