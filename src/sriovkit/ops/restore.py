"""Giving a VF back: the part of CNI DEL and GC (and of ADD's stale cleanup) that restores.

One function, `release`, so that DEL, GC and ADD (cleaning an allocation whose pod is gone) all
restore a VF the same way, in the same order:

1. PF-side attributes (admin MAC first, trust last: see `pf_side_restored`),
2. the netdev: moved back from the pod netns in one message, or, when the pod netns is gone,
   found in the host netns (a real VF comes back there on its own) and renamed back; a VF
   still bound to its kernel driver with no netdev in the host yet is on its way back from the
   dying netns: Busy (code 11), records kept, so a DEL retry or GC finishes it,
3. IPAM DEL,
4. only then the attachment record, then the allocation record.

A failure before step 4 raises and keeps the records, so a retried DEL or a GC finishes the job.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sriovkit.errors import Busy, HostError, InvalidInput, NotFound, SriovkitError
from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import Netlink
from sriovkit.host.netns import HOST_NETNS, netns_alive
from sriovkit.host.state import StateStore
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.attachment import AttachmentRecord
from sriovkit.model.cni import NetConf
from sriovkit.model.cni_env import CniEnv
from sriovkit.ops.attach_vf import (
    bring_home,
    find_in_host,
    fix_in_host,
    on_its_way_back,
    original_up,
    pf_side_restored,
    restore_altnames,
)


@dataclass(frozen=True)
class AttachContext:
    """The seams CNI operations run against (built by the adapter: agent, shim fallback, tests).

    `checkpoint` is called with a step name after each ADD step (fault-injection tests kill the
    process there). `netns_alive` decides whether a recorded pod netns still exists (a seam so
    unit tests on a simulated host can name fake namespaces). `return_timeout` bounds the wait
    for a real VF to come back to the host netns after its pod netns was deleted.
    `still_wanted` is called by ADD once it holds its locks, before it changes anything: the
    adapter raises `Abandoned` there when the request's client left or its deadline passed
    (the runtime gave up and will send, or already sent, DEL), so a stale ADD never runs.
    """

    sysfs: Sysfs
    netlink: Netlink
    ipam: Ipam
    store: StateStore
    lock_timeout: float = 30.0
    checkpoint: Callable[[str], None] | None = None
    host_netns: Path = HOST_NETNS
    netns_alive: Callable[[Path], bool] = field(default=netns_alive)
    announce: bool = True
    return_timeout: float = 2.0
    still_wanted: Callable[[], None] | None = None


def ipam_conf(raw_conf: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The config to hand to the IPAM plugin, or None when it names no IPAM."""
    if raw_conf is None:
        return None
    ipam = raw_conf.get("ipam")
    return raw_conf if isinstance(ipam, Mapping) and ipam else None


def record_env(record: AttachmentRecord, args: str = "") -> dict[str, str]:
    """The CNI_* variables an IPAM plugin needs to release what `record`'s ADD allocated."""
    return {
        "CNI_CONTAINERID": record.container_id,
        "CNI_IFNAME": record.ifname,
        "CNI_NETNS": record.netns,
        "CNI_ARGS": args,
    }


def ipam_env_of(env: CniEnv) -> dict[str, str]:
    """The CNI_* variables of this invocation, as the IPAM plugin must see them."""
    out = {
        "CNI_CONTAINERID": env.container_id or "",
        "CNI_IFNAME": env.ifname or "",
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in env.args.items()),
    }
    if env.netns is not None:
        out["CNI_NETNS"] = env.netns
    if env.path:
        out["CNI_PATH"] = os.pathsep.join(env.path)  # else Ipam uses its own search path
    return out


