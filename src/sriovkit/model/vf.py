"""VF attributes as the PF driver sees them: desired settings, read state, and their diff.

Pure: no OS access. The attribute order here is the kernel's: `do_setvfinfo()` in rtnetlink applies
the attributes of one IFLA_VF_INFO in this order and stops at the first one the driver refuses,
leaving the earlier ones applied.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from sriovkit.errors import InvalidInput

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
ZERO_MAC = "00:00:00:00:00:00"
_U32_MAX = 0xFFFF_FFFF


class LinkState(enum.IntEnum):
    """IFLA_VF_LINK_STATE: follow the PF (auto), force up (enable) or force down (disable)."""

    AUTO = 0
    ENABLE = 1
    DISABLE = 2

    @property
    def label(self) -> str:
        """The word `ip link` uses."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> LinkState:
        """`auto`, `enable` or `disable` (as `ip link set ... vf N state` takes them)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise InvalidInput("link-state", f"{text!r} is not auto, enable or disable") from None


class VlanProto(enum.IntEnum):
    """The TPID of the port VLAN the PF inserts for a VF."""

    DOT1Q = 0x8100
    DOT1AD = 0x88A8

    @property
    def label(self) -> str:
        """`802.1Q` or `802.1ad`, as iproute2 prints it."""
        return "802.1Q" if self is VlanProto.DOT1Q else "802.1ad"

    @classmethod
    def parse(cls, text: str) -> VlanProto:
        """Accept `802.1Q`/`802.1ad` (any case), `8021q`/`8021ad` or the hex TPID."""
        key = text.strip().lower().replace(".", "")
        table = {
            "8021q": cls.DOT1Q,
            "0x8100": cls.DOT1Q,
            "8021ad": cls.DOT1AD,
            "0x88a8": cls.DOT1AD,
        }
        if key not in table:
            raise InvalidInput("proto", f"{text!r} is not 802.1Q or 802.1ad")
        return table[key]


class VfAttr(enum.Enum):
    """One netlink attribute of a VF request, in the kernel's application order (see module doc)."""

    MAC = "mac"
    VLAN = "vlan"  # vlan, qos and proto travel together in IFLA_VF_VLAN / IFLA_VF_VLAN_LIST
    RATE = "rate"  # min and max travel together in IFLA_VF_RATE
    SPOOFCHK = "spoofchk"
    LINK_STATE = "link-state"
    TRUST = "trust"


KERNEL_ORDER: tuple[VfAttr, ...] = tuple(VfAttr)

# Which settings fields each netlink attribute carries.
ATTR_FIELDS: dict[VfAttr, tuple[str, ...]] = {
    VfAttr.MAC: ("mac",),
    VfAttr.VLAN: ("vlan", "qos", "proto"),
    VfAttr.RATE: ("min_tx_rate", "max_tx_rate"),
    VfAttr.SPOOFCHK: ("spoofchk",),
    VfAttr.LINK_STATE: ("link_state",),
    VfAttr.TRUST: ("trust",),
}


def normalize_mac(text: str, field: str = "mac") -> str:
    """Lower-case colon form of a unicast (or all-zero, meaning 'clear') MAC address."""
    if not _MAC.match(text.strip()):
        raise InvalidInput(field, f"{text!r} is not a MAC address like 02:00:00:00:00:01")
    mac = text.strip().lower()
    if int(mac[:2], 16) & 1:
        raise InvalidInput(field, f"{mac} is a multicast/broadcast address; a VF needs unicast")
    return mac


