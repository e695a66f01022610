"""The pyroute2 seam's bonds part: create a bond with every option in one message, ports, read back.

pyroute2 0.9's own bond attribute table stops at IFLA_BOND_TLB_DYNAMIC_LB (27) and its port table
at IFLA_BOND_SLAVE_AD_AGGREGATOR_ID (6): peer_notif_delay, lacp_active, arp_missed_max,
ns_ip6_target, coupled_control, the ports' 802.3ad oper states and prio would be dropped or sent
as garbage. So complete tables (include/uapi/linux/if_link.h, kernel 6.12) are registered for
kind `bond` (`_install_tables`), and requests are built as plain attribute lists.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
from collections.abc import Iterator
from typing import Any

from sriovkit.errors import HostError, NotFound
from sriovkit.host._pyroute2_conn import Rtnl, link_info
from sriovkit.host.netlink import LinkInfo
from sriovkit.model.bond import (
    AdSelect,
    ArpAllTargets,
    ArpValidate,
    BondMode,
    BondOptions,
    FailOverMac,
    LacpRate,
    PortOptions,
    PrimaryReselect,
    XmitHashPolicy,
)
from sriovkit.model.bond_state import AdInfo, BondPortState, BondState, MiiStatus, PortRole

_NLM_F_REQUEST = 1
_NLM_F_ACK = 4
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_RTM_NEWLINK = 16

# option -> (IFLA_BOND_* name, pyroute2 type); the kernel applies them in its own order
# (bond_changelink), so the order here is only the order of the table.
OPTION_ATTRS: dict[str, tuple[str, str]] = {
    "miimon": ("IFLA_BOND_MIIMON", "uint32"),
    "updelay": ("IFLA_BOND_UPDELAY", "uint32"),
    "downdelay": ("IFLA_BOND_DOWNDELAY", "uint32"),
    "peer_notif_delay": ("IFLA_BOND_PEER_NOTIF_DELAY", "uint32"),
    "use_carrier": ("IFLA_BOND_USE_CARRIER", "uint8"),
    "arp_interval": ("IFLA_BOND_ARP_INTERVAL", "uint32"),
    "arp_ip_target": ("IFLA_BOND_ARP_IP_TARGET", "targets4"),
    "ns_ip6_target": ("IFLA_BOND_NS_IP6_TARGET", "targets6"),
    "arp_validate": ("IFLA_BOND_ARP_VALIDATE", "uint32"),
    "arp_all_targets": ("IFLA_BOND_ARP_ALL_TARGETS", "uint32"),
    "arp_missed_max": ("IFLA_BOND_MISSED_MAX", "uint8"),
    "primary": ("IFLA_BOND_PRIMARY", "uint32"),
    "primary_reselect": ("IFLA_BOND_PRIMARY_RESELECT", "uint8"),
    "fail_over_mac": ("IFLA_BOND_FAIL_OVER_MAC", "uint8"),
    "xmit_hash_policy": ("IFLA_BOND_XMIT_HASH_POLICY", "uint8"),
    "resend_igmp": ("IFLA_BOND_RESEND_IGMP", "uint32"),
    "num_peer_notif": ("IFLA_BOND_NUM_PEER_NOTIF", "uint8"),
    "all_slaves_active": ("IFLA_BOND_ALL_SLAVES_ACTIVE", "uint8"),
    "min_links": ("IFLA_BOND_MIN_LINKS", "uint32"),
    "lp_interval": ("IFLA_BOND_LP_INTERVAL", "uint32"),
    "packets_per_slave": ("IFLA_BOND_PACKETS_PER_SLAVE", "uint32"),
    "lacp_rate": ("IFLA_BOND_AD_LACP_RATE", "uint8"),
    "lacp_active": ("IFLA_BOND_AD_LACP_ACTIVE", "uint8"),
    "ad_select": ("IFLA_BOND_AD_SELECT", "uint8"),
    "ad_actor_sys_prio": ("IFLA_BOND_AD_ACTOR_SYS_PRIO", "uint16"),
    "ad_user_port_key": ("IFLA_BOND_AD_USER_PORT_KEY", "uint16"),
    "ad_actor_system": ("IFLA_BOND_AD_ACTOR_SYSTEM", "l2addr"),
    "tlb_dynamic_lb": ("IFLA_BOND_TLB_DYNAMIC_LB", "uint8"),
    "coupled_control": ("IFLA_BOND_COUPLED_CONTROL", "uint8"),
    "active_slave": ("IFLA_BOND_ACTIVE_SLAVE", "uint32"),
}

_BOND_ATTRS = (  # by number, 0..32
    ("IFLA_BOND_UNSPEC", "none"), ("IFLA_BOND_MODE", "uint8"),
    ("IFLA_BOND_ACTIVE_SLAVE", "uint32"), ("IFLA_BOND_MIIMON", "uint32"),
    ("IFLA_BOND_UPDELAY", "uint32"), ("IFLA_BOND_DOWNDELAY", "uint32"),
    ("IFLA_BOND_USE_CARRIER", "uint8"), ("IFLA_BOND_ARP_INTERVAL", "uint32"),
    ("IFLA_BOND_ARP_IP_TARGET", "targets4"), ("IFLA_BOND_ARP_VALIDATE", "uint32"),
    ("IFLA_BOND_ARP_ALL_TARGETS", "uint32"), ("IFLA_BOND_PRIMARY", "uint32"),
    ("IFLA_BOND_PRIMARY_RESELECT", "uint8"), ("IFLA_BOND_FAIL_OVER_MAC", "uint8"),
    ("IFLA_BOND_XMIT_HASH_POLICY", "uint8"), ("IFLA_BOND_RESEND_IGMP", "uint32"),
    ("IFLA_BOND_NUM_PEER_NOTIF", "uint8"), ("IFLA_BOND_ALL_SLAVES_ACTIVE", "uint8"),
    ("IFLA_BOND_MIN_LINKS", "uint32"), ("IFLA_BOND_LP_INTERVAL", "uint32"),
    ("IFLA_BOND_PACKETS_PER_SLAVE", "uint32"), ("IFLA_BOND_AD_LACP_RATE", "uint8"),
    ("IFLA_BOND_AD_SELECT", "uint8"), ("IFLA_BOND_AD_INFO", "ad_info"),
    ("IFLA_BOND_AD_ACTOR_SYS_PRIO", "uint16"), ("IFLA_BOND_AD_USER_PORT_KEY", "uint16"),
    ("IFLA_BOND_AD_ACTOR_SYSTEM", "l2addr"), ("IFLA_BOND_TLB_DYNAMIC_LB", "uint8"),
    ("IFLA_BOND_PEER_NOTIF_DELAY", "uint32"), ("IFLA_BOND_AD_LACP_ACTIVE", "uint8"),
    ("IFLA_BOND_MISSED_MAX", "uint8"), ("IFLA_BOND_NS_IP6_TARGET", "targets6"),
    ("IFLA_BOND_COUPLED_CONTROL", "uint8"),
)  # fmt: skip

_PORT_ATTRS = (
    ("IFLA_BOND_SLAVE_UNSPEC", "none"), ("IFLA_BOND_SLAVE_STATE", "uint8"),
    ("IFLA_BOND_SLAVE_MII_STATUS", "uint8"), ("IFLA_BOND_SLAVE_LINK_FAILURE_COUNT", "uint32"),
    ("IFLA_BOND_SLAVE_PERM_HWADDR", "l2addr"), ("IFLA_BOND_SLAVE_QUEUE_ID", "uint16"),
    ("IFLA_BOND_SLAVE_AD_AGGREGATOR_ID", "uint16"),
    ("IFLA_BOND_SLAVE_AD_ACTOR_OPER_PORT_STATE", "uint8"),
    ("IFLA_BOND_SLAVE_AD_PARTNER_OPER_PORT_STATE", "uint16"), ("IFLA_BOND_SLAVE_PRIO", "int32"),
)  # fmt: skip

_installed = False


def _install_tables() -> None:
    """Register complete IFLA_BOND_* / IFLA_BOND_SLAVE_* tables with pyroute2 (idempotent)."""
    global _installed  # noqa: PLW0603 - one registration per process
    if _installed:
        return
    from pyroute2.netlink import nla  # noqa: PLC0415
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

    class targets4(nla):  # type: ignore[misc]
        nla_map = tuple((i, f"T{i}", "ip4addr") for i in range(16))

    class targets6(nla):  # type: ignore[misc]
        nla_map = tuple((i, f"T{i}", "ip6addr") for i in range(16))

    class bond_data(nla):  # type: ignore[misc]
        prefix = "IFLA_"
        nla_map = _BOND_ATTRS

        class ad_info(nla):  # type: ignore[misc]
            nla_map = (
                ("IFLA_BOND_AD_INFO_UNSPEC", "none"),
                ("IFLA_BOND_AD_INFO_AGGREGATOR", "uint16"),
                ("IFLA_BOND_AD_INFO_NUM_PORTS", "uint16"),
                ("IFLA_BOND_AD_INFO_ACTOR_KEY", "uint16"),
                ("IFLA_BOND_AD_INFO_PARTNER_KEY", "uint16"),
                ("IFLA_BOND_AD_INFO_PARTNER_MAC", "l2addr"),
            )

    bond_data.targets4 = targets4
    bond_data.targets6 = targets6

    class bond_slave_data(nla):  # type: ignore[misc]
        nla_map = _PORT_ATTRS

    ifinfmsg.ifinfo.register_link_kind(module={"bond": bond_data})
    ifinfmsg.ifinfo.bond_slave_data = bond_slave_data
    _installed = True


def option_attrs(options: BondOptions, index_of: Any) -> list[list[Any]]:
    """IFLA_BOND_* attributes for every given option; `index_of(name)` resolves link names."""
    attrs: list[list[Any]] = []
    for name, given in options.given():
        nla_name, kind = OPTION_ATTRS[name]
        value: Any = given
        if name in ("primary", "active_slave"):
            value = index_of(given)
        elif kind in ("targets4", "targets6"):
            value = {"attrs": [[f"T{i}", t] for i, t in enumerate(given)]}
        elif kind != "l2addr":
            value = int(given)
        attrs.append([nla_name, value])
    return attrs


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    """NetlinkError -> HostError with the errno and the kernel's own reason (extack) if any."""
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415

    try:
        yield
    except NetlinkError as exc:
        code = int(exc.code)
        why = os.strerror(code)
        extra = str(exc.args[1]) if len(exc.args) > 1 else ""
        if extra and extra != why:
            why = f"{why} ({extra.rstrip('.')})"
        raise HostError(f"{what}: {why}", errno=code) from exc
    except OSError as exc:
        code = exc.errno or errno_mod.EIO
        raise HostError(f"{what}: {os.strerror(code)}", errno=code) from exc


