"""The fake netlink's bonds part: a simulated bonding driver answering as the lab's 6.12 kernel.

What it does and refuses follows the lab's measurements (see `host/netlink.Bonds` and
`tests/unit/test_sim_bonds.py`): options checked against the mode (EACCES, "option not
supported in mode"), `mode`/`fail_over_mac` refused once the bond has ports (ENOTEMPTY), the
802.3ad system options refused while the bond is up (EBUSY), miimon with ARP monitoring
(EINVAL), delays rounded down to a multiple of miimon; enslaving brings a port up with the bond's
MTU and MAC (the first port giving the bond its MAC), releasing puts back the MTU and MAC it had
and leaves it down; a bond cannot be its own port (EPERM); enslaving another bond's port moves it.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from typing import Any

from sriovkit.errors import HostError, NotFound
from sriovkit.host.netlink import LinkInfo
from sriovkit.model.bond import BondMode, BondOptions, PortOptions
from sriovkit.model.bond_state import BondState
from sriovkit.sim.netlink_bondstate import SimBond, SimPort
from sriovkit.sim.netlink_bondview import bond_state, port_running
from sriovkit.sim.netlink_seam import FakeSeam, refused
from sriovkit.sim.netlink_state import SimLink, World

_M = BondMode
_ALL = frozenset(BondMode)
_AB_TLB_ALB = frozenset({_M.ACTIVE_BACKUP, _M.BALANCE_TLB, _M.BALANCE_ALB})
_NOT_AD_TLB_ALB = _ALL - {_M.IEEE_802_3AD, _M.BALANCE_TLB, _M.BALANCE_ALB}
_AD = frozenset({_M.IEEE_802_3AD})

MODES_OF: dict[str, frozenset[BondMode]] = {
    "arp_interval": _NOT_AD_TLB_ALB,
    "arp_validate": _NOT_AD_TLB_ALB,
    "arp_missed_max": _NOT_AD_TLB_ALB,
    "primary": _AB_TLB_ALB,
    "active_slave": _AB_TLB_ALB,
    "packets_per_slave": frozenset({_M.BALANCE_RR}),
    "lacp_rate": _AD,
    "lacp_active": _AD,
    "ad_actor_sys_prio": _AD,
    "ad_user_port_key": _AD,
    "ad_actor_system": _AD,
    "coupled_control": _AD,
    "tlb_dynamic_lb": frozenset({_M.BALANCE_TLB, _M.BALANCE_ALB}),
}
"""Options the kernel takes only in some modes (bond_options.c `unsuppmodes`, lab-checked)."""

NO_PORTS = frozenset({"fail_over_mac"})  # BOND_OPTFLAG_NOSLAVES (mode too)
IF_DOWN = frozenset({"lacp_rate", "lacp_active", "ad_select", "ad_user_port_key",
                     "tlb_dynamic_lb", "coupled_control"})  # fmt: skip
"""BOND_OPTFLAG_IFDOWN: refused with EBUSY while the bond is up."""

_MULTI = "option not supported in mode"
_PORTS = "unable to set option because the bond device has slaves"
_UP = "unable to set option because the bond is up"


def _kernel(code: int, what: str, why: str) -> HostError:
    return HostError(f"{what}: {os.strerror(code)} ({why})", errno=code)


class FakeBonds(FakeSeam):
    """`Bonds` of the fake (see `sriovkit.host.netlink.Bonds`)."""

    def _bond(self, w: World, name: str) -> tuple[SimLink, SimBond]:
        link = self._find(w, name)
        bond = w.bonds.get(link.key)
        if bond is None:
            raise NotFound(f"link {name} is not a bond")
        return link, bond

    def create_bond(
        self, name: str, mode: BondMode, options: BondOptions, *, mtu: int | None = None
    ) -> LinkInfo:
        """Create a bond with its mode and options (EEXIST for a name in use)."""
        what = f"failed to create bond {name} (mode {mode.label})"

        def apply(w: World) -> LinkInfo:
            self.requests += 1
            if any(lk.netns == self._netns and name in (lk.name, *lk.altnames)
                   for lk in w.links.values()):  # fmt: skip
                raise refused(errno.EEXIST, f"{what}: {name} exists")
            if not 0 < len(name) < 16 or "/" in name:
                raise refused(errno.EINVAL, f"{what}: name {name!r}")
            if mtu is not None and not 68 <= mtu <= 65535:
                raise refused(errno.EINVAL, f"{what}: mtu {mtu}")
            bond = SimBond(mode=mode)
            link = SimLink(key=name, index=_next_index(w), name=name, mac=_bond_mac(w, name),
                           mtu=mtu or 1500, up=False, carrier=False, netns=self._netns,
                           kind="bond", max_mtu=65535)  # fmt: skip
            self._apply_options(w, link, bond, options, what, creating=True)
            w.links[link.key] = link
            w.bonds[link.key] = bond
            return self._link_info(link)

        return self._run(apply, write=True)

    def set_bond(self, name: str, options: BondOptions, *, mode: BondMode | None = None) -> None:
        """Change options (and the mode) of a bond, as bond_changelink does."""

        def apply(w: World) -> None:
            self.requests += 1
            link, bond = self._bond(w, name)
            what = f"failed to set options on bond {name}"
            if mode is not None and mode != bond.mode:
                if bond.ports:
                    raise _kernel(errno.ENOTEMPTY, f"{what}: mode", _PORTS)
                if link.up:
                    raise _kernel(errno.EBUSY, f"{what}: mode", _UP)
            new = replace(bond, mode=mode if mode is not None else bond.mode)
            self._apply_options(w, link, new, options, what, creating=False)
            w.bonds[link.key] = new

        self._run(apply, write=True)

    def _apply_options(
        self, w: World, link: SimLink, bond: SimBond, options: BondOptions, what: str,
        *, creating: bool,
    ) -> None:  # fmt: skip
        given = dict(options.given())
        for opt in given:
            if opt in MODES_OF and bond.mode not in MODES_OF[opt]:
                raise _kernel(errno.EACCES, f"{what}: {opt}", _MULTI)
            if not creating and opt in NO_PORTS and bond.ports:
                raise _kernel(errno.ENOTEMPTY, f"{what}: {opt}", _PORTS)
            if not creating and opt in IF_DOWN and link.up:
                raise _kernel(errno.EBUSY, f"{what}: {opt}", _UP)
        base = bond.options
        if bond.mode not in _NOT_AD_TLB_ALB:
            # bond_option_mode_set: a mode without ARP monitoring turns it off and starts the
            # MII monitor at 100 ms if it was off (lab: 802.3ad/tlb/alb bonds read miimon 100).
            base = replace(base, arp_interval=0, miimon=base.miimon or 100)
        merged = base.merged(options)
        miimon = merged.miimon or 0
        for opt in ("updelay", "downdelay", "peer_notif_delay"):
            if opt in given and not miimon:
                raise _kernel(errno.EPERM, f"{what}: {opt}", "needs miimon")
        # bond_changelink checks the two monitors given in the same message only.
        if given.get("arp_interval") and given.get("miimon"):
            raise _kernel(errno.EINVAL, what, "ARP monitoring cannot be used with MII monitoring")
        if given.get("arp_validate") and given.get("miimon"):
            raise _kernel(errno.EINVAL, what, "ARP validating cannot be used with MII monitoring")
        mac = given.get("ad_actor_system")
        if mac is not None and int(mac[:2], 16) & 1:  # multicast; all-zero is taken (lab)
            raise _kernel(errno.EINVAL, f"{what}: ad_actor_system", "invalid option value")
        changes: dict[str, object] = {}
        for opt in ("primary", "active_slave"):
            if opt in given:
                target = self._find(w, str(given[opt]))
                if opt == "active_slave" and target.master != link.key:
                    raise _kernel(errno.EINVAL, f"{what}: active_slave", "invalid option value")
                changes[opt] = target.name
        # The kernel turns the other monitor off (bond_option_miimon_set/arp_interval_set).
        if given.get("miimon"):
            changes["arp_interval"] = 0
        if given.get("arp_interval"):
            changes["miimon"] = 0
        merged = replace(merged, **changes)  # type: ignore[arg-type]
        step = merged.miimon or 0
        for opt in ("updelay", "downdelay", "peer_notif_delay"):
            value = getattr(merged, opt) or 0
            rounded: dict[str, Any] = {opt: value - value % step if step else value}
            merged = replace(merged, **rounded)
        bond.options = merged
        if "active_slave" in given:
            bond.active = self._find(w, str(given["active_slave"])).key

    def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
        """Make `port` a port of `bond`: up, the bond's MTU and MAC; then per-port options."""

        def apply(w: World) -> None:
            self.requests += 1
            what = f"failed to enslave {port} to bond {bond}"
            blink, sb = self._bond(w, bond)
            plink = self._find(w, port)
            if plink is blink:
                raise _kernel(errno.EPERM, what, "Cannot enslave bond to itself.")
            if plink.kind == "bond" and plink.key in w.bonds and w.bonds[plink.key].ports:
                raise refused(errno.EBUSY, what)
            if plink.name == "lo":
                raise refused(errno.EINVAL, what)
            if plink.master == blink.key:
                return  # the kernel answers success and changes nothing
            if plink.master is not None:
                self._release(w, plink)  # do_set_master: out of the old bond first
            if blink.mtu > plink.max_mtu:
                raise refused(errno.EINVAL, f"{what}: mtu {blink.mtu} above {plink.max_mtu}")
            plink.port = SimPort(perm_hwaddr=plink.mac, orig_mtu=plink.mtu)
            if not sb.ports:
                blink.mac = plink.mac  # the first port gives the bond its MAC
            elif int(sb.options.fail_over_mac or 0) == 0:
                plink.mac = blink.mac
            plink.mtu = blink.mtu
            plink.up = True
            plink.master, plink.master_index = blink.key, blink.index
            sb.ports.append(plink.key)
            _elect(w, blink, sb)

        self._run(apply, write=True)
        if options is not None and (options.queue_id is not None or options.prio is not None):
            self.set_port(port, options)

    def set_port(self, port: str, options: PortOptions) -> None:
        """Per-port options; EOPNOTSUPP for a link that is no bond's port (as measured)."""

        def apply(w: World) -> None:
            self.requests += 1
            plink = self._find(w, port)
            if plink.master is None or plink.port is None:
                raise refused(errno.EOPNOTSUPP, f"failed to set port options of {port}")
            if options.queue_id is not None:
                plink.port.queue_id = options.queue_id
            if options.prio is not None:
                plink.port.prio = options.prio

        self._run(apply, write=True)

    def release(self, port: str) -> None:
        """Take `port` out of its bond (a link that is no port: success, nothing changes)."""

        def apply(w: World) -> None:
            self.requests += 1
            plink = self._find(w, port)
            if plink.master is not None:
                self._release(w, plink)

        self._run(apply, write=True)

    @staticmethod
    def _release(w: World, plink: SimLink) -> None:
        sb = w.bonds.get(plink.master or "")
        blink = w.links.get(plink.master or "")
        if plink.port is not None:
            plink.mac = plink.port.perm_hwaddr
            plink.mtu = plink.port.orig_mtu
        plink.up = False  # the kernel closes a released port
        plink.master, plink.master_index, plink.port = None, None, None
        if sb is not None and blink is not None:
            sb.ports = [k for k in sb.ports if k != plink.key]
            if sb.active == plink.key:
                sb.active = None
            _elect(w, blink, sb)

    def delete_link(self, name: str) -> None:
        """Delete a bond (its ports released first, as the kernel does); EOPNOTSUPP otherwise."""

        def apply(w: World) -> None:
            self.requests += 1
            link = self._find(w, name)
            if link.key not in w.bonds:
                raise refused(errno.EOPNOTSUPP, f"failed to delete link {name}")
            for key in list(w.bonds[link.key].ports):
                self._release(w, w.links[key])
            del w.bonds[link.key]
            del w.links[link.key]

        self._run(apply, write=True)

    def bonds(self) -> list[str]:
        """Names of the bonds in this netns."""
        return self._run(
            lambda w: [w.links[k].name for k in w.bonds if w.links[k].netns == self._netns]
        )

    def bond(self, name: str) -> BondState:
        """The bond read back, as the kernel reports it over netlink."""
        return self._run(lambda w: bond_state(w, *self._bond(w, name)))

    def set_port_carrier(self, port: str, carrier: bool) -> None:
        """Cable of a port plugged or pulled: the bond's monitor reacts (failover)."""

        def apply(w: World) -> None:
            plink = self._find(w, port)
            if plink.carrier and not carrier and plink.port is not None:
                plink.port.failures += 1
            plink.carrier = carrier
            if plink.master is not None:
                _elect(w, w.links[plink.master], w.bonds[plink.master])

        self._run(apply, write=True)

    @staticmethod
    def _link_info(link: SimLink) -> LinkInfo:
        return LinkInfo(index=link.index, name=link.name, mac=link.mac, mtu=link.mtu,
                        operstate="up" if link.up and link.carrier else "down",
                        carrier=link.carrier and link.up, up=link.up, kind=link.kind,
                        max_mtu=link.max_mtu)  # fmt: skip


