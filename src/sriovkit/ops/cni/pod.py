"""The pod side of CNI ADD every kind shares: the ifname check before anything changes, the
addresses and routes from IPAM, and the gratuitous ARP / unsolicited NA."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sriovkit.errors import BadEnv, HostError, NotFound
from sriovkit.host.netlink import Addresses, Links
from sriovkit.model.cni_result import CniResult
from sriovkit.ops.cni.context import AttachContext


def require_free_name(pod: Links, ifname: str, netns: Path) -> None:
    """Refuse an ifname the pod already uses, before anything changes.

    Otherwise the kernel would move the link in and set its MAC and MTU before refusing the
    rename (EEXIST), and it would sit in the pod beside the pod's own link of that name.
    A name that appears after this look fails the same way, and ADD's undo finds the link by
    its device, never the pod's link by name.
    """
    try:
        link = pod.link(ifname)
    except NotFound:
        return
    raise BadEnv(
        "CNI_IFNAME",
        f"the pod's netns {netns} already has an interface {ifname} ({link.kind or 'device'}"
        f"{', an altname of ' + link.name if link.name != ifname else ''}); nothing was changed",
    )


def configure_addresses(pod: Addresses, ifname: str, ipam: CniResult) -> None:
    """Addresses, then routes (a route's gateway must be reachable through an address)."""
    for ip in ipam.ips:
        pod.add_address(ifname, ip.address)
    for route in ipam.routes:
        gateway = route.gw
        if gateway is None:  # the reference plugins use the same family's IP gateway
            family = ":" in route.dst
            gateway = next(
                (ip.gateway for ip in ipam.ips if ip.gateway and (":" in ip.gateway) == family),
                None,
            )
        pod.add_route(route.dst, gateway=gateway, dev=ifname)


def announce_addresses(ctx: AttachContext, netns: Path, ifname: str, result: CniResult) -> None:
    """Tell the neighbours the pod's addresses are at its interface's MAC (best effort)."""
    mac = result.interfaces[0].mac if result.interfaces else None
    if mac is None:
        return
    addrs = [ip.address.partition("/")[0] for ip in result.ips]
    # Best effort, like every CNI plugin's ARP announcement: a pod without carrier yet still
    # gets its network; neighbours then learn its MAC from its first packet.
    with contextlib.suppress(HostError):
        ctx.announcer(netns, ifname, mac, addrs)


__all__ = ["announce_addresses", "configure_addresses", "require_free_name"]