def _names(options: BondOptions) -> str:
    return ", ".join(name for name, _ in options.given()) or "no options"


class Pyroute2Bonds(Rtnl):
    """`Bonds` on the running kernel (see `sriovkit.host.netlink.Bonds`)."""

    def _newlink(self, what: str, index: int | None, attrs: list[list[Any]], create: bool) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: PLC0415

        _install_tables()
        msg = ifinfmsg()
        msg["index"] = index or 0
        msg["attrs"] = attrs
        flags = _NLM_F_REQUEST | _NLM_F_ACK | ((_NLM_F_CREATE | _NLM_F_EXCL) if create else 0)
        with _mapped(what):
            # The synchronous IPRoute.nlm_request of pyroute2 0.9.7 fails with KeyError
            # ('nlm_generator'); its own sync wrappers go through this call instead.
            tuple(
                self._ipr._generate_with_cleanup(
                    self._ipr.asyncore.nlm_request, msg, _RTM_NEWLINK, flags, None, None, None
                )
            )

    def _index_of(self, name: str) -> int:
        try:
            return self._index(name)
        except NotFound:
            raise NotFound(f"link {name} not found") from None

    def create_bond(
        self, name: str, mode: BondMode, options: BondOptions, *, mtu: int | None = None
    ) -> LinkInfo:
        """ONE RTM_NEWLINK (create, exclusive): IFLA_IFNAME, MTU, kind bond and its options."""
        data = [["IFLA_BOND_MODE", int(mode)], *option_attrs(options, self._index_of)]
        attrs: list[list[Any]] = [["IFLA_IFNAME", name]]
        if mtu is not None:
            attrs.append(["IFLA_MTU", mtu])
        attrs.append(
            ["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "bond"],
                                         ["IFLA_INFO_DATA", {"attrs": data}]]}]
        )  # fmt: skip
        what = f"failed to create bond {name} (mode {mode.label}; {_names(options)})"
        self._newlink(what, None, attrs, create=True)
        return self.link(name)

    def set_bond(self, name: str, options: BondOptions, *, mode: BondMode | None = None) -> None:
        """ONE RTM_NEWLINK on the bond with the given options (and mode)."""
        index = self._index_of(name)
        data = [["IFLA_BOND_MODE", int(mode)]] if mode is not None else []
        data += option_attrs(options, self._index_of)
        if not data:
            return
        attrs = [["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "bond"],
                                              ["IFLA_INFO_DATA", {"attrs": data}]]}]]  # fmt: skip
        shown = _names(options) + (f", mode {mode.label}" if mode is not None else "")
        self._newlink(f"failed to set {shown} on bond {name}", index, attrs, create=False)

    def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
        """IFLA_MASTER, then (a second message) the per-port options."""
        bond_index = self._index_of(bond)
        index = self._index_of(port)
        with _mapped(f"failed to enslave {port} to bond {bond}"):
            self._ipr.link("set", index=index, master=bond_index)
        if options is not None and (options.queue_id is not None or options.prio is not None):
            self.set_port(port, options)

    def set_port(self, port: str, options: PortOptions) -> None:
        """RTM_NEWLINK on the port: IFLA_LINKINFO / IFLA_INFO_SLAVE_DATA (queue_id, prio)."""
        data: list[list[Any]] = []
        if options.queue_id is not None:
            data.append(["IFLA_BOND_SLAVE_QUEUE_ID", options.queue_id])
        if options.prio is not None:
            data.append(["IFLA_BOND_SLAVE_PRIO", options.prio])
        if not data:
            return
        info = [["IFLA_INFO_SLAVE_KIND", "bond"], ["IFLA_INFO_SLAVE_DATA", {"attrs": data}]]
        attrs = [["IFLA_LINKINFO", {"attrs": info}]]
        names = ", ".join(k for k in ("queue_id", "prio") if getattr(options, k) is not None)
        what = f"failed to set {names} of bond port {port}"
        self._newlink(what, self._index_of(port), attrs, create=False)

    def release(self, port: str) -> None:
        """IFLA_MASTER 0."""
        index = self._index_of(port)
        with _mapped(f"failed to release {port} from its bond"):
            self._ipr.link("set", index=index, master=0)

    def delete_link(self, name: str) -> None:
        """RTM_DELLINK."""
        index = self._index_of(name)
        with _mapped(f"failed to delete link {name}"):
            self._ipr.link("del", index=index)
        self._forget(index)

    def bonds(self) -> list[str]:
        """Links whose kind is bond."""
        _install_tables()
        with _mapped("cannot list links"):
            return [str(m.get_attr("IFLA_IFNAME")) for m in self._ipr.get_links()
                    if _kind(m) == "bond"]  # fmt: skip

    def bond(self, name: str) -> BondState:
        """The bond's IFLA_INFO_DATA, and each port's IFLA_INFO_SLAVE_DATA, from one dump."""
        _install_tables()
        with _mapped(f"cannot read bond {name}"):
            msgs = list(self._ipr.get_links())
        by_index = {int(m["index"]): m for m in msgs}
        msg = next((m for m in msgs if m.get_attr("IFLA_IFNAME") == name), None)
        if msg is None:
            raise NotFound(f"bond {name} not found")
        if _kind(msg) != "bond":
            raise NotFound(f"link {name} is not a bond")
        info = link_info(msg)
        data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        names = {i: str(m.get_attr("IFLA_IFNAME")) for i, m in by_index.items()}
        options, mode, active, ad = parse_bond_data(data, names)
        ports = tuple(
            _port_state(m) for m in msgs if m.get_attr("IFLA_MASTER") == info.index
        )
        return BondState(
            name=info.name, index=info.index, mode=mode, options=options, ports=ports,
            active_port=active, ad_info=ad, mac=info.mac, mtu=info.mtu, up=info.up,
            carrier=info.carrier,
        )  # fmt: skip


