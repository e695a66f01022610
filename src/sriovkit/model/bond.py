"""A Linux bond as the kernel's bonding driver sees it: mode, every option, ports.

Pure: no OS access. Names and numbers are the kernel's own (Documentation/networking/bonding.rst,
include/uapi/linux/if_link.h IFLA_BOND_*): each enum's value is what netlink carries, its label
what sysfs, `/proc/net/bonding`, iproute2 and `BONDING_OPTS` write. Options given as strings
(as ifcfg files and bond-cni configs write them) are accepted and normalised by `parse_options`;
the rules between options (which mode allows which, ranges across options) are in
`model/bond_rules.py`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.attachment import check_ifname
from sriovkit.model.bond_enums import (
    AdSelect,
    ArpAllTargets,
    ArpValidate,
    BondMode,
    FailOverMac,
    LacpRate,
    PrimaryReselect,
    XmitHashPolicy,
    _Labelled,
)

MAX_ARP_TARGETS = 16
"""BOND_MAX_ARP_TARGETS (also the bound for ns_ip6_target, BOND_MAX_NS_TARGETS)."""


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """How one option is typed: `kind` is int, bool, an enum class, ipv4s, ipv6s, mac or ifname."""

    kind: Any
    low: int | None = None
    high: int | None = None


_U32 = 0xFFFF_FFFF
_INT_MAX = 0x7FFF_FFFF

OPTIONS: dict[str, OptionInfo] = {
    "miimon": OptionInfo(int, 0, _INT_MAX),
    "updelay": OptionInfo(int, 0, _INT_MAX),
    "downdelay": OptionInfo(int, 0, _INT_MAX),
    "peer_notif_delay": OptionInfo(int, 0, 300_000),  # the kernel's netlink policy and sysfs range
    "use_carrier": OptionInfo(bool),
    "arp_interval": OptionInfo(int, 0, _INT_MAX),
    "arp_ip_target": OptionInfo("ipv4s"),
    "ns_ip6_target": OptionInfo("ipv6s"),
    "arp_validate": OptionInfo(ArpValidate),
    "arp_all_targets": OptionInfo(ArpAllTargets),
    "arp_missed_max": OptionInfo(int, 1, 255),
    "primary": OptionInfo("ifname"),
    "primary_reselect": OptionInfo(PrimaryReselect),
    "fail_over_mac": OptionInfo(FailOverMac),
    "xmit_hash_policy": OptionInfo(XmitHashPolicy),
    "resend_igmp": OptionInfo(int, 0, 255),
    "num_peer_notif": OptionInfo(int, 0, 255),
    "all_slaves_active": OptionInfo(bool),
    "min_links": OptionInfo(int, 0, _INT_MAX),  # a u32 on netlink, but checked against INT_MAX
    "lp_interval": OptionInfo(int, 1, _INT_MAX),
    "packets_per_slave": OptionInfo(int, 0, 65535),
    "lacp_rate": OptionInfo(LacpRate),
    "lacp_active": OptionInfo(bool),
    "ad_select": OptionInfo(AdSelect),
    "ad_actor_sys_prio": OptionInfo(int, 1, 65535),
    "ad_user_port_key": OptionInfo(int, 0, 1023),
    "ad_actor_system": OptionInfo("mac"),
    "tlb_dynamic_lb": OptionInfo(bool),
    "coupled_control": OptionInfo(bool),
    "active_slave": OptionInfo("ifname"),
}
"""Every bond option by its kernel (sysfs) name, in the order `BondOptions` lists them."""

ALIASES = {
    "num_grat_arp": "num_peer_notif",
    "num_unsol_na": "num_peer_notif",
    "ad_lacp_rate": "lacp_rate",
    "ad_lacp_active": "lacp_active",
    "arp_ip_targets": "arp_ip_target",
    "ns_ip6_targets": "ns_ip6_target",
}
"""Other names for an option: the kernel's two names of num_peer_notif, netlink's ad_ prefixes."""


@dataclass(frozen=True, slots=True)
class BondOptions:
    """Every bond option; None means not given (the kernel's default applies).

    Field names are the kernel's sysfs names (`OPTIONS`); `mode` is not here but in `BondSpec`.
    """

    miimon: int | None = None
    updelay: int | None = None
    downdelay: int | None = None
    peer_notif_delay: int | None = None
    use_carrier: bool | None = None
    arp_interval: int | None = None
    arp_ip_target: tuple[str, ...] | None = None
    ns_ip6_target: tuple[str, ...] | None = None
    arp_validate: ArpValidate | None = None
    arp_all_targets: ArpAllTargets | None = None
    arp_missed_max: int | None = None
    primary: str | None = None
    primary_reselect: PrimaryReselect | None = None
    fail_over_mac: FailOverMac | None = None
    xmit_hash_policy: XmitHashPolicy | None = None
    resend_igmp: int | None = None
    num_peer_notif: int | None = None
    all_slaves_active: bool | None = None
    min_links: int | None = None
    lp_interval: int | None = None
    packets_per_slave: int | None = None
    lacp_rate: LacpRate | None = None
    lacp_active: bool | None = None
    ad_select: AdSelect | None = None
    ad_actor_sys_prio: int | None = None
    ad_user_port_key: int | None = None
    ad_actor_system: str | None = None
    tlb_dynamic_lb: bool | None = None
    coupled_control: bool | None = None
    active_slave: str | None = None

    def given(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of every option that was given, in `OPTIONS` order."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value

    def words(self) -> Iterator[tuple[str, str]]:
        """(name, value) as sysfs and BONDING_OPTS write them (`arp_validate=active`)."""
        for name, value in self.given():
            yield name, option_word(value)

    def merged(self, other: BondOptions) -> BondOptions:
        """These options with every option `other` gives on top."""
        return replace(self, **dict(other.given()))


def option_word(value: object) -> str:
    """One option value as the kernel's sysfs writes it (`1`/`0`, labels, comma-joined lists)."""
    if isinstance(value, _Labelled):
        return value.label
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True, slots=True)
class PortOptions:
    """Per-port options (IFLA_BOND_SLAVE_QUEUE_ID, IFLA_BOND_SLAVE_PRIO); None: not given."""

    queue_id: int | None = None
    prio: int | None = None

    def __post_init__(self) -> None:
        if self.queue_id is not None and not 0 <= self.queue_id <= 65535:
            raise InvalidInput("queue_id", f"{self.queue_id} is out of range 0-65535")
        if self.prio is not None and not -(2**31) <= self.prio < 2**31:
            raise InvalidInput("prio", f"{self.prio} is out of the 32-bit signed range")


