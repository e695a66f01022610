"""The simulated bonding driver's read-back: a bond as `Bonds.bond` reports it, and its
`/proc/net/bonding/<bond>` text written into the simulated host's tree.

Apart from `sim/netlink_bonds.py` (the driver's verbs) so that the seam's save can publish the
text after every change without an import cycle. The text comes from the shared formatter
(`model/bond_status_format.py`, exact for every text the lab's kernel printed) over the status
`model/bond_state.proc_status` derives from the read-back, so the file says what netlink says.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

from sriovkit.host.atomicfile import write_file
from sriovkit.model.bond import BondMode
from sriovkit.model.bond_state import (
    AdInfo,
    BondPortState,
    BondState,
    MiiStatus,
    PortRole,
    proc_status,
)
from sriovkit.model.bond_status_format import format_bond_status
from sriovkit.sim.netlink_bondstate import SimBond, SimPort
from sriovkit.sim.netlink_state import SimLink, World

PROC_DIR = Path("proc/net/bonding")
MASTERS_FILE = Path("sys/class/net/bonding_masters")
DRIVER_VERSION = "v6.12.0-sriovkit-sim"
"""What the simulated driver calls itself in its /proc text (the kernel prints `v<uname -r>`)."""


def port_running(link: SimLink) -> bool:
    """Whether a port counts as up for the bond's monitor (admin up and carrier)."""
    return link.up and link.carrier


def bond_state(w: World, link: SimLink, sb: SimBond) -> BondState:
    """A simulated bond as `Bonds.bond` reports it (the 802.3ad options only in 802.3ad)."""
    options = sb.options
    if sb.mode != BondMode.IEEE_802_3AD:
        options = replace(options, ad_actor_sys_prio=None, ad_user_port_key=None,
                          ad_actor_system=None)  # fmt: skip
    active = w.links[sb.active].name if sb.active in w.links else None
    # The kernel reports primary only while it names a current port (lab: None before).
    primary = options.primary if any(w.links[k].name == options.primary for k in sb.ports) else None
    options = replace(options, active_slave=active, primary=primary)
    ports = tuple(_port_state(w.links[k], k == sb.active, sb) for k in sb.ports)
    ad = None
    if sb.mode == BondMode.IEEE_802_3AD:
        # No LACP partner in the lab either: each port sits in its own aggregator.
        first = next((p for p in ports if p.mii_status == MiiStatus.UP), None)
        ad = AdInfo(aggregator=first.ad_aggregator_id or 1 if first else 1,
                    num_ports=1 if first else 0, actor_key=_actor_key(sb), partner_key=1,
                    partner_mac="00:00:00:00:00:00")  # fmt: skip
    return BondState(name=link.name, index=link.index, mode=sb.mode, options=options,
                     ports=ports, active_port=active, ad_info=ad, mac=link.mac, mtu=link.mtu,
                     up=link.up, carrier=link.carrier and link.up)  # fmt: skip


def _actor_key(sb: SimBond) -> int:
    # 802.3ad actor key: user key << 6 | speed (1000 Mb/s: 4) << 1 | full duplex (lab: 329)
    return ((sb.options.ad_user_port_key or 0) << 6) | (4 << 1) | 1


def _port_state(link: SimLink, active: bool, sb: SimBond) -> BondPortState:
    port = link.port or SimPort(perm_hwaddr=link.mac, orig_mtu=link.mtu)
    mii = MiiStatus.UP if port_running(link) else MiiStatus.DOWN
    if sb.mode in (BondMode.ACTIVE_BACKUP, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB):
        role = PortRole.ACTIVE if active else PortRole.BACKUP
    else:
        role = PortRole.ACTIVE if mii == MiiStatus.UP else PortRole.BACKUP
    ad = sb.mode == BondMode.IEEE_802_3AD
    return BondPortState(
        name=link.name, index=link.index, role=role, mii_status=mii,
        link_failure_count=port.failures, perm_hwaddr=port.perm_hwaddr, queue_id=port.queue_id,
        prio=port.prio, ad_aggregator_id=(sb.ports.index(link.key) + 1) if ad else None,
        ad_actor_oper_port_state=207 if ad else None,
        ad_partner_oper_port_state=2 if ad else None,
        mac=link.mac, mtu=link.mtu, up=link.up,
    )  # fmt: skip


def publish(root: Path, w: World) -> None:
    """Write `/proc/net/bonding/<bond>` for every bond and `bonding_masters`; drop stale texts.

    Called with the world lock held, after the world is saved: the files follow every change.
    """
    proc = Path(root) / PROC_DIR
    names = {}
    for key, sb in w.bonds.items():
        link = w.links.get(key)
        if link is not None:
            names[link.name] = bond_state(w, link, sb)
    if not names and not proc.is_dir():
        return
    for name, state in names.items():
        text = format_bond_status(proc_status(state, DRIVER_VERSION))
        write_file(proc / name, text.encode(), mode=0o444, parents=True)
    with contextlib.suppress(FileNotFoundError):
        for stale in set(os.listdir(proc)) - set(names):
            with contextlib.suppress(OSError):
                os.unlink(proc / stale)
    masters = " ".join(sorted(names))
    write_file(Path(root) / MASTERS_FILE, (masters + "\n").encode(), mode=0o644, parents=True)


__all__ = ["DRIVER_VERSION", "MASTERS_FILE", "PROC_DIR", "bond_state", "port_running", "publish"]