def _kind(msg: Any) -> str | None:
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    return linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None


_ENUMS: dict[str, Any] = {
    "arp_validate": ArpValidate, "arp_all_targets": ArpAllTargets,
    "primary_reselect": PrimaryReselect, "fail_over_mac": FailOverMac,
    "xmit_hash_policy": XmitHashPolicy, "lacp_rate": LacpRate, "ad_select": AdSelect,
}  # fmt: skip
_BOOLS = {"use_carrier", "all_slaves_active", "lacp_active", "tlb_dynamic_lb", "coupled_control"}


def parse_bond_data(
    data: Any, names: dict[int, str]
) -> tuple[BondOptions, BondMode, str | None, AdInfo | None]:
    """IFLA_INFO_DATA of a bond -> (options, mode, active port, 802.3ad info)."""
    values: dict[str, Any] = {}
    for option, (nla_name, kind) in OPTION_ATTRS.items():
        raw = data.get_attr(nla_name)
        if kind in ("targets4", "targets6"):
            values[option] = tuple(str(v) for _, v in (raw or {}).get("attrs", [])) if raw else ()
            continue
        if raw is None:
            continue
        if option in ("primary", "active_slave"):
            values[option] = names.get(int(raw))
        elif option in _ENUMS:
            values[option] = _ENUMS[option](int(raw))
        elif option in _BOOLS:
            values[option] = bool(raw)
        elif kind == "l2addr":
            values[option] = str(raw).lower()
        else:
            values[option] = int(raw)
    ad = None
    raw_ad = data.get_attr("IFLA_BOND_AD_INFO")
    if raw_ad is not None:
        ad = AdInfo(
            aggregator=int(raw_ad.get_attr("IFLA_BOND_AD_INFO_AGGREGATOR") or 0),
            num_ports=int(raw_ad.get_attr("IFLA_BOND_AD_INFO_NUM_PORTS") or 0),
            actor_key=int(raw_ad.get_attr("IFLA_BOND_AD_INFO_ACTOR_KEY") or 0),
            partner_key=int(raw_ad.get_attr("IFLA_BOND_AD_INFO_PARTNER_KEY") or 0),
            partner_mac=str(raw_ad.get_attr("IFLA_BOND_AD_INFO_PARTNER_MAC") or "").lower(),
        )
    mode = BondMode(int(data.get_attr("IFLA_BOND_MODE") or 0))
    return BondOptions(**values), mode, values.get("active_slave"), ad


