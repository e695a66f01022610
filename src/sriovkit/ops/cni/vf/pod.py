"""The VF kind's pod side of ADD: the one-message move in, and the CNI result."""

from __future__ import annotations

from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.host.netlink import LinkChange, LinkInfo, Links
from sriovkit.model.attachment import VfAttachment
from sriovkit.model.cni import NetConf
from sriovkit.model.cni_result import CniResult, Interface, IpConfig
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.vfconfig import read_vf


def move_in(
    ctx: AttachContext,
    pod: Links,
    conf: NetConf,
    record: VfAttachment,
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
    record: VfAttachment,
    link: LinkInfo | None,
    ipam: CniResult,
) -> CniResult:
    """The result: the VF's interface (with its PCI address) and what IPAM handed out."""
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


__all__ = ["move_in", "pod_result"]
