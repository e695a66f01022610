"""The pod side of CNI ADD: the ifname check before anything changes, the one-message move in,
the result, addresses and routes, and the gratuitous ARP / unsolicited NA."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sriovkit.errors import HostError, NotFound
from sriovkit.host.netlink import Addresses, LinkChange, LinkInfo, Links
from sriovkit.host.netns import announce
from sriovkit.model.attachment import AttachmentRecord
from sriovkit.model.cni import NetConf
from sriovkit.model.cni_env import BadEnv
from sriovkit.model.cni_result import CniResult, Interface, IpConfig
from sriovkit.ops.restore import AttachContext
from sriovkit.ops.vfconfig import read_vf


def require_free_name(pod: Links, ifname: str, netns: Path) -> None:
    """Refuse an ifname the pod already uses, before anything changes.

    Otherwise the kernel would move the VF in and set its MAC and MTU before refusing the
    rename (EEXIST), and the VF would sit in the pod beside the pod's own link of that name.
    A name that appears after this look fails the same way, and ADD's undo finds the VF by
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


def move_in(
    ctx: AttachContext,
    pod: Links,
    conf: NetConf,
    record: AttachmentRecord,
    netns: Path,
    mac: str | None,
) -> LinkInfo:
    """One message: into the pod, renamed, MTU, MAC, up; then drop the altnames it carried.

    Returns the VF's link as the pod sees it (for the result), found by its device.
    """
    change = LinkChange(new_name=record.ifname, mtu=conf.mtu, mac=mac, up=True)
    ctx.netlink.move_link(record.original.name, netns, change)
    link = pod.find_device(record.device_id, hint=record.ifname)
    if link is None or link.name != record.ifname:
        where = "missing" if link is None else f"called {link.name}"
        raise HostError(f"VF {record.device_id} moved to {netns} but is {where} there")
    # The kernel keeps altnames across a netns move; the host's name for the VF means nothing
    # in the pod and may clash with the pod's own names later.
    if link.altnames:
        for alt in link.altnames:
            pod.del_altname(record.ifname, alt)
        link = pod.link(record.ifname)
    return link


def pod_result(
    ctx: AttachContext,
    conf: NetConf,
    record: AttachmentRecord,
    link: LinkInfo | None,
    ipam: CniResult,
) -> CniResult:
    if link is not None:
        iface = Interface(
            name=record.ifname,
            mac=link.mac,
            mtu=link.mtu,
            sandbox=record.netns,
            pci_id=record.device_id,
        )
    else:  # DPDK: the VF stays with its userspace driver; the pod opens it by PCI address
        mac = read_vf(ctx.netlink, record.pf or "", record.vf_index or 0).mac
        iface = Interface(
            name=record.ifname, mac=mac, sandbox=record.netns, pci_id=record.device_id
        )
    ips = tuple(IpConfig(address=ip.address, gateway=ip.gateway, interface=0) for ip in ipam.ips)
    dns = conf.dns if conf.dns is not None and not conf.dns.empty else ipam.dns
    return CniResult(interfaces=(iface,), ips=ips, routes=ipam.routes, dns=dns)


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


def announce_addresses(netns: Path, ifname: str, result: CniResult) -> None:
    mac = result.interfaces[0].mac
    if mac is None:
        return
    addrs = [ip.address.partition("/")[0] for ip in result.ips]
    # Best effort, like every CNI plugin's ARP announcement: a pod without carrier yet still
    # gets its network; neighbours then learn its MAC from its first packet.
    with contextlib.suppress(HostError):
        announce(netns, ifname, mac, addrs)


__all__ = [
    "announce_addresses",
    "configure_addresses",
    "move_in",
    "pod_result",
    "require_free_name",
]
