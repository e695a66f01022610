"""RTM_NEWLINK messages read straight into `LinkInfo`: the CNI hot path's link look-ups.

pyroute2 decodes every attribute of a link message into objects (~170 µs for a veth: its
statistics, queues, IPv6 settings and so on); `LinkInfo` needs 16 of them, which a walk over
the attributes reads in ~20 µs. It is the one reading of a link message: messages pyroute2
received (dumps, bonds) are read from their own bytes too (`_pyroute2_conn.link_info`); a test
compares it with pyroute2's decoding on the kernel's links. Messages whose VF attributes are
wanted (`VfAttrs.vfs`) are decoded by pyroute2 for those.
"""

from __future__ import annotations

import struct

from sriovkit.host.netlink import LinkInfo

_NLMSGHDR = 16
_IFINFOMSG = struct.Struct("=BBHiII")  # family, pad, type, index, flags, change
_NLA = struct.Struct("=HH")  # nla_len, nla_type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
_IFF_UP = 0x1

_ADDRESS, _IFNAME, _MTU, _LINK, _MASTER, _OPERSTATE, _LINKINFO = 1, 3, 4, 5, 10, 16, 18
_NUM_VF, _CARRIER, _LINK_NETNSID, _MAX_MTU, _PROP_LIST, _ALT_IFNAME = 21, 33, 37, 51, 52, 53
_PARENT_DEV_NAME, _PARENT_DEV_BUS_NAME = 56, 57
_INFO_KIND = 1
# IF_OPER_* (include/uapi/linux/if.h), named as pyroute2 and `ip link` name them.
_OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")


def _attrs(data: memoryview, start: int, end: int) -> list[tuple[int, memoryview]]:
    out = []
    while start + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, start)
        if length < _NLA.size:
            break
        out.append((kind & _TYPE_MASK, data[start + _NLA.size : start + length]))
        start += (length + 3) & ~3
    return out


def _text(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace")


def parse_link(message: bytes) -> LinkInfo:
    """One whole RTM_NEWLINK message (header included) as `LinkInfo`."""
    data = memoryview(message)
    _family, _pad, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, _NLMSGHDR)
    name, mac, operstate, carrier, kind = "None", "", "unknown", False, None
    parent = parent_bus = None
    link_netnsid = None
    numbers: dict[int, int] = {}
    altnames: list[str] = []
    for attr, value in _attrs(data, _NLMSGHDR + _IFINFOMSG.size, len(data)):
        if attr == _IFNAME:
            name = _text(value)
        elif attr == _ADDRESS:
            mac = ":".join(f"{b:02x}" for b in value)
        elif attr in _U32_FIELDS:
            numbers[attr] = _U32.unpack_from(value)[0]
        elif attr == _OPERSTATE:
            code = value[0]
            operstate = _OPERSTATES[code] if code < len(_OPERSTATES) else "unknown"
        elif attr == _CARRIER:
            carrier = bool(value[0])
        elif attr == _LINKINFO:
            for sub, sub_value in _attrs(value, 0, len(value)):
                if sub == _INFO_KIND:
                    kind = _text(sub_value)
        elif attr == _PROP_LIST:
            altnames.extend(_text(v) for k, v in _attrs(value, 0, len(value)) if k == _ALT_IFNAME)
        elif attr == _LINK_NETNSID:
            link_netnsid = _S32.unpack_from(value)[0]
        elif attr == _PARENT_DEV_NAME:
            parent = _text(value)
        elif attr == _PARENT_DEV_BUS_NAME:
            parent_bus = _text(value)
    return LinkInfo(
        index=index,
        name=name,
        mac=mac or "00:00:00:00:00:00",
        mtu=numbers.get(_MTU, 0),
        operstate=operstate,
        carrier=carrier,
        up=bool(flags & _IFF_UP),
        kind=kind,
        altnames=tuple(altnames),
        num_vfs=numbers.get(_NUM_VF, 0),
        parent=parent,
        link_netnsid=link_netnsid,
        master=numbers.get(_MASTER),
        link=numbers.get(_LINK),
        parent_bus=parent_bus,
        max_mtu=numbers.get(_MAX_MTU),
    )


_U32_FIELDS = frozenset({_MTU, _NUM_VF, _MASTER, _LINK, _MAX_MTU})


__all__ = ["parse_link"]
