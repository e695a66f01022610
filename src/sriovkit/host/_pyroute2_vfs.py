"""The pyroute2 seam's VF part: IFLA_VFINFO_LIST read from and set on a PF."""

from __future__ import annotations

import contextlib
import errno as errno_mod
from pathlib import Path
from typing import Any

from sriovkit.errors import HostError
from sriovkit.host._pyroute2_conn import Rtnl
from sriovkit.model.vf import (
    LinkState,
    VfInfo,
    VfSettings,
    VfStats,
    VlanProto,
    complete_request,
)

_U32_UNSET = 0xFFFF_FFFF  # the kernel reports "driver did not say" as (u32)-1


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


class Pyroute2VfAttrs(Rtnl):
    """`VfAttrs` on the running kernel (see `sriovkit.host.netlink.VfAttrs`)."""

    def __init__(self, netns: Path | None = None) -> None:
        _fix_vlan_info_layout()
        super().__init__(netns)

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


__all__ = ["Pyroute2VfAttrs", "parse_vfinfo", "vf_request"]