@dataclass(frozen=True, slots=True)
class BondPort:
    """One port (slave) of a bond: its netdev name and its per-port options."""

    name: str
    options: PortOptions = field(default_factory=PortOptions)

    def __post_init__(self) -> None:
        check_ifname(self.name, "port")


@dataclass(frozen=True, slots=True)
class BondSpec:
    """A bond as asked for: name, mode, options, ports (in enslave order)."""

    name: str
    mode: BondMode
    options: BondOptions = field(default_factory=BondOptions)
    ports: tuple[BondPort, ...] = ()

    def __post_init__(self) -> None:
        check_ifname(self.name, "bond name")
        names = [p.name for p in self.ports]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InvalidInput("port", f"{', '.join(dups)} given more than once")
        if self.name in names:
            raise InvalidInput("port", f"the bond {self.name} cannot be its own port")

    @property
    def port_names(self) -> tuple[str, ...]:
        """The ports' netdev names, in enslave order."""
        return tuple(p.name for p in self.ports)


def parse_option(name: str, value: object) -> tuple[str, Any]:
    """One option from its name (an alias allowed) and a value as given (string or typed)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    info = OPTIONS.get(key)
    if info is None:
        raise InvalidInput(name, "is not a bonding option the kernel knows")
    kind = info.kind
    if isinstance(kind, type) and issubclass(kind, _Labelled):
        return key, kind.parse(value, key)
    if kind is bool:
        return key, _parse_bool(key, value)
    if kind is int:
        return key, _parse_int(key, value, info)
    if kind in ("ipv4s", "ipv6s"):
        return key, _parse_targets(key, value, 4 if kind == "ipv4s" else 6)
    if kind == "mac":
        return key, _parse_mac(key, value)
    return key, check_ifname(str(value).strip(), key)


def parse_options(given: Mapping[str, object] | Iterator[tuple[str, object]]) -> BondOptions:
    """`BondOptions` from names and values as users write them (strings normalised).

    An option given twice (also under an alias) is refused rather than the last one winning.
    """
    pairs = given.items() if isinstance(given, Mapping) else given
    out: dict[str, Any] = {}
    for name, value in pairs:
        key, parsed = parse_option(name, value)
        if key in out:
            raise InvalidInput(name, f"given twice (as {key})")
        out[key] = parsed
    return BondOptions(**out)


def split_words(text: str, field_name: str = "BONDING_OPTS") -> list[tuple[str, str]]:
    """`mode=802.3ad miimon=100 arp_ip_target=+10.0.0.1` as (name, value) pairs.

    ifcfg's and modprobe's form: space-separated `name=value`; `arp_ip_target` may repeat or
    carry a `+` (sysfs's add syntax), and its values are joined into one comma list.
    """
    out: list[tuple[str, str]] = []
    targets: dict[str, list[str]] = {}
    for word in text.split():
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise InvalidInput(field_name, f"{word!r} is not name=value")
        key = ALIASES.get(name.lower(), name.lower())
        if key in ("arp_ip_target", "ns_ip6_target"):
            targets.setdefault(key, []).extend(v.lstrip("+") for v in value.split(",") if v)
            continue
        out.append((name, value))
    out.extend((k, ",".join(v)) for k, v in targets.items())
    return out


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "on", "yes", "true"):
        return True
    if text in ("0", "off", "no", "false"):
        return False
    raise InvalidInput(name, f"{value!r} is not 0/1 (or on/off)")


def _parse_int(name: str, value: object, info: OptionInfo) -> int:
    if isinstance(value, bool):
        raise InvalidInput(name, f"{value!r} is not a number")
    try:
        number = value if isinstance(value, int) else int(str(value).strip(), 10)
    except ValueError:
        raise InvalidInput(name, f"{value!r} is not a whole number") from None
    low = info.low if info.low is not None else 0
    high = info.high if info.high is not None else _U32
    if not low <= number <= high:
        raise InvalidInput(name, f"{number} is out of range {low}-{high}")
    return number


def _parse_targets(name: str, value: object, family: int) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(" ", ",").split(",")
    out: list[str] = []
    for item in items:
        text = str(item).strip().lstrip("+")
        if not text:
            continue
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidInput(name, f"{text!r} is not an IPv{family} address") from None
        if addr.version != family:
            raise InvalidInput(name, f"{text} is not an IPv{family} address")
        zeronet = family == 4 and str(addr).startswith("0.")
        broadcast = str(addr) == "255.255.255.255"
        if (
            addr.is_multicast
            or addr.is_unspecified
            or zeronet
            or broadcast
            or (family == 6 and addr.is_loopback)
        ):
            # the kernel refuses 0.0.0.0/8, 255.255.255.255 and (IPv6) ::, ::1 and multicast
            raise InvalidInput(
                name, f"{text} cannot be a target (multicast, broadcast, zero network or loopback)"
            )
        if str(addr) in out:
            raise InvalidInput(name, f"{addr} is given twice")
        out.append(str(addr))
    if len(out) > MAX_ARP_TARGETS:
        raise InvalidInput(name, f"{len(out)} targets is more than the kernel's {MAX_ARP_TARGETS}")
    return tuple(out)


def _parse_mac(name: str, value: object) -> str:
    text = str(value).strip().lower().replace("-", ":")
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):  # fmt: skip
        raise InvalidInput(name, f"{value!r} is not a MAC address like 02:00:00:00:00:01")
    return text


__all__ = [
    "ALIASES",
    "MAX_ARP_TARGETS",
    "OPTIONS",
    "AdSelect",
    "ArpAllTargets",
    "ArpValidate",
    "BondMode",
    "BondOptions",
    "BondPort",
    "BondSpec",
    "FailOverMac",
    "LacpRate",
    "OptionInfo",
    "PortOptions",
    "PrimaryReselect",
    "XmitHashPolicy",
    "option_word",
    "parse_option",
    "parse_options",
    "split_words",
]
