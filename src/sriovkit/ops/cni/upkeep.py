"""CNI CHECK, GC and STATUS for any kind of attachment: the verbs that look after attachments
rather than make or remove them (ADD and DEL: lifecycle.py, whose locks and release they use)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from sriovkit.errors import (
    CheckFailed,
    HostError,
    InvalidInput,
    PluginNotAvailable,
    SriovkitError,
)
from sriovkit.model.cni import CniEnv, NetConf
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.ipam import ipam_conf, ipam_env_of, record_env
from sriovkit.ops.cni.kind import AnyKind
from sriovkit.ops.cni.lifecycle import Kinds, device_locks, release


def gc(ctx: AttachContext, kinds: Kinds, conf: NetConf, raw_conf: Mapping[str, Any]) -> None:
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
            with device_locks(ctx, record.devices):
                again = store.read_attachment(record.key)
                if again is not None:
                    release(ctx, kinds, again, raw_conf, record_env(again))
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
            # since the listing, and the allocation may now be a valid attachment's.
            current = store.read_allocation(alloc.pci)
            if current is None or current.key != alloc.key or current.network != conf.name:
                continue
            holder = store.read_attachment(current.key)
            if holder is None or current.device_id not in holder.devices:
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


def check(
    ctx: AttachContext, kind: AnyKind, env: CniEnv, conf: NetConf, raw_conf: Mapping[str, Any]
) -> None:
    """CNI CHECK: verify the attachment of (container, ifname) and, with IPAM, IPAM CHECK."""
    key = env.key
    record = ctx.store.read_attachment(key)
    if record is None:
        raise CheckFailed(f"no attachment recorded for {key}: was ADD run?")
    kind.check_conf(conf, record)
    with device_locks(ctx, record.devices):
        record = ctx.store.read_attachment(key)
        if record is None:
            raise CheckFailed(f"the attachment {key} was deleted during CHECK")
        if ctx.earlier_boot(record.boot_id):
            raise CheckFailed(
                f"the attachment {key} is from an earlier boot (boot id {record.boot_id}, "
                f"this boot is {ctx.boot_id}): what it recorded is gone"
            )
        kind.verify(ctx, record, conf.prev_result)
    conf_for_ipam = ipam_conf(raw_conf)
    if conf.ipam is not None and conf_for_ipam is not None:
        ctx.ipam.check(conf_for_ipam, ipam_env_of(env))


__all__ = ["check", "gc", "status"]
