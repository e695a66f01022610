"""Configure a VF's attributes from its PF: validate, diff, one request, verify, restore on failure.

The kernel applies a VF request attribute by attribute (mac, vlan, rate, spoofchk, link-state,
trust) and stops at the first one the driver refuses, keeping the earlier ones. So after a failure
the VF is read back, the first requested attribute that did not take is the one the driver
refused, and everything that did take is put back as it was.
"""

from __future__ import annotations

import errno as errno_mod
import os
from dataclasses import dataclass
from typing import NoReturn

from sriovkit.errors import HostError, NotFound
from sriovkit.host.netlink import VfAttrs
from sriovkit.model.vf import (
    ATTR_FIELDS,
    DEFAULT_SETTINGS,
    FieldChange,
    VfDiff,
    VfInfo,
    VfSettings,
    diff,
    not_applied,
    show_value,
)


@dataclass(frozen=True, slots=True)
class VfChange:
    """What `apply_vf` did (or, with dry_run, would do) to one VF."""

    pf: str
    index: int
    before: VfInfo
    after: VfInfo  # read back after the change; `before` when nothing was sent
    changes: tuple[FieldChange, ...]
    request: VfSettings  # the attributes sent (or that would be sent)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """True when something differs (and, unless dry_run, was applied)."""
        return bool(self.changes)


def read_vf(netlink: VfAttrs, pf: str, index: int) -> VfInfo:
    """VF `index` as the PF reports it; NotFound if the PF has no such VF."""
    vfs = netlink.vfs(pf)
    for vf in vfs:
        if vf.index == index:
            return vf
    raise NotFound(f"VF {index} not found on {pf} (it has {len(vfs)} VFs)")


def apply_vf(
    netlink: VfAttrs, pf: str, index: int, desired: VfSettings, *, dry_run: bool = False
) -> VfChange:
    """Make VF `index` of `pf` match `desired` (None fields untouched) in one netlink request.

    Raises InvalidInput before touching anything, NotFound for a missing PF/VF, and HostError
    naming the refused attribute after restoring the VF's previous state.
    """
    before = read_vf(netlink, pf, index)
    plan = diff(before, desired)
    if dry_run or not plan.changes:
        return VfChange(pf, index, before, before, plan.changes, plan.request, dry_run)
    try:
        netlink.set_vf(pf, index, plan.request)
    except HostError as exc:
        _fail(netlink, pf, index, before, plan, exc)
    after = read_vf(netlink, pf, index)
    if not_applied(after, plan.request):
        _fail(netlink, pf, index, before, plan, None)
    return VfChange(pf, index, before, after, plan.changes, plan.request)


def reset_vf(netlink: VfAttrs, pf: str, index: int, *, dry_run: bool = False) -> VfChange:
    """Put VF `index` back to what a freshly created VF looks like (`DEFAULT_SETTINGS`)."""
    return apply_vf(netlink, pf, index, DEFAULT_SETTINGS, dry_run=dry_run)


def _fail(
    netlink: VfAttrs,
    pf: str,
    index: int,
    before: VfInfo,
    plan: VfDiff,
    cause: HostError | None,
) -> NoReturn:
    """Find the refused attribute, restore the VF, raise the error that says both."""
    try:
        now = read_vf(netlink, pf, index)
    except (HostError, NotFound) as exc:
        raise HostError(
            f"failed to set VF {index} on {pf}: {cause or 'not applied'}; reading it back "
            f"failed too ({exc}): the VF may be left partially configured",
            errno=cause.errno if cause else None,
        ) from exc
    missing = not_applied(now, plan.request)
    refused = missing[0] if missing else None
    restore_error = _restore(netlink, pf, index, now, before)
    left = (
        "VF left unchanged"
        if restore_error is None
        else f"restoring the VF failed ({restore_error}): it may be left partially configured"
    )
    name = refused.value if refused is not None else "attributes"
    if cause is not None:
        code = cause.errno
        why = os.strerror(code) if code else str(cause)
        who = f"the driver refused {name}" if refused is not None else "the kernel refused it"
        raise HostError(
            f"failed to set VF {index} {name} on {pf}: {why} ({who}; {left})", errno=code
        ) from cause
    assert refused is not None  # only called without a cause when something did not take
    shown = ", ".join(f"{f} {show_value(getattr(now, f))}" for f in ATTR_FIELDS[refused])
    raise HostError(
        f"failed to set VF {index} {name} on {pf}: the driver accepted the request but "
        f"reports {shown} ({left})",
        errno=errno_mod.EIO,
    )


def _restore(netlink: VfAttrs, pf: str, index: int, now: VfInfo, before: VfInfo) -> str | None:
    """Put back what changed; None on success, else what went wrong.

    One request first (mac comes first in kernel order: some drivers refuse other changes while
    the admin MAC differs); if the driver refuses part of it, each attribute on its own, so one
    refusal does not leave the later ones changed.
    """
    back = diff(now, before.as_settings())
    if not back.changes:
        return None
    try:
        netlink.set_vf(pf, index, back.request)
        return None
    except HostError:
        pass
    errors = []
    for attr in back.attrs:
        part = VfSettings(**{f: getattr(back.request, f) for f in ATTR_FIELDS[attr]})
        try:
            netlink.set_vf(pf, index, part)
        except HostError as exc:
            errors.append(f"{attr.value}: {exc}")
    return "; ".join(errors) or None


__all__ = ["VfChange", "apply_vf", "read_vf", "reset_vf"]
