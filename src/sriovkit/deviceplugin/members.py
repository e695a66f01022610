"""The pools' members as re-discovery keeps them, and how a pass over a few PFs updates them.

A change on one PF (VFs created or removed, a VF rebound, its netdev renamed or moved) cannot
change what any other PF's functions are: every pool rule of `ops/dp_pools.py` is decided per
function, from the function, its PF, and host-wide facts (default route, bond ports) read again
on each pass. So re-discovery re-reads only the *families* a change touched (a PF and its VFs;
a function that is no VF and has none is a family of its own) and `merge` puts their members
back in place. The result is what a pass over the whole host gives, member for member and in
the same order:

- a pool lists the devices its selectors pick by selector (config order), then by address:
  the order in which `ops/dp_pools` walks the inventory;
- after them, the ones kept only because their driver no longer matches the pool (`stale`,
  always Unhealthy: see `discovery.py`), in the order they had.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from sriovkit.deviceplugin.model import Device
from sriovkit.deviceplugin.pools import pool_devices
from sriovkit.host.netlink import LinkState
from sriovkit.model.dp_config import DpConfig
from sriovkit.model.dp_pool import Pool
from sriovkit.model.pci import PciAddress


@dataclass(frozen=True, slots=True)
class Member:
    """A device in a pool, with what its health depends on."""

    device: Device
    """As advertised when healthy."""
    netdev: str | None
    stale: bool = False
    """Kept only because its driver no longer matches the pool (always Unhealthy)."""
    pci: PciAddress | None = None
    family: PciAddress | None = None
    """Its PF, or itself when it is no VF: what a change on a PF re-reads."""
    selector: int = 0
    """The index of the selector object that picked it (the pool's first order key)."""


def healthy(member: Member, links: Mapping[str, LinkState]) -> bool:
    """The health rules of `discovery.py`'s docstring, for one device."""
    if member.stale:
        return False
    for name in (member.device.pf, member.netdev):
        link = links.get(name) if name else None
        if link is not None and link.up and not link.carrier:
            return False
    return True


def members_of(pools: list[Pool], config: DpConfig) -> dict[str, list[Member]]:
    """The members of each pool, in the pool's order."""
    out: dict[str, list[Member]] = {}
    for pool in pools:
        devices = pool_devices(pool, config)
        out[pool.full_name] = [
            Member(dev, d.netdev, pci=d.pci, family=d.pf_pci or d.pci, selector=d.selector)
            for d, dev in zip(pool.devices, devices, strict=True)
        ]
    return out


def _order(m: Member) -> tuple[int, PciAddress]:
    return (m.selector, m.pci or PciAddress.parse(m.device.id))


def merge(
    old: Mapping[str, list[Member]],
    fresh: dict[str, list[Member]],
    present: Collection[str],
    families: Collection[PciAddress] | None,
    *,
    sticky: bool,
) -> dict[str, list[Member]]:
    """The members after a pass that found `fresh` among the devices `present` (PCI addresses)
    it read: the whole host when `families` is None, else only those families, the others
    keeping what they had. `sticky`: a member no pool selects any more but still present stays
    listed as stale (a config change passes False: it drops them)."""
    found = {m.device.id for pool in fresh.values() for m in pool}

    def touched(m: Member) -> bool:
        return families is None or m.family in families

    out: dict[str, list[Member]] = {}
    for name in [*fresh, *(n for n in old if n not in fresh)]:
        before = old.get(name, [])
        members = fresh.get(name, [])
        if families is not None:
            kept = [m for m in before if not m.stale and not touched(m)]
            members = sorted([*kept, *members], key=_order)
        listed = {m.device.id for m in fresh.get(name, [])}
        stale = []
        for m in before:
            if not touched(m):
                if m.stale:
                    stale.append(m)
            elif sticky and not (
                m.device.id in listed or m.device.id in found or m.device.id not in present
            ):  # still here, moved to another pool, or gone from the host
                stale.append(replace(m, stale=True))
        if members or stale or name in fresh:
            out[name] = [*members, *stale]
    return out


__all__ = ["Member", "healthy", "members_of", "merge"]
