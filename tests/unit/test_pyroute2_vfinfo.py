"""The real seam's VF encoding: our request -> pyroute2 -> wire bytes -> decoded -> VfInfo.

VF requests only reach a kernel in the QEMU lab; this checks the message layout without one.
"""

from __future__ import annotations

from typing import Any

import pytest

from sriovkit.model.vf import LinkState, VfInfo, VfSettings, VlanProto

pytest.importorskip("pyroute2")

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.requests.link import LinkIPRouteFilter

from sriovkit.host._pyroute2 import parse_vfinfo, vf_request


def wire_round_trip(index: int, settings: VfSettings) -> tuple[list[str], VfInfo]:
    vflist = LinkIPRouteFilter("set").get_vf(vf_request(index, settings))
    msg = ifinfmsg()
    msg["index"] = 7
    msg["attrs"] = [("IFLA_IFNAME", "eth0"), ("IFLA_VFINFO_LIST", vflist)]
    msg.encode()
    decoded: Any = ifinfmsg(msg.data)
    decoded.decode()
    infos = decoded.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    assert len(infos) == 1  # one IFLA_VF_INFO carrying every attribute: one request
    names = [name for name, _ in infos[0]["attrs"]]
    return names, parse_vfinfo(infos[0])


def test_all_attributes_in_one_vf_info() -> None:
    settings = VfSettings(
        mac="02:00:00:00:00:03",
        vlan=10,
        qos=2,
        proto=VlanProto.DOT1AD,
        spoofchk=False,
        trust=True,
        link_state=LinkState.DISABLE,
        min_tx_rate=50,
        max_tx_rate=100,
    )
    names, info = wire_round_trip(3, settings)
    assert set(names) == {
        "IFLA_VF_MAC", "IFLA_VF_VLAN_LIST", "IFLA_VF_RATE", "IFLA_VF_SPOOFCHK",
        "IFLA_VF_LINK_STATE", "IFLA_VF_TRUST",
    }  # fmt: skip
    assert info.index == 3
    assert info.with_settings(settings) == info  # every value survived the wire


def test_dot1q_uses_plain_vlan_attribute() -> None:
    names, info = wire_round_trip(0, VfSettings(vlan=4094, qos=7, proto=VlanProto.DOT1Q))
    assert "IFLA_VF_VLAN" in names
    assert (info.vlan, info.qos, info.proto) == (4094, 7, VlanProto.DOT1Q)


def test_vlan_list_entry_has_the_kernels_16_byte_layout() -> None:
    # struct ifla_vf_vlan_info is 16 bytes; a shorter entry gets EINVAL from the kernel.
    vflist = LinkIPRouteFilter("set").get_vf(
        vf_request(0, VfSettings(vlan=10, proto=VlanProto.DOT1AD))
    )
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_VFINFO_LIST", vflist)]
    msg.encode()
    entry_header = bytes.fromhex("14000100")  # nla_len 20 = 4 + 16, type IFLA_VF_VLAN_INFO
    assert entry_header in msg.data
