"""What each PF driver's ndo_set_vf_* callbacks refuse, and with which errno.

igb follows the measured lab facts (LAB-NOTES.md) exactly. The other tables come from reading the
upstream drivers' ndo_set_vf_* callbacks; where a driver's answer depends on firmware or mode, the
choice made is noted beside it. A driver not listed gets the permissive `generic` table (like
netdevsim, which accepts every VF attribute).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from sriovkit.model.vf import VfAttr, VfInfo, VlanProto


@dataclass(frozen=True, slots=True)
class DriverCaps:
    """One driver's answers. An errno field is what the driver returns; None means it accepts."""

    driver: str
    link_state: int | None = None  # no ndo_set_vf_link_state -> the kernel says EOPNOTSUPP
    trust: int | None = None
    spoofchk: int | None = None
    dot1ad: int | None = errno.EPROTONOSUPPORT  # most drivers only insert 802.1Q tags
    min_rate: int | None = None  # errno for any non-zero min_tx_rate
    rate_needs_carrier: bool = False  # the whole rate request fails without PF link
    max_rate_over_speed: bool = True  # max_tx_rate above the PF link speed -> EINVAL
    max_rate_floor: int = 0  # a non-zero max_tx_rate must be above this (ixgbe: 10)
    default_spoofchk: bool = True
    reports_rss_query: bool = False

    def refusal(self, attr: VfAttr, vf: VfInfo, *, carrier: bool, speed: int) -> int | None:
        """The errno the driver returns for setting `attr` to its value in `vf`, or None."""
        if attr is VfAttr.VLAN:
            return self.dot1ad if vf.proto is VlanProto.DOT1AD else None
        if attr is VfAttr.RATE:
            return self._rate(vf.min_tx_rate, vf.max_tx_rate, carrier=carrier, speed=speed)
        if attr is VfAttr.SPOOFCHK:
            return self.spoofchk
        if attr is VfAttr.LINK_STATE:
            return self.link_state
        if attr is VfAttr.TRUST:
            return self.trust
        return None

    def _rate(self, min_rate: int, max_rate: int, *, carrier: bool, speed: int) -> int | None:
        if min_rate and self.min_rate is not None:
            return self.min_rate
        if self.rate_needs_carrier and not carrier:
            return errno.EINVAL
        if max_rate and self.max_rate_over_speed and (not carrier or max_rate > speed):
            return errno.EINVAL
        if max_rate and max_rate <= self.max_rate_floor:
            return errno.EINVAL
        if min_rate and max_rate and min_rate > max_rate:
            return errno.EINVAL
        return None


CAPABILITIES: dict[str, DriverCaps] = {
    # Measured in the QEMU lab: state -> EOPNOTSUPP, min rate -> EINVAL, 802.1ad ->
    # EPROTONOSUPPORT, any rate request needs PF carrier and max <= link speed.
    "igb": DriverCaps(
        "igb",
        link_state=errno.EOPNOTSUPP,
        min_rate=errno.EINVAL,
        rate_needs_carrier=True,
    ),
    # ixgbe_ndo_set_vf_bw: no min rate; link down -> EINVAL; max must be 11..link speed.
    # Link state: supported by recent kernels' ixgbe (assumed here).
    "ixgbe": DriverCaps(
        "ixgbe",
        min_rate=errno.EINVAL,
        rate_needs_carrier=True,
        max_rate_floor=10,
        reports_rss_query=True,
    ),
    # i40e: 802.1Q only; min_tx_rate refused; max above link speed refused.
    "i40e": DriverCaps("i40e", min_rate=errno.EINVAL),
    # ice: min and max rates supported; 802.1ad accepted (assumes double-VLAN mode, the default
    # with current DDP packages; in single-VLAN mode ice answers EPROTONOSUPPORT).
    "ice": DriverCaps("ice", dot1ad=None),
    # mlx5_core (legacy SR-IOV mode): accepts state, trust, min/max rate; upstream still answers
    # EPROTONOSUPPORT for 802.1ad; spoof checking starts off; no check against link speed.
    "mlx5_core": DriverCaps("mlx5_core", max_rate_over_speed=False, default_spoofchk=False),
    # bnxt_en: min and max rate (max <= link speed, min <= max); 802.1Q only.
    "bnxt_en": DriverCaps("bnxt_en"),
}

GENERIC = DriverCaps("generic", dot1ad=None, max_rate_over_speed=False)


def caps_for(driver: str | None) -> DriverCaps:
    """The table for `driver`; the permissive generic one for drivers not listed."""
    return CAPABILITIES.get(driver or "", GENERIC)


__all__ = ["CAPABILITIES", "GENERIC", "DriverCaps", "caps_for"]