@dataclass(frozen=True, slots=True)
class VfSettings:
    """Desired VF attributes; every field None means 'leave unchanged'.

    Rates are in Mbit/s; a max_tx_rate of 0 means unlimited. A mac of 00:00:00:00:00:00 clears the
    administratively set MAC (the VF picks its own again).
    """

    mac: str | None = None
    vlan: int | None = None
    qos: int | None = None
    proto: VlanProto | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None

    def __post_init__(self) -> None:
        if self.mac is not None:
            object.__setattr__(self, "mac", normalize_mac(self.mac))
        if self.vlan is not None and not 0 <= self.vlan <= 4094:
            raise InvalidInput("vlan", f"{self.vlan} is outside 0-4094")
        if self.qos is not None:
            if not 0 <= self.qos <= 7:
                raise InvalidInput("qos", f"{self.qos} is outside 0-7")
            if self.qos and not self.vlan:
                raise InvalidInput("qos", "a QoS priority needs a VLAN id (1-4094) with it")
        if self.proto is not None:
            if self.vlan is None:
                raise InvalidInput("proto", "a VLAN protocol needs a VLAN id with it")
            if self.proto is VlanProto.DOT1AD and self.vlan == 0:
                raise InvalidInput("proto", "802.1ad needs a VLAN id (1-4094)")
        for name in ("min_tx_rate", "max_tx_rate"):
            rate = getattr(self, name)
            if rate is not None and not 0 <= rate <= _U32_MAX:
                raise InvalidInput(name.replace("_", "-"), f"{rate} is not a rate in Mbit/s >= 0")
        check_rates(self.min_tx_rate, self.max_tx_rate)

    def items(self) -> Iterator[tuple[str, Any]]:
        """The (field, value) pairs that are set."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value

    def attrs(self) -> tuple[VfAttr, ...]:
        """The netlink attributes this request touches, in kernel order."""
        return tuple(
            a for a in KERNEL_ORDER if any(getattr(self, f) is not None for f in ATTR_FIELDS[a])
        )

    @property
    def empty(self) -> bool:
        """True when nothing is asked for."""
        return not any(True for _ in self.items())


def check_rates(min_rate: int | None, max_rate: int | None) -> None:
    """Kernel drivers reject min > max unless max is 0 (unlimited)."""
    if min_rate is not None and max_rate and min_rate > max_rate:
        raise InvalidInput("min-rate", f"{min_rate} Mbit/s is above max-rate {max_rate} Mbit/s")


DEFAULT_SETTINGS = VfSettings(
    mac=ZERO_MAC,
    vlan=0,
    qos=0,
    proto=VlanProto.DOT1Q,
    spoofchk=True,
    trust=False,
    link_state=LinkState.AUTO,
    min_tx_rate=0,
    max_tx_rate=0,
)
"""What a VF looks like right after `sriov_numvfs` created it; `vf reset` converges to this."""


@dataclass(frozen=True, slots=True)
class VfStats:
    """IFLA_VF_STATS counters as the PF reports them."""

    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    broadcast: int = 0
    multicast: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0


@dataclass(frozen=True, slots=True)
class VfInfo:
    """One VF's attributes read from the PF (IFLA_VFINFO_LIST).

    spoofchk, trust and rss_query are None when the driver does not report them (the kernel then
    sends -1).
    """

    index: int
    mac: str = ZERO_MAC
    vlan: int = 0
    qos: int = 0
    proto: VlanProto = VlanProto.DOT1Q
    spoofchk: bool | None = True
    trust: bool | None = False
    link_state: LinkState = LinkState.AUTO
    min_tx_rate: int = 0
    max_tx_rate: int = 0
    rss_query: bool | None = None
    stats: VfStats | None = None

    def as_settings(self) -> VfSettings:
        """The settings that would recreate this state (for restoring a VF)."""
        return VfSettings(
            mac=self.mac,
            vlan=self.vlan,
            qos=self.qos if self.vlan else 0,
            proto=self.proto if self.vlan else VlanProto.DOT1Q,
            spoofchk=self.spoofchk,
            trust=self.trust,
            link_state=self.link_state,
            min_tx_rate=self.min_tx_rate,
            max_tx_rate=self.max_tx_rate,
        )

    def with_settings(self, settings: VfSettings) -> VfInfo:
        """This state with `settings` applied on top (what a full success would read back)."""
        return replace(self, **dict(settings.items()))


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs: its name, current value and wanted value."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class VfDiff:
    """What has to change on a VF: the user-visible changes and the netlink request that does it.

    The request carries whole attributes: changing only qos still sends vlan and proto, changing
    only max rate still sends min rate, because the kernel's attribute carries them together.
    """

    changes: tuple[FieldChange, ...]
    request: VfSettings

    @property
    def attrs(self) -> tuple[VfAttr, ...]:
        """Attributes the request touches, in kernel order."""
        return self.request.attrs()


def diff(current: VfInfo, desired: VfSettings) -> VfDiff:
    """Changes needed to go from `current` to `desired` (None fields are left as they are)."""
    changes = tuple(
        FieldChange(name, getattr(current, name), value)
        for name, value in desired.items()
        if getattr(current, name) != value
    )
    changed = {c.field for c in changes}
    request: dict[str, Any] = {}
    for attr in KERNEL_ORDER:
        group = ATTR_FIELDS[attr]
        if changed.isdisjoint(group):
            continue
        for name in group:
            wanted = getattr(desired, name)
            request[name] = getattr(current, name) if wanted is None else wanted
    if "vlan" in request and request["vlan"] == 0:
        # Clearing the port VLAN: the QoS goes with it and the proto falls back to 802.1Q.
        request["qos"] = 0
        request["proto"] = VlanProto.DOT1Q
    if request.get("qos") and not request.get("vlan"):
        raise InvalidInput("qos", "a QoS priority needs a VLAN id (1-4094) on the VF")
    if "min_tx_rate" in request:
        check_rates(request["min_tx_rate"], request["max_tx_rate"])
    return VfDiff(changes=changes, request=VfSettings(**request))


def complete_request(current: VfInfo, settings: VfSettings) -> VfSettings:
    """`settings` as whole kernel attributes: what one request really sets.

    A vlan without qos/proto means qos 0 and 802.1Q (as `ip link set ... vf N vlan V` does); a rate
    with only one of min/max keeps the other from `current` (like the kernel for IFLA_VF_TX_RATE).
    """
    extra: dict[str, Any] = {}
    if settings.vlan is not None:
        extra["qos"] = settings.qos or 0
        extra["proto"] = settings.proto or VlanProto.DOT1Q
    if settings.min_tx_rate is not None or settings.max_tx_rate is not None:
        extra["min_tx_rate"] = (
            current.min_tx_rate if settings.min_tx_rate is None else settings.min_tx_rate
        )
        extra["max_tx_rate"] = (
            current.max_tx_rate if settings.max_tx_rate is None else settings.max_tx_rate
        )
    return replace(settings, **extra) if extra else settings


def not_applied(read_back: VfInfo, request: VfSettings) -> tuple[VfAttr, ...]:
    """Attributes of `request` that `read_back` does not show, in kernel order.

    A field the driver does not report (None, e.g. trust on old drivers) cannot be checked.
    """
    return tuple(
        a
        for a in request.attrs()
        if any(
            getattr(request, f) is not None
            and getattr(read_back, f) is not None
            and getattr(read_back, f) != getattr(request, f)
            for f in ATTR_FIELDS[a]
        )
    )


def show_value(value: object) -> str:
    """An attribute value as `ip link` prints it: labels for enums, on/off for booleans."""
    label = getattr(value, "label", None)
    if isinstance(label, str):
        return label
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


__all__ = [
    "ATTR_FIELDS",
    "DEFAULT_SETTINGS",
    "KERNEL_ORDER",
    "ZERO_MAC",
    "FieldChange",
    "LinkState",
    "VfAttr",
    "VfDiff",
    "VfInfo",
    "VfSettings",
    "VfStats",
    "VlanProto",
    "complete_request",
    "diff",
    "normalize_mac",
    "not_applied",
    "show_value",
]
