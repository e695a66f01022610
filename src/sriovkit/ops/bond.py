"""Bonds on the host: check, create with every option in one message, enslave, read back, delete.

The shape of `ops/vfconfig.py`: everything is checked before anything changes; each step's
undo goes on an `ExitStack` as the step succeeds, so a port refusing half-way gives every port
back its MTU, MAC, admin state and master, and deletes the bond.

Kernel facts behind the steps (lab, kernel 6.12): enslaving brings a port up, gives it the
bond's MTU and (fail_over_mac none) the bond's MAC, the first port giving the bond its own;
release gives back the MTU and MAC the port had when enslaved and leaves it DOWN, so the admin
state is ours to restore. Enslaving another bond's port silently moves it, so "already a port"
is refused here. The bond's MTU is the one asked for, else the first port's: each port must take
it (its IFLA_MAX_MTU), or the kernel refuses the port mid-way. Ports sharing a MAC (bond-cni
does the same) get a fresh locally administered MAC before enslaving, so the PF's filters and a
later release never see two ports with one address; the originals returned put the MAC back.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sriovkit.errors import HostError, InvalidInput, NotFound
from sriovkit.host.netlink import LinkChange, Netlink
from sriovkit.model.bond import BondMode, BondOptions, BondPort, BondSpec, PortOptions
from sriovkit.model.bond_rules import OPTION_MODES, kernel_defaults, validate
from sriovkit.model.bond_state import BondState, PortOriginal, differences
from sriovkit.model.pci import PciAddress

if TYPE_CHECKING:
    from sriovkit.host.sysfs import SysfsReader

Validate = Callable[[BondSpec], None]


def default_validate(spec: BondSpec) -> None:
    """The option rules of `model/bond_rules.py` (the bonding driver's, checked first)."""
    validate(spec)


@dataclass(frozen=True, slots=True)
class BondPlan:
    """What `create_bond` does (or, dry run, would do): the bond MTU, MAC changes, the steps."""

    spec: BondSpec
    mtu: int
    originals: tuple[PortOriginal, ...]
    new_macs: tuple[tuple[str, str], ...]  # (port, MAC given because another port had its MAC)

    def lines(self) -> list[str]:
        """The steps, one line each, for `--dry-run`."""
        opts = " ".join(f"{k}={v}" for k, v in self.spec.options.words() if k != "active_slave")
        out = [f"create bond {self.spec.name} mode {self.spec.mode.label} mtu {self.mtu} {opts}"]
        macs = dict(self.new_macs)
        for port in self.spec.ports:
            if port.name in macs:
                out.append(f"set {port.name} mac {macs[port.name]} (its MAC is another port's)")
            out.append(f"set {port.name} down; enslave to {self.spec.name}")
        if self.spec.options.active_slave is not None:
            out.append(f"set active_slave {self.spec.options.active_slave}")
        out.append(f"set {self.spec.name} up")
        return [line.rstrip() for line in out]


def plan_bond(
    netlink: Netlink, spec: BondSpec, *, mtu: int | None = None, validate: Validate | None = None
) -> BondPlan:
    """Check everything `create_bond` needs, changing nothing; InvalidInput/NotFound naming it."""
    (validate or default_validate)(spec)
    if not spec.ports:
        raise InvalidInput("port", f"bond {spec.name} needs at least one port")
    try:
        netlink.link(spec.name)
    except NotFound:
        pass
    else:
        raise InvalidInput("bond name", f"a link called {spec.name} exists")
    links = [netlink.link(p.name) for p in spec.ports]  # NotFound names the missing one
    for link in links:
        if link.master is not None:
            owner = _name_of(netlink, link.master)
            raise InvalidInput("port", f"{link.name} is already a port of {owner}")
        if link.kind == "bond":
            raise InvalidInput("port", f"{link.name} is a bond")
    bond_mtu = mtu if mtu is not None else links[0].mtu
    for link in links:
        if link.max_mtu is not None and bond_mtu > link.max_mtu:
            raise InvalidInput(
                "mtu", f"{link.name} takes at most MTU {link.max_mtu}, the bond's is {bond_mtu}"
            )
    for opt in ("primary", "active_slave"):
        value = getattr(spec.options, opt)
        if value is not None and value not in spec.port_names:
            ports = ", ".join(spec.port_names)
            raise InvalidInput(opt, f"{value} is not one of the ports ({ports})")
    seen = {link.mac for link in links}
    new_macs: list[tuple[str, str]] = []
    used: set[str] = set()
    for link in links:
        if link.mac in used:
            mac = _fresh_mac(seen)
            seen.add(mac)
            new_macs.append((link.name, mac))
        used.add(link.mac)
    originals = tuple(PortOriginal(lk.name, lk.mtu, lk.mac, lk.up) for lk in links)
    return BondPlan(spec, bond_mtu, originals, tuple(new_macs))


def create_bond(
    netlink: Netlink,
    spec: BondSpec,
    *,
    mtu: int | None = None,
    dry_run: bool = False,
    validate: Validate | None = None,
) -> BondPlan | tuple[BondState, BondPlan]:
    """Create the bond and enslave its ports; (state read back, plan with the originals).

    With dry_run, the checked plan only. A failing step rolls back every step before it.
    """
    plan = plan_bond(netlink, spec, mtu=mtu, validate=validate)
    if dry_run:
        return plan
    # active_slave needs ports (the kernel refuses it at creation): set after enslaving.
    options = replace(spec.options, active_slave=None)
    macs = dict(plan.new_macs)
    with contextlib.ExitStack() as undo:
        netlink.create_bond(spec.name, spec.mode, options, mtu=plan.mtu)
        undo.callback(_quiet, netlink.delete_link, spec.name)
        for port, original in zip(spec.ports, plan.originals, strict=True):
            undo.callback(_quiet, restore_port, netlink, original)
            _join(netlink, spec.name, port, macs.get(port.name))
        if spec.options.active_slave is not None:
            netlink.set_bond(spec.name, BondOptions(active_slave=spec.options.active_slave))
        netlink.set_link(spec.name, LinkChange(up=True))
        state = netlink.bond(spec.name)
        _check(spec.name, spec.mode, spec.options, state)
        undo.pop_all()
    return state, plan


def create_and_record(
    netlink: Netlink, spec: BondSpec, *, mtu: int | None = None
) -> tuple[BondState, tuple[PortOriginal, ...]]:
    """`create_bond` for real: the state read back and each port's original, to be recorded."""
    done = create_bond(netlink, spec, mtu=mtu)
    assert isinstance(done, tuple)  # not a dry run
    state, plan = done
    return state, plan.originals


def _join(netlink: Netlink, bond: str, port: BondPort, mac: str | None) -> None:
    # Down first: the kernel opens the port itself, and some drivers take a MAC only while down.
    netlink.set_link(port.name, LinkChange(up=False, mac=mac))
    netlink.enslave(port.name, bond, port.options)


def _check(name: str, mode: BondMode, asked: BondOptions, state: BondState) -> None:
    """Every asked option held as asked (delays as the kernel rounds them), else HostError."""
    if state.mode != mode:
        held = state.mode.label
        raise HostError(f"bond {name}: asked mode {mode.label}, the kernel holds {held}")
    step = state.options.miimon or 0
    rounded = {o: v - v % step for o in ("updelay", "downdelay", "peer_notif_delay")
               if step and isinstance(v := getattr(asked, o), int)}  # fmt: skip
    for opt, want, held in differences(replace(asked, **rounded), state.options):  # type: ignore[arg-type]
        raise HostError(f"bond {name}: option {opt} asked {want}, the kernel holds {held}")


def restore_port(netlink: Netlink, original: PortOriginal) -> None:
    """Give a port back: out of any bond, its MTU, MAC and admin state as before."""
    link = netlink.link(original.name)
    if link.master is not None:
        netlink.release(original.name)
    netlink.set_link(
        original.name, LinkChange(mtu=original.mtu, mac=original.mac, up=original.up)
    )


def delete_bond(
    netlink: Netlink, name: str, originals: Sequence[PortOriginal] | None = None
) -> BondState:
    """Release every port, give each its originals (when known), delete the bond.

    Without originals each port is left as the kernel leaves it: the MTU and MAC it had when
    enslaved (a MAC `create_bond` changed stays changed) and DOWN. Returns the state before.
    """
    state = netlink.bond(name)
    known = {o.name: o for o in originals or ()}
    errors = []
    for port in state.ports:
        try:
            netlink.release(port.name)
            if port.name in known:
                restore_port(netlink, known[port.name])
        except (HostError, NotFound) as exc:
            errors.append(f"{port.name}: {exc}")
    netlink.delete_link(name)
    if errors:
        raise HostError(f"bond {name} deleted, but not every port came back: {'; '.join(errors)}")
    return state


def add_port(
    netlink: Netlink, name: str, port: BondPort, *, mac: str | None = None
) -> tuple[BondState, PortOriginal]:
    """Enslave one more port (checked like `create_bond`'s); its original for removal."""
    state = netlink.bond(name)
    link = netlink.link(port.name)
    if link.master is not None:
        owner = _name_of(netlink, link.master)
        raise InvalidInput("port", f"{port.name} is already a port of {owner}")
    if link.kind == "bond" and link.name == name:
        raise InvalidInput("port", f"the bond {name} cannot be its own port")
    if link.max_mtu is not None and state.mtu > link.max_mtu:
        why = f"{port.name} takes at most MTU {link.max_mtu}, the bond's is {state.mtu}"
        raise InvalidInput("mtu", why)
    if mac is None and any(link.mac in (p.mac, p.perm_hwaddr) for p in state.ports):
        mac = _fresh_mac({p.perm_hwaddr for p in state.ports} | {link.mac})
    original = PortOriginal(link.name, link.mtu, link.mac, link.up)
    with contextlib.ExitStack() as undo:
        undo.callback(_quiet, restore_port, netlink, original)
        _join(netlink, name, port, mac)
        after = netlink.bond(name)
        undo.pop_all()
    return after, original


def remove_port(
    netlink: Netlink, name: str, port: str, original: PortOriginal | None = None
) -> BondState:
    """Release one port of bond `name` (NotFound if it is not one), give it its original."""
    state = netlink.bond(name)
    if state.port(port) is None:
        raise NotFound(f"{port} is not a port of bond {name}")
    netlink.release(port)
    if original is not None:
        restore_port(netlink, original)
    return netlink.bond(name)


def set_options(
    netlink: Netlink, name: str, options: BondOptions, *, validate: Validate | None = None
) -> BondState:
    """Change options of a bond (checked against its current mode), read back, undo on failure."""
    before = netlink.bond(name)
    (validate or default_validate)(BondSpec(name, before.mode, options))
    old = BondOptions(**{k: getattr(before.options, k) for k, _ in options.given()})
    try:
        netlink.set_bond(name, options)
        after = netlink.bond(name)
        _check(name, before.mode, options, after)
    except HostError:
        with contextlib.suppress(HostError, NotFound):
            netlink.set_bond(name, BondOptions(**dict(old.given())))
        raise
    return after


def spec_of(state: BondState) -> BondSpec:
    """The spec that would make the bond `state` reads back: what persistent files record.

    Options the kernel holds at their default for the mode are left out (a file then says what
    was chosen, not every default), as are the current active port (a run-time fact, not
    configuration), options that have no effect in the mode, and per-port options at their
    defaults.
    """
    defaults = kernel_defaults(state.mode)
    chosen = {
        name: value
        for name, value in state.options.given()
        if name != "active_slave"
        and value not in ((), getattr(defaults, name))
        # The kernel reports it, but it has no effect in this mode: nobody chose it.
        and (name not in OPTION_MODES or state.mode in OPTION_MODES[name].modes)
    }
    ports = tuple(
        BondPort(p.name, PortOptions(queue_id=p.queue_id or None, prio=p.prio or None))
        for p in state.ports
    )
    return BondSpec(state.name, state.mode, BondOptions(**chosen), ports)


def read_bond(netlink: Netlink, name: str) -> BondState:
    """The bond as the kernel reports it (NotFound if there is no such bond)."""
    return netlink.bond(name)


def list_bonds(netlink: Netlink) -> list[BondState]:
    """Every bond of the netns, read back."""
    return [netlink.bond(n) for n in sorted(netlink.bonds())]


def vf_ports(sysfs: SysfsReader, state: BondState) -> dict[str, tuple[PciAddress, int]]:
    """Port name -> (PF, VF index) for the ports that are VFs (the sysfs seam knows them)."""
    out: dict[str, tuple[PciAddress, int]] = {}
    for port in state.ports:
        vf = sysfs.netdev_pci(port.name)
        pf_name = sysfs.link_base(vf, "physfn") if vf is not None else None
        pf = PciAddress.try_parse(pf_name) if pf_name else None
        if vf is None or pf is None:
            continue
        for index, addr in sysfs.virtfns(pf).items():
            if addr == vf:
                out[port.name] = (pf, index)
    return out


def _name_of(netlink: Netlink, index: int) -> str:
    try:
        return netlink.link_by_index(index).name
    except NotFound:
        return f"link #{index}"


def _fresh_mac(used: set[str]) -> str:
    while True:
        octets = os.urandom(5)
        mac = "02:" + ":".join(f"{o:02x}" for o in octets)
        if mac not in used:
            return mac


def _quiet(fn: Callable[..., object], *args: object) -> None:
    """An undo step: a failure must not hide the error that started the rollback."""
    with contextlib.suppress(HostError, NotFound):
        fn(*args)


__all__ = [
    "BondPlan",
    "PortOriginal",
    "add_port",
    "create_bond",
    "default_validate",
    "delete_bond",
    "list_bonds",
    "plan_bond",
    "read_bond",
    "remove_port",
    "restore_port",
    "set_options",
    "vf_ports",
]
