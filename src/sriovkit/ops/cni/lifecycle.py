"""CNI ADD and DEL for any kind of attachment (ops/cni/kind.py); CHECK, GC, STATUS: upkeep.py.

ADD records what it holds and the original state on disk *before* touching anything, then runs
the kind's steps with an undo registered on an ExitStack as each step succeeds; any failure
unwinds what was done (IPAM DEL included) and re-raises. A crash (process killed) between steps
leaves a record that DEL or GC uses to give everything back exactly. Every operation holds the
attachment's lock (`StateStore.lock_attachment`), then the lock of each device it holds, in
sorted order (`StateStore.lock_vf`). An ADD whose kind chooses its device (`Kind.choose`: the VF
kind with a `resourceName` config) first holds what the kind takes for that (the pod's lock,
`StateStore.lock_pod`) for the whole ADD, so the device locked is the device chosen.

Decisions:

- A device allocated to another (container, ifname) whose pod netns still exists is refused
  with Busy (CNI code 11, "try again later"): the usual cause is the previous pod's DEL still
  being on its way, and the runtime's retry succeeds once it ran. An allocation whose netns is
  gone is released first (restored as DEL would; IPAM released when it belongs to the same
  network).
- ADD again for the same (container, ifname) and netns while the attachment is intact returns
  the recorded result (a runtime retrying an ADD whose answer it lost); an attachment left
  half-done by a crash is released and the ADD redone.
- The same (container, ifname) already holding *other* devices is refused (code 7): the
  runtime must DEL it first.

Releasing (`release`, for DEL, GC and ADD's stale cleanup alike): the kind gives back what the
record holds, with IPAM DEL overlapping the move home once the kind has taken the addresses off
the pod's interface (else after it), then the attachment record, then the allocations. A
failure before the records go raises and keeps them, so a retried DEL or a GC finishes the job.
A record of an earlier boot (its `boot_id` is not this boot's: `AttachContext.earlier_boot`)
gives nothing back: what it describes (the netdev in a pod, the VF's attributes) died with that
boot, and restoring its "original" state would overwrite this boot's VF. IPAM is still released
and the records deleted; ADD takes such a holder for one whose pod is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from sriovkit.errors import (
    Busy,
    HostError,
    InvalidInput,
    NotFound,
    SriovkitError,
)
from sriovkit.model.attachment import AllocationRecord, Attachment, AttachmentKey
from sriovkit.model.cni import CniEnv, NetConf
from sriovkit.model.cni_result import CURRENT_VERSION, CniResult, parse_result, to_version
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.ipam import DelIpam, ipam_conf, ipam_env_of, record_env, start_ipam
from sriovkit.ops.cni.kind import AnyKind
from sriovkit.ops.cni.pod import announce_addresses, configure_addresses, require_free_name
from sriovkit.ops.cni.rollback import Rollback, failed

_A = TypeVar("_A", bound=Attachment)
Kinds = Mapping[str, AnyKind]
"""Every kind by its records' tag: DEL and GC find the kind of a record here."""


@contextmanager
def device_locks(ctx: AttachContext, devices: Sequence[str]) -> Iterator[None]:
    """Each device's lock, in sorted order (two ADDs sharing devices cannot deadlock)."""
    with ExitStack() as stack:
        for device in sorted(devices):
            stack.enter_context(ctx.store.lock_vf(device, ctx.lock_timeout))
        yield


def _kind_of(kinds: Kinds, record: Attachment) -> AnyKind:
    tag = type(record).__struct_config__.tag
    kind = kinds.get(str(tag))
    if kind is None:  # the store only decodes known kinds: a table and a model out of step
        raise HostError(f"attachment {record.key} is of kind {tag!r}, which has no steps here")
    return kind


# --- ADD -----------------------------------------------------------------------------------


def add(
    ctx: AttachContext,
    kind: AnyKind,
    kinds: Kinds,
    env: CniEnv,
    conf: NetConf,
    raw_conf: Mapping[str, Any],
) -> CniResult:
    """CNI ADD: attach what `conf` names to the pod as `env.ifname`; returns the result."""
    key = env.key
    if env.netns is None:
        raise InvalidInput("CNI_NETNS", "ADD needs the pod's network namespace")
    netns = Path(env.netns)
    with kind.choose(ctx, conf, env) as chosen:
        target = kind.resolve(ctx, chosen)
        devices = kind.devices(target)
        with ctx.store.lock_attachment(key, ctx.lock_timeout), device_locks(ctx, devices):
            if ctx.still_wanted is not None:
                ctx.still_wanted()  # the runtime gave up on this ADD: its DEL may have run
            previous = _reclaim(ctx, kind, kinds, devices, key, netns, raw_conf)
            if previous is not None:
                return previous
            target = kind.resolve(ctx, chosen)  # a device may have just come back from a pod
            return _attach(ctx, kind, env, chosen, raw_conf, target, netns)


