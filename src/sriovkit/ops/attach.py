"""CNI ADD / DEL / CHECK / GC / STATUS of the `sriov` plugin: a VF into a pod and back.

ADD records the VF's original state on disk *before* touching it, then applies each step with an
undo registered on an ExitStack as the step succeeds; any failure unwinds what was done (IPAM DEL
included) and re-raises. A crash (process killed) between steps leaves a record that DEL or GC
uses to restore the VF exactly. Every operation holds the VF's lock (`StateStore.lock_vf`).

Decisions (see also the module docs of `restore` and `attach_vf`):

- A VF allocated to another (container, ifname) whose pod netns still exists is refused with
  Busy (CNI code 11, "try again later"): the usual cause is the previous pod's DEL still being
  on its way, and the runtime's retry succeeds once it ran. An allocation whose netns is gone is
  released first (restored as DEL would; IPAM released when it belongs to the same network).
- ADD again for the same (container, ifname) and netns while the attachment is intact returns
  the recorded result (a runtime retrying an ADD whose answer it lost); an attachment left
  half-done by a crash is released and the ADD redone.
- The same (container, ifname) already holding a *different* VF is refused (code 7): the
  runtime must DEL it first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from sriovkit.errors import Busy, HostError, InvalidInput, SriovkitError
from sriovkit.host.ipam import ipam_type
from sriovkit.host.netlink import LinkInfo, Netlink
from sriovkit.model.attachment import (
    AllocationRecord,
    AppliedState,
    AttachmentKey,
    AttachmentRecord,
    VfOriginalState,
)
from sriovkit.model.cni import CniEnv, NetConf
from sriovkit.model.cni_result import (
    CURRENT_VERSION,
    CniResult,
    parse_result,
    to_version,
)
from sriovkit.ops.attach_check import check, verify
from sriovkit.ops.attach_ipam import AddIpam
from sriovkit.ops.attach_pod import (
    announce_addresses,
    configure_addresses,
    move_in,
    pod_result,
    require_free_name,
)
from sriovkit.ops.attach_vf import (
    VfTarget,
    mac_while_trusted,
    needs_trust_for_mac,
    require_netdev,
    resolve_vf,
    restore_pf_side,
    undo_move,
)
from sriovkit.ops.restore import (
    AttachContext,
    PluginNotAvailable,
    delete,
    gc,
    ipam_conf,
    ipam_env_of,
    record_env,
    release,
    status,
)
from sriovkit.ops.rollback import Rollback, failed
from sriovkit.ops.vfconfig import apply_vf, read_vf


def _step(ctx: AttachContext, name: str) -> None:
    if ctx.checkpoint is not None:
        ctx.checkpoint(name)


def _wrap(exc: BaseException, what: str) -> SriovkitError:
    if isinstance(exc, SriovkitError):
        return exc
    return HostError(f"{what}: {type(exc).__name__}: {exc}")


# --- ADD -----------------------------------------------------------------------------------


def add(ctx: AttachContext, env: CniEnv, conf: NetConf, raw_conf: Mapping[str, Any]) -> CniResult:
    """CNI ADD: attach VF `conf.device_id` to the pod as `env.ifname`; returns the result."""
    key = env.key
    if env.netns is None:
        raise InvalidInput("CNI_NETNS", "ADD needs the pod's network namespace")
    if conf.device_id is None:
        raise InvalidInput("deviceID", "missing: ADD needs the VF's PCI address")
    netns = Path(env.netns)
    vf = resolve_vf(ctx.sysfs, conf.device_id)
    try:
        with (
            ctx.store.lock_attachment(key, ctx.lock_timeout),
            ctx.store.lock_vf(vf.pci, ctx.lock_timeout),
        ):
            if ctx.still_wanted is not None:
                ctx.still_wanted()  # the runtime gave up on this ADD: its DEL may have run
            previous = _reclaim(ctx, vf, key, netns, raw_conf)
            if previous is not None:
                return previous
            vf = resolve_vf(ctx.sysfs, vf.pci)  # the VF may have just come back from a pod
            return _attach(ctx, env, conf, raw_conf, vf, netns)
    except SriovkitError:
        raise
    except Exception as exc:  # a bug or an unexpected OS error: still a CNI error, no traceback
        raise _wrap(exc, f"ADD of VF {vf.pci} failed") from exc


def _reclaim(
    ctx: AttachContext,
    vf: VfTarget,
    key: AttachmentKey,
    netns: Path,
    raw_conf: Mapping[str, Any],
) -> CniResult | None:
    """Deal with existing records of this VF / attachment; a CniResult means 'already done'."""
    store = ctx.store
    mine = store.read_attachment(key)
    if mine is not None and mine.device_id != str(vf.pci):
        raise InvalidInput(
            "CNI_IFNAME",
            f"{key} already has VF {mine.device_id} attached (netns {mine.netns}); DEL it first",
        )
    alloc = store.read_allocation(vf.pci)
    if alloc is None:
        if mine is not None:  # a record without allocation: a crash during DEL; finish it
            release(ctx, mine, raw_conf, record_env(mine))
        return None
    holder = store.read_attachment(alloc.key)
    if holder is None or holder.device_id != alloc.device_id:
        store.delete_allocation(vf.pci)  # stale: an ADD died before writing its attachment
        return None
    alive = ctx.netns_alive(Path(holder.netns))
    if alloc.key == key:
        if alive and holder.netns == str(netns) and holder.result is not None:
            with contextlib.suppress(SriovkitError):
                verify(ctx, holder)
                return parse_result(holder.result, "recorded result")
        release(ctx, holder, raw_conf, record_env(holder))
        return None
    if alive:
        raise Busy(
            f"VF {vf.pci} is already attached to container {holder.container_id} "
            f"as {holder.ifname} (netns {holder.netns}); try again once it is released"
        )
    # Its pod is gone but nobody ran DEL: give the VF back first. IPAM can be released only
    # with the same network's config (the record does not keep the IPAM config).
    same_net = holder.network == (raw_conf.get("name") if raw_conf else None)
    release(ctx, holder, raw_conf if same_net else None, record_env(holder))
    return None


def _capture(ctx: AttachContext, vf: VfTarget) -> VfOriginalState:
    info = read_vf(ctx.netlink, vf.pf, vf.index)
    if vf.dpdk:
        return VfOriginalState.capture(info, name="", effective_mac="", mtu=0)
    link = ctx.netlink.link(require_netdev(vf))
    return VfOriginalState.capture(
        info, name=link.name, effective_mac=link.mac, mtu=link.mtu, up=link.up,
        altnames=link.altnames,
    )  # fmt: skip


def _attach(
    ctx: AttachContext,
    env: CniEnv,
    conf: NetConf,
    raw_conf: Mapping[str, Any],
    vf: VfTarget,
    netns: Path,
) -> CniResult:
    key = env.key
    store = ctx.store
    record = _new_record(ctx, conf, vf, key, netns)
    pod: Netlink | None = None
    if not vf.dpdk:
        pod = ctx.netlink.in_netns(netns)
    try:
        with ExitStack() as stack:
            rollback = Rollback(stack)
            undo = rollback.undo
            if pod is not None:
                stack.callback(pod.close)
                require_free_name(pod, key.ifname, netns)
            # Allocation first, attachment second; DEL deletes them in the opposite order, so
            # an attachment record always has its allocation (see restore.release).
            store.write_allocation(
                AllocationRecord(
                    device_id=record.device_id,
                    container_id=key.container_id,
                    ifname=key.ifname,
                    network=conf.name,
                )
            )
            rollback.stack.callback(rollback.forget, store, key, vf.pci)
            store.write_attachment(record)
            _step(ctx, "recorded")
            hold = _configure_pf(ctx, conf, vf, record, rollback, pod is not None)
            _step(ctx, "vf-configured")
            ipam = _start_ipam(ctx, env, conf, raw_conf, rollback)
            pod_link: LinkInfo | None = None
            if pod is not None:
                # Registered before the move: the kernel moves the netdev first, then sets its
                # MAC and MTU and renames it last, so a refused MAC, MTU or name returns an
                # error with the VF already in the pod; the undo finds it there by device.
                undo("moving the VF back", undo_move, ctx.netlink, record, ctx.host_netns)
                mac = conf.settings.mac
                if hold:
                    mac_while_trusted(ctx.netlink, record, mac)
                    mac = None
                pod_link = move_in(ctx, pod, conf, record, netns, mac)
                _step(ctx, "moved")
            ipam_result = CniResult()
            if ipam is not None:
                ipam_result = parse_result(ipam.result(), "IPAM result")
                _step(ctx, "ipam")
            result = pod_result(ctx, conf, record, pod_link, ipam_result)
            if pod is not None and ipam_result.ips:
                configure_addresses(pod, key.ifname, ipam_result)
                _step(ctx, "configured")
                if ctx.announce:
                    announce_addresses(netns, key.ifname, result)
                    _step(ctx, "announced")
            store.write_attachment(
                msgspec_replace(record, result=to_version(result, CURRENT_VERSION))
            )
            _step(ctx, "committed")
            stack.pop_all()
            if pod is not None:
                pod.close()
            return result
    except Exception as exc:
        raise failed(_wrap(exc, f"ADD of VF {vf.pci} for {key} failed"), rollback, vf.pci) from exc


def _configure_pf(
    ctx: AttachContext,
    conf: NetConf,
    vf: VfTarget,
    record: AttachmentRecord,
    rollback: Rollback,
    netdev: bool,
) -> bool:
    """The PF-side attributes; True when the VF is left trusted until its netdev has its MAC.

    The netdev then takes its MAC while the VF is trusted and still in the host, so the pod
    never holds a VF trusted for a moment it should not be (see `needs_trust_for_mac`).
    """
    settings = conf.settings
    hold = (
        netdev and settings.mac is not None and needs_trust_for_mac(settings, record.original.trust)
    )
    if not settings.empty:
        apply_vf(ctx.netlink, vf.pf, vf.index, replace(settings, trust=True) if hold else settings)
        rollback.undo("restoring the PF-side attributes", restore_pf_side, ctx.netlink, record)
    return hold


def _start_ipam(
    ctx: AttachContext,
    env: CniEnv,
    conf: NetConf,
    raw_conf: Mapping[str, Any],
    rollback: Rollback,
) -> AddIpam | None:
    """IPAM ADD, started early where the plugin allows (it then overlaps the netns move)."""
    if conf.ipam is None:
        return None
    conf_for_ipam = ipam_conf(raw_conf) or raw_conf
    ctx.ipam.find(ipam_type(conf_for_ipam))  # a missing plugin allocated nothing
    ipam = AddIpam(ctx.ipam, conf_for_ipam, ipam_env_of(env))
    # Registered before the call: a plugin that fails half-way may hold an address, and IPAM
    # DEL of nothing is a no-op.
    rollback.undo("releasing IPAM", ipam.undo, vf=False)
    ipam.start_early()
    return ipam


def _new_record(
    ctx: AttachContext, conf: NetConf, vf: VfTarget, key: AttachmentKey, netns: Path
) -> AttachmentRecord:
    """The pending attachment record: everything DEL needs, written before anything changes."""
    return AttachmentRecord(
        container_id=key.container_id,
        ifname=key.ifname,
        network=conf.name,
        device_id=str(vf.pci),
        pf=vf.pf,
        vf_index=vf.index,
        netns=str(netns),
        applied=AppliedState.from_settings(conf.settings, conf.mtu),
        original=_capture(ctx, vf),
    )


def msgspec_replace(record: AttachmentRecord, **changes: Any) -> AttachmentRecord:
    """`record` with `changes` (msgspec.structs.replace, validated again)."""
    import msgspec  # noqa: PLC0415 - already loaded by the records

    return msgspec.structs.replace(record, **changes)


__all__ = [
    "AttachContext",
    "PluginNotAvailable",
    "add",
    "check",
    "delete",
    "gc",
    "status",
]