def ipam_delete(ipam: Ipam, conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """IPAM DEL (the seam asks older plugins again in the version they know)."""
    ipam.delete(conf, env)


def restore_vf(ctx: AttachContext, record: AttachmentRecord) -> None:
    """Put the VF of `record` back as recorded (PF side, then netdev); raise if it cannot."""
    if not ctx.sysfs.exists(record.pci):
        return  # the VF itself is gone (sriov_numvfs lowered): nothing left to restore
    with pf_side_restored(ctx.netlink, record):
        if record.original.name:  # else DPDK mode: the VF never had a netdev to move
            _netdev_home(ctx, record)


def _netdev_home(ctx: AttachContext, record: AttachmentRecord) -> None:
    original = record.original
    netns = Path(record.netns)
    gone = not ctx.netns_alive(netns)
    if not gone:
        # The pod still exists: the VF is in it, or never left the host.
        try:
            pod = ctx.netlink.in_netns(netns)
        except HostError:
            gone = True  # deleted meanwhile: look in the host below
        else:
            try:
                if bring_home(ctx.netlink, pod, record, ctx.host_netns):
                    return
            finally:
                pod.close()
    link = find_in_host(ctx.netlink, record, ctx.return_timeout if gone else 0.0)
    if link is not None:
        fix_in_host(ctx.netlink, link.name, original, original_up(original))
        restore_altnames(ctx.netlink, original)
        return
    if not gone:
        # The pod lives but the VF is neither in it nor in the host (the pod moved it on into
        # a netns of its own, say): forgetting it would lose it. The record stays; a retry or
        # GC finds it once the pod is gone and the kernel returned it.
        raise HostError(
            f"VF {record.device_id} is not in the pod netns {record.netns} (under any name) "
            "nor in the host netns"
        )
    if on_its_way_back(ctx.sysfs, ctx.netlink, record):
        # The netns cleanup has not returned the netdev yet: forgetting the VF now would let
        # the next ADD take the pod's name and settings for the VF's original ones.
        raise Busy(
            f"VF {record.device_id} has not come back from the deleted netns {record.netns} "
            "yet; retry"
        )
    # Else the link is gone (in veth mode deleting the netns destroyed the pair): per the
    # spec DEL still succeeds once the PF side and IPAM are released.


def release(
    ctx: AttachContext,
    record: AttachmentRecord,
    raw_conf: Mapping[str, Any] | None,
    env: Mapping[str, str],
) -> None:
    """Restore the VF, release IPAM and delete the records; the caller holds the VF's lock.

    When the VF's allocation belongs to another attachment (this record is a leftover and the
    VF was handed out again since), the VF is not touched: only IPAM and the record go.
    """
    store = ctx.store
    alloc = store.read_allocation(record.device_id)
    owned = alloc is None or alloc.key == record.key
    conf = ipam_conf(raw_conf)
    if owned:
        try:
            restore_vf(ctx, record)
        except (HostError, NotFound) as exc:
            raise HostError(
                f"cannot give VF {record.device_id} back from {record.key} "
                f"(netns {record.netns}): {exc}; its record is kept for a retry",
                getattr(exc, "errno", None),
            ) from exc
    # IPAM only once the VF is back: released earlier, a VF that then failed to come back
    # would keep in the pod an address the plugin hands to the next pod.
    if conf is not None:
        ipam_delete(ctx.ipam, conf, env)
    store.delete_attachment(record.key)
    if owned:
        store.delete_allocation(record.device_id)


class PluginNotAvailable(HostError):
    """CNI code 50 (spec 1.1 STATUS): the plugin cannot serve ADDs right now."""

    cni_code = 50


# --- DEL / GC / STATUS ---------------------------------------------------------------------


def delete(
    ctx: AttachContext,
    env: CniEnv,
    conf: NetConf | None,
    raw_conf: Mapping[str, Any] | None,
) -> None:
    """CNI DEL: idempotent; restores the VF, releases IPAM, then forgets the attachment."""
    key = env.key
    ipam_env = ipam_env_of(env)
    try:
        # The attachment's lock first: an ADD of the same key that already started finishes
        # before this DEL looks, so the DEL sees (and undoes) what it did.
        with ctx.store.lock_attachment(key, ctx.lock_timeout):
            record = ctx.store.read_attachment(key)
            if record is not None:
                with ctx.store.lock_vf(record.device_id, ctx.lock_timeout):
                    record = ctx.store.read_attachment(key)  # a GC may have finished it
                    if record is not None:
                        release(ctx, record, raw_conf, ipam_env)
                        return
            # Nothing recorded: still release IPAM, which a runtime expects DEL to do.
            conf_for_ipam = ipam_conf(raw_conf)
            if conf_for_ipam is not None:
                ipam_delete(ctx.ipam, conf_for_ipam, ipam_env)
    except SriovkitError:
        raise
    except Exception as exc:
        raise _internal(exc, f"DEL of {key} failed") from exc


def gc(ctx: AttachContext, conf: NetConf, raw_conf: Mapping[str, Any]) -> None:
    """CNI GC: release every attachment of this network that is not in `valid_attachments`."""
    if conf.valid_attachments is None:
        raise InvalidInput("cni.dev/valid-attachments", "missing: GC needs the list to keep")
    valid = set(conf.valid_attachments)
    errors: list[str] = []
    store = ctx.store
    for key in store.attachment_keys():
        if key in valid:
            continue
        try:
            # One unreadable record is reported, not allowed to stop the collection of the rest.
            record = store.read_attachment(key)
            if record is None or record.network != conf.name:
                continue
            with store.lock_vf(record.device_id, ctx.lock_timeout):
                again = store.read_attachment(record.key)
                if again is not None:
                    release(ctx, again, raw_conf, record_env(again))
        except SriovkitError as exc:
            errors.append(str(exc))
    try:
        allocations = list(store.allocations())
    except SriovkitError as exc:
        errors.append(str(exc))
        allocations = []
    for alloc in allocations:
        if alloc.network != conf.name or alloc.key in valid:
            continue
        with contextlib.suppress(SriovkitError), store.lock_vf(alloc.pci, ctx.lock_timeout):
            # Read again under the lock: a DEL of this key and an ADD of another may have run
            # since the listing, and the VF's allocation may now be a valid attachment's.
            current = store.read_allocation(alloc.pci)
            if current is None or current.key != alloc.key or current.network != conf.name:
                continue
            holder = store.read_attachment(current.key)
            if holder is None or holder.device_id != current.device_id:
                store.delete_allocation(current.pci)  # an ADD died before its attachment record
    ipam = ipam_conf(raw_conf)
    if conf.ipam is not None and ipam is not None:
        # The spec asks a delegating plugin to pass GC on, so the IPAM plugin can drop leases
        # nobody recorded (an ADD killed between its IPAM call and its record, say).
        try:
            ctx.ipam.gc(ipam, {})  # GC carries no container: CNI_COMMAND and CNI_PATH only
        except SriovkitError as exc:
            errors.append(f"IPAM GC: {exc}")
    if errors:
        raise HostError(f"GC of network {conf.name} left {len(errors)}: {'; '.join(errors)}")


def status(ctx: AttachContext, raw_conf: Mapping[str, Any] | None = None) -> None:
    """CNI STATUS: ready when the state directory is usable (else code 50) and, where the
    config delegates IPAM to a plugin that knows STATUS (spec 1.1.0), when that plugin is too
    (its own error and code are passed on)."""
    try:
        ctx.store.attachment_keys()  # creates and opens the tree, refusing symlinks
        ctx.store.check_writable()
    except (SriovkitError, OSError) as exc:
        raise PluginNotAvailable(
            f"plugin not available: state directory {ctx.store.dir} is not usable: {exc}"
        ) from exc
    ipam = ipam_conf(raw_conf)
    if ipam is not None:
        ctx.ipam.status(ipam, {})


def _internal(exc: BaseException, what: str) -> HostError:
    return HostError(f"{what}: {type(exc).__name__}: {exc}")


__all__ = [
    "AttachContext",
    "PluginNotAvailable",
    "delete",
    "gc",
    "ipam_conf",
    "ipam_delete",
    "ipam_env_of",
    "record_env",
    "release",
    "restore_vf",
    "status",
]
