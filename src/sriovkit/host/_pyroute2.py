"""The real netlink seam on pyroute2: the only module that imports it, and only when first used.

Namespaces: a socket for another netns is opened by a short-lived thread that enters the namespace,
creates the socket and exits; the socket stays in the namespace it was created in. The calling
thread never changes namespace (the agent's main thread must not, see DESIGN.md), and no child
process is forked (pyroute2's own netns support forks one).
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import ipaddress
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sriovkit.errors import HostError, NotFound, Timeout
from sriovkit.host.netlink import Address, LinkInfo, Route
from sriovkit.host.netns import socket_in_netns as netns_socket
from sriovkit.model.vf import (
    LinkState,
    VfInfo,
    VfSettings,
    VfStats,
    VlanProto,
    complete_request,
)

_NETLINK_ROUTE = 0
_RTMGRP_LINK = 1
_RTEXT_FILTER_VF = 1
_IFF_UP = 1
_U32_UNSET = 0xFFFF_FFFF  # the kernel reports "driver did not say" as (u32)-1


def socket_in_netns(netns: Path, groups: int = 0) -> socket.socket:
    """An rtnetlink socket created inside the netns at `netns`, without moving this thread."""
    return netns_socket(
        netns, socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE, (0, groups) if groups else None
    )


@contextlib.contextmanager
def _mapped(what: str, name: str | None = None) -> Iterator[None]:
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


def _flag(value: Any) -> bool | None:
    if value is None or int(value) == _U32_UNSET:
        return None
    return bool(value)


def parse_vfinfo(vfinfo: Any) -> VfInfo:
    """One decoded IFLA_VF_INFO nla (pyroute2) as a typed record."""
    mac = vfinfo.get_attr("IFLA_VF_MAC") or {"mac": "00:00:00:00:00:00"}
    # Every per-VF struct starts with the VF index; the kernel always sends IFLA_VF_MAC first.
    index = next(
        (int(v["vf"]) for _, v in vfinfo["attrs"] if isinstance(v, dict) and "vf" in v), -1
    )
    vlan = vfinfo.get_attr("IFLA_VF_VLAN") or {}
    proto = VlanProto.DOT1Q
    vlist = vfinfo.get_attr("IFLA_VF_VLAN_LIST")
    if vlist is not None:
        entries = vlist.get_attrs("IFLA_VF_VLAN_INFO")
        if entries:
            vlan = entries[0]
            with contextlib.suppress(ValueError):
                proto = VlanProto(int(entries[0]["proto"]))
    rate = vfinfo.get_attr("IFLA_VF_RATE") or {}
    stats_nla = vfinfo.get_attr("IFLA_VF_STATS")
    stats = None
    if stats_nla is not None:
        stats = VfStats(
            **{
                f: int(stats_nla.get_attr(f"IFLA_VF_STATS_{f.upper()}") or 0)
                for f in VfStats.__dataclass_fields__
            }
        )
    spoof = vfinfo.get_attr("IFLA_VF_SPOOFCHK")
    trust = vfinfo.get_attr("IFLA_VF_TRUST")
    rss = vfinfo.get_attr("IFLA_VF_RSS_QUERY_EN")
    state = vfinfo.get_attr("IFLA_VF_LINK_STATE")
    return VfInfo(
        index=index,
        mac=str(mac["mac"]),
        vlan=int(vlan.get("vlan", 0)),
        qos=int(vlan.get("qos", 0)),
        proto=proto if vlan.get("vlan") else VlanProto.DOT1Q,
        spoofchk=_flag(spoof["spoofchk"]) if spoof else None,
        trust=_flag(trust["trust"]) if trust else None,
        link_state=LinkState(int(state["link_state"])) if state else LinkState.AUTO,
        min_tx_rate=int(rate.get("min_tx_rate", 0)),
        max_tx_rate=int(rate.get("max_tx_rate", 0)),
        rss_query=_flag(rss["rss_query_en"]) if rss else None,
        stats=stats,
    )


def vf_request(index: int, settings: VfSettings) -> dict[str, Any]:
    """The pyroute2 `vf=` argument for one IFLA_VF_INFO carrying every set field of `settings`."""
    _fix_vlan_info_layout()
    spec: dict[str, Any] = {"vf": index}
    if settings.mac is not None:
        spec["mac"] = settings.mac
    if settings.vlan is not None:
        vlan = {"vlan": settings.vlan, "qos": settings.qos or 0}
        if settings.proto is VlanProto.DOT1AD:
            # Only IFLA_VF_VLAN_LIST carries a protocol; the kernel takes exactly one entry.
            spec["vlan"] = [{**vlan, "proto": int(settings.proto)}]
        else:
            spec["vlan"] = vlan
    if settings.min_tx_rate is not None or settings.max_tx_rate is not None:
        spec["rate"] = {
            "min_tx_rate": settings.min_tx_rate or 0,
            "max_tx_rate": settings.max_tx_rate or 0,
        }
    if settings.spoofchk is not None:
        spec["spoofchk"] = int(settings.spoofchk)
    if settings.link_state is not None:
        spec["link_state"] = int(settings.link_state)
    if settings.trust is not None:
        spec["trust"] = int(settings.trust)
    return spec


def _fix_vlan_info_layout() -> None:
    """Pad pyroute2's IFLA_VF_VLAN_INFO to the kernel's 16-byte `struct ifla_vf_vlan_info`.

    pyroute2 (0.9) packs it as 14 bytes; current kernels reject a VLAN list entry shorter than the
    struct with EINVAL, so without the pad every 802.1ad request failed (measured in the lab) even
    on drivers that support it. Idempotent; decoding the kernel's own 16-byte entries still works.
    """
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

    ivvi = ifinfmsg.vflist.vfinfo.vf_vlist.ivvi
    if len(ivvi.fields) == 4:
        ivvi.fields = (*ivvi.fields, ("__pad", "H"))


class Pyroute2Netlink:
    """The netlink seam on the running kernel, bound to the caller's netns or to `netns`."""

    def __init__(self, netns: Path | None = None) -> None:
        from pyroute2 import IPRoute  # noqa: PLC0415 - ~140 ms, paid only by real hosts

        _fix_vlan_info_layout()
        self.netns = netns
        # name -> ifindex of links this seam looked up. A seam lives for one request (the VF's
        # lock held), and a lookup costs a netlink round trip (~0.5 ms), so the index found by
        # the first lookup serves the later requests on the same link. An index never names
        # another device (the kernel allocates them afresh), so a stale entry can only fail
        # with ENODEV, never act on the wrong link; moves, renames and errors drop entries.
        self._indexes: dict[str, int] = {}
        with _mapped("cannot open rtnetlink"):
            if netns is None:
                self._ipr = IPRoute(groups=0)
            else:
                sock = socket_in_netns(netns)
                self._ipr = IPRoute(groups=0, fileno=sock.detach())

    def __enter__(self) -> Pyroute2Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (and pyroute2's event loop)."""
        self._ipr.close()

    # -- links ----------------------------------------------------------------------------------

    @staticmethod
    def _info(msg: Any) -> LinkInfo:
        linkinfo = msg.get_attr("IFLA_LINKINFO")
        props = msg.get_attr("IFLA_PROP_LIST")
        flags = int(msg["flags"])
        return LinkInfo(
            index=int(msg["index"]),
            name=str(msg.get_attr("IFLA_IFNAME")),
            mac=str(msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"),
            mtu=int(msg.get_attr("IFLA_MTU") or 0),
            operstate=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN").lower(),
            carrier=bool(msg.get_attr("IFLA_CARRIER")),
            up=bool(flags & _IFF_UP),
            kind=linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None,
            altnames=tuple(props.get_attrs("IFLA_ALT_IFNAME")) if props is not None else (),
            num_vfs=int(msg.get_attr("IFLA_NUM_VF") or 0),
            parent=msg.get_attr("IFLA_PARENT_DEV_NAME"),
            link_netnsid=msg.get_attr("IFLA_LINK_NETNSID"),
            master=msg.get_attr("IFLA_MASTER"),
            link=msg.get_attr("IFLA_LINK"),
            parent_bus=msg.get_attr("IFLA_PARENT_DEV_BUS_NAME"),
        )

    def _get(self, name: str) -> Any:
        with _mapped(f"cannot read link {name}", name):
            return self._ipr.link("get", ifname=name, ext_mask=_RTEXT_FILTER_VF)[0]

    def links(self) -> list[LinkInfo]:
        """Every link in the namespace."""
        with _mapped("cannot list links"):
            return [self._info(m) for m in self._ipr.get_links(ext_mask=_RTEXT_FILTER_VF)]

    def link(self, name: str) -> LinkInfo:
        """The link called `name` (the kernel also resolves altnames)."""
        info = self._info(self._get(name))
        self._indexes[name] = self._indexes[info.name] = info.index
        return info

    def link_by_index(self, index: int) -> LinkInfo:
        """The link with ifindex `index` (its name is remembered for this index)."""
        with _mapped(f"cannot read link #{index}", f"#{index}"):
            info = self._info(self._ipr.link("get", index=index, ext_mask=_RTEXT_FILTER_VF)[0])
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
        with _mapped("cannot list links"):
            msgs = self._ipr.get_links()
        for info in map(self._info, msgs):
            if _is_device(info, device_id):
                self._indexes[info.name] = info.index
                return info
        return None

    def netns_id(self, netns: Path) -> int | None:
        """RTM_GETNSID for the netns at `netns`: its id in this seam's netns, None if unset."""
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            with _mapped(f"cannot read the netns id of {netns}"):
                msg = self._ipr.get_netnsid(fd=fd)
        finally:
            os.close(fd)
        nsid = msg.get("nsid") if isinstance(msg, dict) else None
        return None if nsid is None or int(nsid) < 0 else int(nsid)

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
            with _mapped(what, name):
                yield index
        except (HostError, NotFound):
            self._forget(index)
            raise

    def set_link(
        self,
        name: str,
        *,
        new_name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
    ) -> LinkInfo:
        """One RTM_SETLINK with whichever of name / MTU / MAC / admin state is given."""
        with self._on(name, f"failed to configure link {name}") as index:
            self._ipr.link("set", index=index, **_link_args(new_name, mtu, mac, up))
        self._forget(index)
        info = self._info(self._ipr.link("get", index=index)[0])
        self._indexes[info.name] = index
        return info

    def move_link(
        self,
        name: str,
        netns: Path,
        *,
        new_name: str | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        up: bool | None = None,
    ) -> None:
        """One RTM_SETLINK: IFLA_NET_NS_FD + IFLA_IFNAME + MTU + address + flags."""
        with self._on(name, f"failed to move link {name} to {netns}") as index:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                args = _link_args(new_name, mtu, mac, up)
                self._ipr.link("set", index=index, net_ns_fd=fd, **args)
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

    def in_netns(self, netns: Path) -> Pyroute2Netlink:
        """A seam bound to the netns at `netns` (close it when done)."""
        return Pyroute2Netlink(netns)

    # -- VFs ------------------------------------------------------------------------------------

    def vfs(self, pf: str) -> list[VfInfo]:
        """IFLA_VFINFO_LIST of `pf`, by VF index."""
        vflist = self._get(pf).get_attr("IFLA_VFINFO_LIST")
        if vflist is None:
            return []
        return sorted(
            (parse_vfinfo(v) for v in vflist.get_attrs("IFLA_VF_INFO")), key=lambda v: v.index
        )

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        """ONE RTM_SETLINK carrying IFLA_VFINFO_LIST with every set attribute."""
        if (settings.min_tx_rate is None) != (settings.max_tx_rate is None):
            current = next((v for v in self.vfs(pf) if v.index == index), None)
            if current is None:
                raise HostError(f"failed to set VF {index} on {pf}: no such VF", errno_mod.EINVAL)
            settings = complete_request(current, settings)
        with self._on(pf, f"failed to set VF {index} on {pf}") as pf_index:
            self._ipr.link("set", index=pf_index, vf=vf_request(index, settings))

    # -- addresses and routes -------------------------------------------------------------------

    def addresses(self, name: str) -> list[Address]:
        """Addresses on the link."""
        index = self.link(name).index
        with _mapped(f"cannot list addresses of {name}", name):
            msgs = self._ipr.get_addr(index=index)
        return [
            Address(index, str(m.get_attr("IFA_ADDRESS")), int(m["prefixlen"]))
            for m in msgs
            if m.get_attr("IFA_ADDRESS") is not None
        ]

    def add_address(self, name: str, cidr: str) -> None:
        """Add `cidr` to the link."""
        iface = ipaddress.ip_interface(cidr)
        args: dict[str, Any] = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 4 and iface.network.prefixlen < 31:
            # As `ip addr add ... brd +` and the reference plugins do: without IFA_BROADCAST
            # the kernel leaves the address without one, and subnet broadcasts go unanswered.
            args["broadcast"] = str(iface.network.broadcast_address)
        with self._on(name, f"failed to add {cidr} to {name}") as index:
            self._ipr.addr("add", index=index, **args)

    def flush_addresses(self, name: str) -> None:
        """Remove every address from the link."""
        index = self.link(name).index
        with _mapped(f"failed to flush addresses of {name}", name):
            self._ipr.flush_addr(index=index)

    def routes(self, name: str | None = None) -> list[Route]:
        """Main-table routes (IPv4 and IPv6), optionally only through `name`."""
        oif = self.link(name).index if name is not None else None
        with _mapped("cannot list routes"):
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
        with _mapped(f"failed to add route {dst}", dev):
            self._ipr.route("add", **args)


def _is_device(info: LinkInfo, device_id: str) -> bool:
    return info.parent == device_id and info.parent_bus in (None, "pci")


def _link_args(
    new_name: str | None, mtu: int | None, mac: str | None, up: bool | None
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if new_name is not None:
        args["ifname"] = new_name
    if mtu is not None:
        args["mtu"] = mtu
    if mac is not None:
        args["address"] = mac
    if up is not None:
        args["state"] = "up" if up else "down"
    return args


__all__ = ["Pyroute2Netlink", "parse_vfinfo", "socket_in_netns", "vf_request"]
