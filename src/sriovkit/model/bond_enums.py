"""The closed sets of bonding: the mode and the enum-valued options, by the kernel's words and
numbers (include/uapi/linux/if_link.h, Documentation/networking/bonding.rst).

Each member's value is what netlink carries; its `label` what sysfs, `/proc/net/bonding`,
iproute2 and `BONDING_OPTS` write. `parse` takes either, or sysfs's `word N` pair. Re-exported by
`model/bond.py`, where the options that use them are.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Self

from sriovkit.errors import InvalidInput


class _Labelled(enum.IntEnum):
    """An enum whose members have the kernel's word as label; parsed from the word or number."""

    _labels: ClassVar[dict[int, str]]

    @property
    def label(self) -> str:
        """The kernel's word (`active-backup`, `layer3+4`, ...)."""
        return type(self)._labels[int(self)]

    def __str__(self) -> str:
        return self.label

    def __format__(self, spec: str) -> str:
        return format(self.label, spec)

    @classmethod
    def parse(cls, value: object, field_name: str) -> Self:
        """From the kernel's word (any case), its number, or a `word N` pair as sysfs prints."""
        if isinstance(value, cls):
            return value
        if isinstance(value, bool):
            raise InvalidInput(field_name, f"{value!r} is not one of {cls.choices()}")
        text = str(value).strip().lower()
        words = text.split()
        for word in words[:1]:  # sysfs prints `active-backup 1`: either half names it
            for number, label in cls._labels.items():
                if word == label:
                    return cls(number)
        if words and all(w.isdigit() for w in words[-1:]):
            number = int(words[-1])
            if number in cls._labels:
                return cls(number)
        raise InvalidInput(field_name, f"{value!r} is not one of {cls.choices()}")

    @classmethod
    def choices(cls) -> str:
        """`a(0), b(1), ...` for messages."""
        return ", ".join(f"{label}({n})" for n, label in cls._labels.items())


class BondMode(_Labelled):
    """IFLA_BOND_MODE."""

    BALANCE_RR = 0
    ACTIVE_BACKUP = 1
    BALANCE_XOR = 2
    BROADCAST = 3
    IEEE_802_3AD = 4
    BALANCE_TLB = 5
    BALANCE_ALB = 6


BondMode._labels = {
    0: "balance-rr", 1: "active-backup", 2: "balance-xor", 3: "broadcast", 4: "802.3ad",
    5: "balance-tlb", 6: "balance-alb",
}  # fmt: skip


class ArpValidate(_Labelled):
    """IFLA_BOND_ARP_VALIDATE."""

    NONE = 0
    ACTIVE = 1
    BACKUP = 2
    ALL = 3
    FILTER = 4
    FILTER_ACTIVE = 5
    FILTER_BACKUP = 6


ArpValidate._labels = {
    0: "none", 1: "active", 2: "backup", 3: "all", 4: "filter", 5: "filter_active",
    6: "filter_backup",
}  # fmt: skip


class ArpAllTargets(_Labelled):
    """IFLA_BOND_ARP_ALL_TARGETS."""

    ANY = 0
    ALL = 1


ArpAllTargets._labels = {0: "any", 1: "all"}


class PrimaryReselect(_Labelled):
    """IFLA_BOND_PRIMARY_RESELECT."""

    ALWAYS = 0
    BETTER = 1
    FAILURE = 2


PrimaryReselect._labels = {0: "always", 1: "better", 2: "failure"}


class FailOverMac(_Labelled):
    """IFLA_BOND_FAIL_OVER_MAC."""

    NONE = 0
    ACTIVE = 1
    FOLLOW = 2


FailOverMac._labels = {0: "none", 1: "active", 2: "follow"}


class XmitHashPolicy(_Labelled):
    """IFLA_BOND_XMIT_HASH_POLICY."""

    LAYER2 = 0
    LAYER3_4 = 1
    LAYER2_3 = 2
    ENCAP2_3 = 3
    ENCAP3_4 = 4
    VLAN_SRCMAC = 5


XmitHashPolicy._labels = {
    0: "layer2", 1: "layer3+4", 2: "layer2+3", 3: "encap2+3", 4: "encap3+4", 5: "vlan+srcmac",
}  # fmt: skip


class LacpRate(_Labelled):
    """IFLA_BOND_AD_LACP_RATE."""

    SLOW = 0
    FAST = 1


LacpRate._labels = {0: "slow", 1: "fast"}


class AdSelect(_Labelled):
    """IFLA_BOND_AD_SELECT."""

    STABLE = 0
    BANDWIDTH = 1
    COUNT = 2


AdSelect._labels = {0: "stable", 1: "bandwidth", 2: "count"}


__all__ = [
    "AdSelect",
    "ArpAllTargets",
    "ArpValidate",
    "BondMode",
    "FailOverMac",
    "LacpRate",
    "PrimaryReselect",
    "XmitHashPolicy",
]
