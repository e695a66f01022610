"""The rules between bond options, as the kernel's bonding driver applies them.

Pure: no OS access. `model/bond.py` types each option alone; this module checks them together
against the mode and the ports. Sources: Documentation/networking/bonding.rst, and in
drivers/net/bonding/ bond_options.c (each option's `unsuppmodes`, its IFDOWN and NOSLAVES flags,
`_bond_option_delay_set`) and bond_netlink.c (`bond_changelink`, which applies the IFLA_BOND_*
attributes of one message in a fixed order).

Two kinds of refusal, both `InvalidInput` naming the option:
- what the kernel itself refuses (an option outside its modes: EACCES; updelay with miimon 0:
  EPERM; miimon and arp_interval in one message: EINVAL), so nothing reaches the host that fails
  half-way;
- what the kernel accepts but ignores (an option that has no effect in the mode, or without the
  monitor it belongs to, per bonding.rst). sriovkit refuses these too, whatever the value: a spec
  is what was asked, and is later compared with what the kernel reads back, so an option that
  can do nothing is a mistake to point out, not to carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import (
    AdSelect,
    ArpAllTargets,
    ArpValidate,
    BondMode,
    BondOptions,
    BondSpec,
    FailOverMac,
    LacpRate,
    PrimaryReselect,
    XmitHashPolicy,
)

_M = BondMode
_ALL = frozenset(BondMode)
ARP_MODES = frozenset({_M.BALANCE_RR, _M.ACTIVE_BACKUP, _M.BALANCE_XOR, _M.BROADCAST})
"""Modes that can use ARP monitoring (the kernel's `bond_mode_uses_arp`)."""
_PRIMARY = frozenset({_M.ACTIVE_BACKUP, _M.BALANCE_TLB, _M.BALANCE_ALB})
_AD = frozenset({_M.IEEE_802_3AD})
_TLB_ALB = frozenset({_M.BALANCE_TLB, _M.BALANCE_ALB})
_NO_ARP = "ARP monitoring cannot be used with ALB/TLB/802.3ad"
_NOTIF = "peer notifications are sent on an active-backup failover"

DEFAULT_MIIMON = 100
"""BOND_DEFAULT_MIIMON: what the kernel sets miimon to when a mode without ARP monitoring is set
and miimon is 0 (`bond_option_mode_set`)."""


@dataclass(frozen=True, slots=True)
class ModeRule:
    """The modes an option belongs to.

    `kernel`: True when the kernel refuses the option in any other mode (its `unsuppmodes`:
    "option X: mode dependency failed, not supported in mode Y", EACCES); False when the kernel
    takes it but it has no effect there (bonding.rst), `why` saying so.
    """

    modes: frozenset[BondMode]
    kernel: bool
    why: str = ""


OPTION_MODES: dict[str, ModeRule] = {
    "arp_interval": ModeRule(ARP_MODES, True, _NO_ARP),
    "arp_validate": ModeRule(ARP_MODES, True, _NO_ARP),
    "arp_missed_max": ModeRule(ARP_MODES, True, _NO_ARP),
    "arp_ip_target": ModeRule(ARP_MODES, False, _NO_ARP),
    "ns_ip6_target": ModeRule(ARP_MODES, False, _NO_ARP),
    "arp_all_targets": ModeRule(
        frozenset({_M.ACTIVE_BACKUP}),
        False,
        "it only counts for active-backup ports with arp_validate",
    ),
    "primary": ModeRule(_PRIMARY, True),
    "active_slave": ModeRule(_PRIMARY, True),
    "primary_reselect": ModeRule(_PRIMARY, False, "only these modes have a primary to reselect"),
    "fail_over_mac": ModeRule(
        frozenset({_M.ACTIVE_BACKUP}), False, "fail_over_mac only affects active-backup mode"
    ),
    "xmit_hash_policy": ModeRule(
        frozenset({_M.BALANCE_XOR, _M.IEEE_802_3AD, _M.BALANCE_TLB, _M.BALANCE_ALB}),
        False,
        "only these modes hash flows onto ports",
    ),
    "resend_igmp": ModeRule(
        frozenset({_M.BALANCE_RR}) | _PRIMARY,
        False,
        "only there does a failover move the IGMP traffic",
    ),
    "num_peer_notif": ModeRule(frozenset({_M.ACTIVE_BACKUP}), False, _NOTIF),
    "peer_notif_delay": ModeRule(frozenset({_M.ACTIVE_BACKUP}), False, _NOTIF),
    "min_links": ModeRule(_AD, False, "only 802.3ad holds carrier by its number of up ports"),
    "lp_interval": ModeRule(_TLB_ALB, False, "only these modes send learning packets"),
    "packets_per_slave": ModeRule(frozenset({_M.BALANCE_RR}), True),
    "lacp_rate": ModeRule(_AD, True),
    "lacp_active": ModeRule(_AD, True),
    "ad_select": ModeRule(_AD, False, "it selects an 802.3ad aggregator"),
    "ad_actor_sys_prio": ModeRule(_AD, True),
    "ad_user_port_key": ModeRule(_AD, True),
    "ad_actor_system": ModeRule(_AD, True),
    "coupled_control": ModeRule(_AD, True),
    "tlb_dynamic_lb": ModeRule(_TLB_ALB, True),
}
"""Options that belong to some modes only; every other option is good in every mode
(miimon, updelay, downdelay, use_carrier, all_slaves_active)."""

PORT_OPTION_MODES: dict[str, ModeRule] = {"prio": ModeRule(_PRIMARY, True)}
"""Per-port options that belong to some modes (BOND_OPT_PRIO); queue_id is good in every mode."""

SET_WHILE_DOWN = frozenset({
    "lacp_rate", "lacp_active", "ad_select", "ad_user_port_key", "tlb_dynamic_lb",
    "coupled_control",
})  # fmt: skip
"""Options the kernel changes only while the bond is down (BOND_OPTFLAG_IFDOWN: EBUSY);
the mode too."""

SET_WITHOUT_PORTS = frozenset({"fail_over_mac"})
"""Options the kernel changes only while the bond has no ports (BOND_OPTFLAG_NOSLAVES:
ENOTEMPTY); the mode too."""

_ARP_ONLY = ("arp_validate", "arp_all_targets", "arp_missed_max", "arp_ip_target",
             "ns_ip6_target")  # fmt: skip
_DELAYS = ("updelay", "downdelay", "peer_notif_delay")
_MII_ONLY = (*_DELAYS, "use_carrier")


NEW_BOND = BondOptions(
    miimon=0, updelay=0, downdelay=0, peer_notif_delay=0, use_carrier=True, arp_interval=0,
    arp_ip_target=(), ns_ip6_target=(), arp_validate=ArpValidate.NONE,
    arp_all_targets=ArpAllTargets.ANY, arp_missed_max=2, primary_reselect=PrimaryReselect.ALWAYS,
    fail_over_mac=FailOverMac.NONE, xmit_hash_policy=XmitHashPolicy.LAYER2, resend_igmp=1,
    num_peer_notif=1, all_slaves_active=False, min_links=0, lp_interval=1, packets_per_slave=1,
    lacp_rate=LacpRate.SLOW, lacp_active=True, ad_select=AdSelect.STABLE, ad_actor_sys_prio=65535,
    ad_user_port_key=0, ad_actor_system="00:00:00:00:00:00", tlb_dynamic_lb=True,
    coupled_control=True,
)  # fmt: skip
"""Every option of a bond just created over netlink, before its mode is set (the lab's 6.12
kernel: miimon 0, not the module parameter's 100); the simulated driver starts from it too."""


def kernel_defaults(mode: BondMode) -> BondOptions:
    """What a bond created over netlink in `mode` holds for each option nobody gave.

    For the bonding module loaded without parameters. Options that do not belong to `mode`
    (`OPTION_MODES`) are None. miimon is 100 in 802.3ad, balance-tlb and balance-alb (the kernel
    sets it when the mode is set) and 0 in the others: bonding.rst says "100 if arp_interval is
    not set", but `bond_option_mode_set` only does so for the modes without ARP monitoring.
    fail_over_mac reads back `active` instead of `none` when the first port cannot change its
    MAC; ad_actor_system reads back as zero, meaning the bond's own MAC.
    """
    every = replace(NEW_BOND, miimon=0 if mode in ARP_MODES else DEFAULT_MIIMON)
    foreign = {n: None for n, rule in OPTION_MODES.items() if mode not in rule.modes}
    return replace(every, **foreign)


def effective_miimon(mode: BondMode, options: BondOptions) -> int:
    """The MII monitoring interval the bond runs with: as given, else the mode's default."""
    if options.miimon is not None:
        return options.miimon
    if options.arp_interval:
        return 0  # the kernel turns MII monitoring off when ARP monitoring is set
    return 0 if mode in ARP_MODES else DEFAULT_MIIMON


def validate(spec: BondSpec) -> None:
    """Refuse a bond spec whose options or ports do not go together, naming the option."""
    check_options(spec.mode, spec.options, spec.port_names)
    for port in spec.ports:
        for name, rule in PORT_OPTION_MODES.items():
            if getattr(port.options, name) is not None and spec.mode not in rule.modes:
                raise InvalidInput(f"{name} (port {port.name})", _mode_reason(spec.mode, rule))
    queues: dict[int, str] = {}
    for port in spec.ports:
        qid = port.options.queue_id
        if qid:  # 0 is "no queue" and may repeat; the kernel refuses a repeated non-zero id
            if qid in queues:
                raise InvalidInput(
                    f"queue_id (port {port.name})",
                    f"{qid} is already the queue "
                    f"of port {queues[qid]}: the kernel refuses a queue id twice",
                )
            queues[qid] = port.name


def check_options(mode: BondMode, options: BondOptions, ports: Sequence[str] | None = None) -> None:
    """Refuse options that do not go together in `mode`; `ports` None: the ports are unknown."""
    for name, _ in options.given():
        rule = OPTION_MODES.get(name)
        if rule is not None and mode not in rule.modes:
            raise InvalidInput(name, _mode_reason(mode, rule))
    _check_monitors(mode, options)
    _check_mii_delays(mode, options)
    _check_others(mode, options, ports)


def validate_change(
    mode: BondMode,
    current: BondOptions,
    change: BondOptions,
    *,
    ports: Sequence[str] | None = None,
    up: bool = False,
) -> BondOptions:
    """Check `change` on a bond in `mode` holding `current`; return the options it will hold.

    The change is applied as one netlink message: `up` and `ports` (the bond's current ports)
    decide the options the kernel refuses to change on an up bond or one with ports. Switching
    between MII and ARP monitoring has to be explicit (miimon=0 with arp_interval, or
    arp_interval=0 with miimon); options of the monitor switched off are then dropped from the
    result (the kernel keeps them, unused). A miimon change that would make the kernel rescale
    updelay/downdelay/peer_notif_delay (it holds them as counts of miimon intervals) is refused
    unless the change gives them again.
    """
    for name, _ in change.given():
        rule = OPTION_MODES.get(name)
        if rule is not None and mode not in rule.modes:
            raise InvalidInput(name, _mode_reason(mode, rule))
        if up and name in SET_WHILE_DOWN:
            raise InvalidInput(
                name,
                "can only change while the bond is down: the kernel "
                "refuses it on an up bond (EBUSY)",
            )
        if ports and name in SET_WITHOUT_PORTS:
            raise InvalidInput(
                name,
                "can only change while the bond has no ports: the kernel "
                "refuses it otherwise (ENOTEMPTY)",
            )
    old_mii, old_arp = effective_miimon(mode, current), current.arp_interval or 0
    if change.miimon and old_arp and change.arp_interval is None:
        raise InvalidInput(
            "miimon",
            f"{change.miimon} would switch ARP monitoring off (the "
            f"kernel sets arp_interval {old_arp} to 0): give arp_interval=0 too",
        )
    if change.arp_interval and old_mii and change.miimon is None:
        raise InvalidInput(
            "arp_interval",
            f"{change.arp_interval} would switch MII monitoring "
            f"off (the kernel sets miimon {old_mii} to 0): give miimon=0 too",
        )
    result = current.merged(change)
    new_mii = effective_miimon(mode, result)
    drop: dict[str, None] = {}
    if old_arp and not result.arp_interval:
        drop.update((n, None) for n in _ARP_ONLY if getattr(change, n) is None)
    if old_mii and not new_mii:
        drop.update((n, None) for n in _MII_ONLY if getattr(change, n) is None)
    elif old_mii and new_mii != old_mii:
        for name in _DELAYS:
            held = getattr(current, name)
            if held and getattr(change, name) is None and held // old_mii * new_mii != held:
                raise InvalidInput(
                    name,
                    f"changing miimon from {old_mii} to {new_mii} makes the "
                    f"kernel rescale {name} from {held} to "
                    f"{held // old_mii * new_mii} ms (it keeps {name} as a count "
                    "of miimon intervals): give it again with the change",
                )
    result = replace(result, **drop)
    check_options(mode, result, ports)
    return result


def _mode_reason(mode: BondMode, rule: ModeRule) -> str:
    where = ", ".join(m.label for m in sorted(rule.modes))
    if rule.kernel:
        why = f" ({rule.why})" if rule.why else ""
        return f"not supported in mode {mode}: the kernel refuses it outside {where}{why}"
    return f"has no effect in mode {mode}, only in {where} ({rule.why}): leave it out"


def _check_monitors(mode: BondMode, o: BondOptions) -> None:
    """MII and ARP monitoring: one or the other, and the ARP options only with ARP monitoring."""
    if o.miimon and o.arp_interval:
        raise InvalidInput(
            "arp_interval",
            f"cannot be used with miimon {o.miimon}: ARP "
            "monitoring cannot be used with MII monitoring (set one of them to 0)",
        )
    if o.arp_interval and not (o.arp_ip_target or o.ns_ip6_target):
        raise InvalidInput(
            "arp_ip_target",
            f"arp_interval {o.arp_interval} needs at least one "
            "arp_ip_target or ns_ip6_target: ARP monitoring has nothing to probe",
        )
    if not o.arp_interval:
        for name in _ARP_ONLY:  # an empty target list (clearing them) is fine
            if getattr(o, name) not in (None, ()):
                needs = "" if name.endswith("target") else " and an arp_ip_target"
                extra = (
                    " (and the kernel refuses arp_validate with miimon)"
                    if name == "arp_validate" and o.arp_validate and o.miimon
                    else ""
                )
                raise InvalidInput(
                    name,
                    f"needs ARP monitoring (arp_interval > 0{needs}): "
                    f"without it {name} has no effect{extra}",
                )
    if o.miimon == 0 and not o.arp_interval:
        raise InvalidInput(
            "miimon",
            "0 with no arp_interval leaves the bond without link "
            "monitoring: it would never notice a port failing",
        )
    if o.arp_all_targets is not None and o.arp_validate in (None, ArpValidate.NONE):
        raise InvalidInput(
            "arp_all_targets",
            "needs arp_validate (other than none): it only "
            "counts the targets of ports whose ARP traffic is validated",
        )


def _check_mii_delays(mode: BondMode, o: BondOptions) -> None:
    """updelay, downdelay, peer_notif_delay are whole multiples of miimon; all need MII monitoring.

    The kernel stores each as a count of miimon intervals (value // miimon, with a warning when
    it rounds) and refuses them while miimon is 0 (EPERM, "MII monitoring is disabled").
    """
    miimon = effective_miimon(mode, o)
    why = (
        "given"
        if o.miimon is not None
        else ("as ARP monitoring is on" if o.arp_interval else f"by default in mode {mode}")
    )
    for name in _MII_ONLY:
        value = getattr(o, name)
        if value is None:
            continue
        if miimon == 0:
            refusal = "" if name == "use_carrier" else "; the kernel refuses it (EPERM)"
            raise InvalidInput(
                name,
                f"needs MII monitoring, but miimon is 0 ({why}): without it "
                f"{name} means nothing{refusal}",
            )
        if name in _DELAYS and value % miimon:
            low = value // miimon * miimon
            raise InvalidInput(
                name,
                f"{value} is not a multiple of miimon {miimon}: the kernel "
                f"would round it down to {low} ms (give {low} or {low + miimon})",
            )


def _check_others(mode: BondMode, o: BondOptions, ports: Sequence[str] | None) -> None:
    """The hash policy in alb, the actor MAC, and options naming or counting the ports."""
    if (
        mode is BondMode.BALANCE_ALB
        and o.xmit_hash_policy is not None
        and o.tlb_dynamic_lb in (None, True)
    ):
        raise InvalidInput(
            "xmit_hash_policy",
            "in balance-alb the hash policy is only used with "
            "tlb_dynamic_lb=0 (with dynamic load balancing alb hashes by itself)",
        )
    if o.ad_actor_system is not None:
        first = int(o.ad_actor_system.split(":")[0], 16)
        if first & 1:
            raise InvalidInput(
                "ad_actor_system",
                f"{o.ad_actor_system} is a multicast address: "
                "the kernel refuses it as the LACP actor system",
            )
        if o.ad_actor_system == "00:00:00:00:00:00":
            raise InvalidInput(
                "ad_actor_system",
                "00:00:00:00:00:00 means the bond's own MAC, "
                "which is the default: leave ad_actor_system out",
            )
    if ports is None:
        return
    for name in ("primary", "active_slave"):
        port = getattr(o, name)
        if port is None:
            continue
        if not ports and name == "active_slave":
            raise InvalidInput(
                name,
                f"{port} must be a port of the bond, and it has none: the "
                "kernel only makes an enslaved port active",
            )
        if ports and port not in ports:
            raise InvalidInput(name, f"{port} is not one of the bond's ports ({', '.join(ports)})")
    if ports and o.min_links and o.min_links > len(ports):
        raise InvalidInput(
            "min_links",
            f"{o.min_links} is more than the bond's {len(ports)} "
            "ports: the bond would never get carrier",
        )


__all__ = [
    "ARP_MODES",
    "DEFAULT_MIIMON",
    "OPTION_MODES",
    "PORT_OPTION_MODES",
    "SET_WHILE_DOWN",
    "SET_WITHOUT_PORTS",
    "ModeRule",
    "check_options",
    "effective_miimon",
    "kernel_defaults",
    "validate",
    "validate_change",
]