def _reclaim(
    ctx: AttachContext,
    kind: AnyKind,
    kinds: Kinds,
    devices: Sequence[str],
    key: AttachmentKey,
    netns: Path,
    raw_conf: Mapping[str, Any],
) -> CniResult | None:
    """Deal with existing records of these devices / this attachment; a result: already done."""
    store = ctx.store
    mine = store.read_attachment(key)
    if mine is not None and sorted(mine.devices) != sorted(devices):
        raise InvalidInput(
            "CNI_IFNAME",
            f"{key} already has {kind.describe(mine.devices)} attached (netns {mine.netns}); "
            "DEL it first",
        )
    done: CniResult | None = None
    for device in devices:
        alloc = store.read_allocation(device)
        if alloc is None:
            if mine is not None and store.read_attachment(key) is not None:
                # A record without allocation: a crash during DEL; finish it.
                release(ctx, kinds, mine, raw_conf, record_env(mine))
            continue
        holder = store.read_attachment(alloc.key)
        if holder is None or device not in holder.devices:
            store.delete_allocation(device)  # stale: an ADD died before writing its attachment
            continue
        # An earlier boot's holder is gone whatever its netns path names now.
        alive = not ctx.earlier_boot(holder.boot_id) and ctx.netns_alive(Path(holder.netns))
        if alloc.key == key:
            if alive and holder.netns == str(netns) and holder.result is not None:
                with contextlib.suppress(SriovkitError):
                    kind.verify(ctx, holder, None)
                    done = parse_result(holder.result, "recorded result")
                    continue
            release(ctx, kinds, holder, raw_conf, record_env(holder))
            continue
        if alive:
            raise Busy(
                f"{kind.describe([device])} is already attached to container "
                f"{holder.container_id} as {holder.ifname} (netns {holder.netns}); try again "
                "once it is released"
            )
        # Its pod is gone but nobody ran DEL: give it back first. IPAM can be released only
        # with the same network's config (the record does not keep the IPAM config).
        same_net = holder.network == (raw_conf.get("name") if raw_conf else None)
        release(ctx, kinds, holder, raw_conf if same_net else None, record_env(holder))
    return done


def _attach(
    ctx: AttachContext,
    kind: AnyKind,
    env: CniEnv,
    conf: NetConf,
    raw_conf: Mapping[str, Any],
    target: Any,
    netns: Path,
) -> CniResult:
    key = env.key
    store = ctx.store
    devices = kind.devices(target)
    what = kind.describe(devices)
    record = _stamped(ctx, kind.new_record(ctx, conf, target, key, netns))
    pod = ctx.netlink.in_netns(netns) if kind.needs_pod(target) else None
    rollback: Rollback | None = None
    try:
        with ExitStack() as stack:
            rollback = Rollback(stack)
            if pod is not None:
                stack.callback(pod.close)
                require_free_name(pod, key.ifname, netns)
            _write_records(ctx, record, devices, rollback)
            ctx.step("recorded")
            state = kind.host_side(ctx, conf, target, record, rollback, pod is not None)
            ctx.step("vf-configured")
            ipam = start_ipam(ctx.ipam, env, raw_conf, rollback) if conf.ipam is not None else None
            link = None
            if pod is not None:
                link = kind.into_pod(ctx, pod, conf, record, netns, state, rollback)
                ctx.step("moved")
            ipam_result = CniResult()
            if ipam is not None:
                ipam_result = parse_result(ipam.result(), "IPAM result")
                ctx.step("ipam")
            result = kind.result(ctx, conf, record, link, ipam_result)
            if pod is not None and ipam_result.ips:
                configure_addresses(pod, key.ifname, ipam_result)
                ctx.step("configured")
                if ctx.announce:
                    announce_addresses(ctx, netns, key.ifname, result)
                    ctx.step("announced")
            committed = msgspec.structs.replace(record, result=to_version(result, CURRENT_VERSION))
            store.write_attachment(committed)
            ctx.step("committed")
            stack.pop_all()
            if pod is not None:
                pod.close()
            return result
    except SriovkitError as exc:
        if rollback is None:
            raise
        raise failed(exc, rollback, what) from exc
    except Exception as exc:
        if rollback is None:
            raise
        # A bug or an unexpected OS error half-way: the undos ran; say which of them failed.
        err = HostError(f"ADD of {what} for {key} failed: {type(exc).__name__}: {exc}")
        raise failed(err, rollback, what) from exc


