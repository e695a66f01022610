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
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sriovkit.errors import Busy, HostError, InvalidInput, SriovkitError
from sriovkit.host.ipam import ipam_type
from sriovkit.host.netlink import LinkInfo, Netlink
from sriovkit.host.netns import announce
from sriovkit.host.state import StateStore
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
    Interface,
    IpConfig,
    parse_result,
    to_version,
)
from sriovkit.model.pci import PciAddress
from sriovkit.ops.attach_check import check, verify
from sriovkit.ops.attach_ipam import AddIpam
from sriovkit.ops.attach_vf import (
    VfTarget,
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
        with ctx.store.lock_vf(vf.pci, ctx.lock_timeout):
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
    try:
        with ExitStack() as stack:
            rollback = _Rollback(stack)
            undo = rollback.undo
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
            if not conf.settings.empty:
                apply_vf(ctx.netlink, vf.pf, vf.index, conf.settings)
                undo("restoring the PF-side attributes", restore_pf_side, ctx.netlink, record)
            _step(ctx, "vf-configured")
            ipam: AddIpam | None = None
            if conf.ipam is not None:
                conf_for_ipam = ipam_conf(raw_conf) or raw_conf
                ctx.ipam.find(ipam_type(conf_for_ipam))  # a missing plugin allocated nothing
                ipam = AddIpam(ctx.ipam, conf_for_ipam, ipam_env_of(env))
                # Registered before the call: a plugin that fails half-way may hold an
                # address, and IPAM DEL of nothing is a no-op.
                undo("releasing IPAM", ipam.undo, vf=False)
                ipam.start_early()  # overlaps the netns move below when the plugin allows
            pod: Netlink | None = None
            pod_link: LinkInfo | None = None
            if not vf.dpdk:
                # Registered before the move: the kernel moves and renames the netdev first
                # and applies MTU/MAC/up after, so a refused MTU returns an error with the VF
                # already in the pod; the undo finds it wherever it is.
                undo("moving the VF back", undo_move, ctx.netlink, record, ctx.host_netns)
                pod, pod_link = _move_in(ctx, conf, record, netns)
                stack.callback(pod.close)
                _step(ctx, "moved")
            ipam_result = CniResult()
            if ipam is not None:
                ipam_result = parse_result(ipam.result(), "IPAM result")
                _step(ctx, "ipam")
            result = _result(ctx, conf, record, pod_link, ipam_result)
            if pod is not None and ipam_result.ips:
                _configure(pod, key.ifname, ipam_result)
                _step(ctx, "configured")
                if ctx.announce:
                    _announce(netns, key.ifname, result)
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
        raise _failed(exc, rollback, vf, key) from exc


class _Rollback:
    """Undo callbacks on an ExitStack that keep unwinding when one fails, and remember it.

    `vf_failures` are undos of the VF itself (PF side, netdev): the VF was not given back.
    `other_failures` (IPAM DEL) leave the VF returned: it must not stay allocated for them.
    """

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.vf_failures: list[str] = []
        self.other_failures: list[str] = []

    def undo(self, what: str, fn: Callable[..., object], *args: Any, vf: bool = True) -> None:
        failures = self.vf_failures if vf else self.other_failures

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep unwinding; report every undo that failed
                failures.append(f"{what}: {exc}")

        self.stack.callback(run)

    def forget(self, store: StateStore, key: AttachmentKey, pci: PciAddress) -> None:
        if not self.vf_failures:  # a VF not given back keeps its record, for DEL/GC to finish
            store.delete_attachment(key)
            store.delete_allocation(pci)


def _failed(exc: Exception, rollback: _Rollback, vf: VfTarget, key: AttachmentKey) -> SriovkitError:
    err = _wrap(exc, f"ADD of VF {vf.pci} for {key} failed")
    errno = getattr(err, "errno", None)
    if rollback.vf_failures:
        failures = rollback.vf_failures + rollback.other_failures
        return HostError(
            f"{err}; undoing it failed too ({'; '.join(failures)}): VF {vf.pci} keeps its "
            "record so that DEL or GC can give it back",
            errno,
        )
    if rollback.other_failures:
        return HostError(
            f"{err}; VF {vf.pci} was given back, but undoing the rest failed "
            f"({'; '.join(rollback.other_failures)}): its addresses may stay allocated "
            "until the IPAM plugin's GC",
            errno,
        )
    return err


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


def _move_in(
    ctx: AttachContext, conf: NetConf, record: AttachmentRecord, netns: Path
) -> tuple[Netlink, LinkInfo]:
    """One message: into the pod, renamed, MTU, MAC, up; then drop the altnames it carried.

    Returns the pod's seam and the VF's link as the pod sees it (for the result).
    """
    ctx.netlink.move_link(
        record.original.name,
        netns,
        new_name=record.ifname,
        mtu=conf.mtu,
        mac=conf.settings.mac,
        up=True,
    )
    pod = ctx.netlink.in_netns(netns)
    try:
        # The kernel keeps altnames across a netns move; the host's name for the VF means
        # nothing in the pod and may clash with the pod's own names later.
        link = pod.link(record.ifname)
        if link.altnames:
            for alt in link.altnames:
                pod.del_altname(record.ifname, alt)
            link = pod.link(record.ifname)
    except BaseException:
        pod.close()  # the move-back undo registered before the move gives the VF back
        raise
    return pod, link


def _result(
    ctx: AttachContext,
    conf: NetConf,
    record: AttachmentRecord,
    link: LinkInfo | None,
    ipam: CniResult,
) -> CniResult:
    if link is not None:
        iface = Interface(
            name=record.ifname,
            mac=link.mac,
            mtu=link.mtu,
            sandbox=record.netns,
            pci_id=record.device_id,
        )
    else:  # DPDK: the VF stays with its userspace driver; the pod opens it by PCI address
        mac = read_vf(ctx.netlink, record.pf or "", record.vf_index or 0).mac
        iface = Interface(
            name=record.ifname, mac=mac, sandbox=record.netns, pci_id=record.device_id
        )
    ips = tuple(IpConfig(address=ip.address, gateway=ip.gateway, interface=0) for ip in ipam.ips)
    dns = conf.dns if conf.dns is not None and not conf.dns.empty else ipam.dns
    return CniResult(interfaces=(iface,), ips=ips, routes=ipam.routes, dns=dns)


def _configure(pod: Netlink, ifname: str, ipam: CniResult) -> None:
    """Addresses, then routes (a route's gateway must be reachable through an address)."""
    for ip in ipam.ips:
        pod.add_address(ifname, ip.address)
    for route in ipam.routes:
        gateway = route.gw
        if gateway is None:  # the reference plugins use the same family's IP gateway
            family = ":" in route.dst
            gateway = next(
                (ip.gateway for ip in ipam.ips if ip.gateway and (":" in ip.gateway) == family),
                None,
            )
        pod.add_route(route.dst, gateway=gateway, dev=ifname)


def _announce(netns: Path, ifname: str, result: CniResult) -> None:
    mac = result.interfaces[0].mac
    if mac is None:
        return
    addrs = [ip.address.partition("/")[0] for ip in result.ips]
    # Best effort, like every CNI plugin's ARP announcement: a pod without carrier yet still
    # gets its network; neighbours then learn its MAC from its first packet.
    with contextlib.suppress(HostError):
        announce(netns, ifname, mac, addrs)


__all__ = [
    "AttachContext",
    "PluginNotAvailable",
    "add",
    "check",
    "delete",
    "gc",
    "status",
]