def _port_state(msg: Any) -> BondPortState:
    info = link_info(msg)
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    data = linkinfo.get_attr("IFLA_INFO_SLAVE_DATA") if linkinfo is not None else None

    def get(name: str) -> Any:
        return data.get_attr(f"IFLA_BOND_SLAVE_{name}") if data is not None else None

    def opt(name: str) -> int | None:
        value = get(name)
        return None if value is None else int(value)

    return BondPortState(
        name=info.name,
        index=info.index,
        role=PortRole(int(get("STATE") or 0)),
        mii_status=MiiStatus(int(get("MII_STATUS") or 0)),
        link_failure_count=int(get("LINK_FAILURE_COUNT") or 0),
        perm_hwaddr=str(get("PERM_HWADDR") or "").lower(),
        queue_id=int(get("QUEUE_ID") or 0),
        prio=opt("PRIO"),
        ad_aggregator_id=opt("AD_AGGREGATOR_ID"),
        ad_actor_oper_port_state=opt("AD_ACTOR_OPER_PORT_STATE"),
        ad_partner_oper_port_state=opt("AD_PARTNER_OPER_PORT_STATE"),
        mac=info.mac,
        mtu=info.mtu,
        up=info.up,
    )


__all__ = ["OPTION_ATTRS", "Pyroute2Bonds", "option_attrs", "parse_bond_data"]