def _stamped(ctx: AttachContext, record: _A) -> _A:
    """`record` with this boot's id: every kind's record says which boot made it."""
    if record.boot_id == ctx.boot_id:
        return record
    return msgspec.structs.replace(record, boot_id=ctx.boot_id)


def _write_records(
    ctx: AttachContext, record: Attachment, devices: Sequence[str], rollback: Rollback
) -> None:
    """Allocations first, attachment second; DEL deletes them in the opposite order, so an
    attachment record always has its allocations (see `release`)."""
    for device in devices:
        ctx.store.write_allocation(
            AllocationRecord(
                device_id=device,
                container_id=record.container_id,
                ifname=record.ifname,
                network=record.network,
            )
        )
    rollback.stack.callback(rollback.forget, ctx.store, record.key, devices)
    ctx.store.write_attachment(record)


# --- DEL -------------------------------------------------------------


def release(
    ctx: AttachContext,
    kinds: Kinds,
    record: Attachment,
    raw_conf: Mapping[str, Any] | None,
    env: Mapping[str, str],
) -> None:
    """Give back what `record` holds, release IPAM and delete the records (its locks held).

    When a device's allocation belongs to another attachment (this record is a leftover and
    the device was handed out again since), or the record is an earlier boot's (see the module
    doc), nothing is given back: only IPAM and the records go.
    """
    store = ctx.store
    owned = [d for d in record.devices if _owned_by(store.read_allocation(d), record)]
    conf = ipam_conf(raw_conf)
    # IPAM is released once the pod holds none of its addresses (`DelIpam`): on a thread while
    # the netdev moves home where the kind says so and the plugin allows, else after.
    ipam = DelIpam(ctx.ipam, conf, env) if conf is not None else None
    if len(owned) == len(record.devices) and not ctx.earlier_boot(record.boot_id):
        kind = _kind_of(kinds, record)
        try:
            kind.restore(ctx, record, ipam.early if ipam is not None else None)
        except (HostError, NotFound) as exc:
            if ipam is not None:
                ipam.wait()
            raise HostError(
                f"cannot give {kind.describe(record.devices)} back from {record.key} "
                f"(netns {record.netns}): {exc}; its record is kept for a retry",
                getattr(exc, "errno", None),
            ) from exc
        except BaseException:
            if ipam is not None:
                ipam.wait()
            raise
    if ipam is not None:
        ipam.finish()
    store.delete_attachment(record.key)
    for device in owned:
        store.delete_allocation(device)


def _owned_by(alloc: AllocationRecord | None, record: Attachment) -> bool:
    return alloc is None or alloc.key == record.key


def delete(
    ctx: AttachContext,
    kinds: Kinds,
    env: CniEnv,
    raw_conf: Mapping[str, Any] | None,
) -> None:
    """CNI DEL: idempotent; gives back what the record holds, releases IPAM, forgets it.

    Needs no parsed config: the record says what to give back (its kind by its tag).
    """
    key = env.key
    ipam_env = ipam_env_of(env)
    # The attachment's lock first: an ADD of the same key that already started finishes
    # before this DEL looks, so the DEL sees (and undoes) what it did.
    with ctx.store.lock_attachment(key, ctx.lock_timeout):
        record = ctx.store.read_attachment(key)
        if record is not None:
            with device_locks(ctx, record.devices):
                record = ctx.store.read_attachment(key)  # a GC may have finished it
                if record is not None:
                    release(ctx, kinds, record, raw_conf, ipam_env)
                    return
        # Nothing recorded: still release IPAM, which a runtime expects DEL to do.
        conf_for_ipam = ipam_conf(raw_conf)
        if conf_for_ipam is not None:
            ctx.ipam.delete(conf_for_ipam, ipam_env)


__all__ = ["Kinds", "add", "delete", "device_locks", "release"]