def settle(w: World, link: SimLink, *, went_down: bool = False) -> None:
    """After a link changed state (admin up/down): its bond's carrier and active port."""
    key = link.key if link.key in w.bonds else link.master
    if key is not None and key in w.bonds and key in w.links:
        if went_down and link.port is not None:
            link.port.failures += 1
        _elect(w, w.links[key], w.bonds[key])


def _elect(w: World, blink: SimLink, sb: SimBond) -> None:
    """Carrier and the active port, as the bond's monitor would settle them."""
    running = [k for k in sb.ports if port_running(w.links[k])]
    blink.carrier = len(running) >= max(sb.options.min_links or 0, 1)
    if sb.mode not in (BondMode.ACTIVE_BACKUP, BondMode.BALANCE_TLB, BondMode.BALANCE_ALB):
        sb.active = None
        return
    if sb.active in running and sb.options.primary is None:
        return
    primary = next((k for k in running if w.links[k].name == sb.options.primary), None)
    if primary is not None and (sb.active not in running or _reselect(sb)):
        sb.active = primary
    elif sb.active not in running:
        sb.active = running[0] if running else None


def _reselect(sb: SimBond) -> bool:
    return int(sb.options.primary_reselect or 0) == 0  # always: the primary takes over


def _next_index(w: World) -> int:
    return max((lk.index for lk in w.links.values()), default=0) + 1


def _bond_mac(w: World, name: str) -> str:
    """A locally administered MAC, stable for a name (the kernel picks a random one)."""
    seed = sum(ord(c) * 31**i for i, c in enumerate(name)) + len(w.links)
    octets = [(seed >> (8 * i)) & 0xFF for i in range(5)]
    return "02:" + ":".join(f"{o:02x}" for o in octets)


__all__ = ["IF_DOWN", "MODES_OF", "NO_PORTS", "FakeBonds", "bond_state", "settle"]
