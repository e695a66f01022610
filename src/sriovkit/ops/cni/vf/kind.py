"""The VF kind: one SR-IOV VF into a pod (its netdev, or its PCI address in DPDK mode)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path

from sriovkit.errors import CheckFailed, InvalidInput
from sriovkit.host.netlink import LinkInfo, Netlink
from sriovkit.model.attachment import AppliedState, AttachmentKey, VfAttachment, VfOriginalState
from sriovkit.model.cni import CniEnv, NetConf
from sriovkit.model.cni_result import CniResult
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.kind import Kind
from sriovkit.ops.cni.rollback import Rollback
from sriovkit.ops.cni.vf.check import verify
from sriovkit.ops.cni.vf.device import (
    VfTarget,
    mac_while_trusted,
    needs_trust_for_mac,
    require_netdev,
    resolve_vf,
    restore_pf_side,
    undo_move,
)
from sriovkit.ops.cni.vf.pod import move_in, pod_result
from sriovkit.ops.cni.vf.podres import chosen_vf
from sriovkit.ops.cni.vf.restore import restore_vf
from sriovkit.ops.vfconfig import apply_vf, read_vf


class VfKind(Kind[VfTarget, VfAttachment]):
    """ADD configures the VF from its PF, then moves its netdev into the pod in one message."""

    name = "vf"

    def choose(
        self, ctx: AttachContext, conf: NetConf, env: CniEnv
    ) -> AbstractContextManager[NetConf]:
        """A `resourceName` config without deviceID: one of the pod's VFs, under the pod's
        lock (ops/cni/vf/podres.py); any other config as it is."""
        if conf.device_id is not None or conf.resource_name is None:
            return nullcontext(conf)
        return chosen_vf(ctx, conf, env)

    def resolve(self, ctx: AttachContext, conf: NetConf) -> VfTarget:
        """The VF `deviceID` names, through sysfs (code 7 when the host has no such VF)."""
        if conf.device_id is None:
            raise InvalidInput("deviceID", "missing: ADD needs the VF's PCI address")
        return resolve_vf(ctx.sysfs, conf.device_id)

    def devices(self, target: VfTarget) -> Sequence[str]:
        """The VF."""
        return (str(target.pci),)

    def describe(self, devices: Sequence[str]) -> str:
        """`VF 0000:3b:02.1`."""
        return "VF " + ", ".join(devices)

    def needs_pod(self, target: VfTarget) -> bool:
        """A kernel-driver VF moves; a DPDK one (vfio-pci, uio) stays with its driver."""
        return not target.dpdk

    def new_record(
        self, ctx: AttachContext, conf: NetConf, target: VfTarget, key: AttachmentKey, netns: Path
    ) -> VfAttachment:
        """The VF's PF-side attributes and netdev (name, MAC, MTU, state, altnames) as now."""
        return VfAttachment(
            container_id=key.container_id,
            ifname=key.ifname,
            network=conf.name,
            device_id=str(target.pci),
            pf=target.pf,
            vf_index=target.index,
            netns=str(netns),
            applied=AppliedState.from_settings(conf.settings, conf.mtu),
            original=_capture(ctx, target, pf_side=not conf.settings.empty),
            boot_id=ctx.boot_id,
        )

    def host_side(
        self, ctx: AttachContext, conf: NetConf, target: VfTarget, record: VfAttachment,
        rollback: Rollback, to_pod: bool,
    ) -> bool:  # fmt: skip
        """The PF-side attributes; True when the VF stays trusted until its netdev has its MAC.

        The netdev then takes its MAC while the VF is trusted and still in the host, so the pod
        never holds a VF trusted for a moment it should not be (see `needs_trust_for_mac`).
        """
        settings = conf.settings
        hold = (
            to_pod
            and settings.mac is not None
            and needs_trust_for_mac(settings, record.original.trust)
        )
        if not settings.empty:
            applied = replace(settings, trust=True) if hold else settings
            apply_vf(ctx.netlink, target.pf, target.index, applied)
            rollback.undo("restoring the PF-side attributes", restore_pf_side, ctx.netlink, record)
        return hold

    def into_pod(
        self, ctx: AttachContext, pod: Netlink, conf: NetConf, record: VfAttachment,
        netns: Path, state: bool, rollback: Rollback,
    ) -> LinkInfo:  # fmt: skip
        """The netdev into the pod: renamed, MTU, MAC (unless set while trusted), up."""
        # Registered before the move: the kernel moves the netdev first, then sets its MAC and
        # MTU and renames it last, so a refused MAC, MTU or name returns an error with the VF
        # already in the pod; the undo finds it there by device.
        rollback.undo("moving the VF back", undo_move, ctx.netlink, record, ctx.host_netns)
        mac = conf.settings.mac
        if state:
            mac_while_trusted(ctx.netlink, record, mac)
            mac = None
        return move_in(ctx, pod, conf, record, netns, mac)

    def result(
        self, ctx: AttachContext, conf: NetConf, record: VfAttachment, link: LinkInfo | None,
        ipam: CniResult,
    ) -> CniResult:  # fmt: skip
        """The VF's interface (with its PCI address) and IPAM's addresses, routes and DNS."""
        return pod_result(ctx, conf, record, link, ipam)

    def restore(
        self,
        ctx: AttachContext,
        record: VfAttachment,
        unaddressed: Callable[[], None] | None = None,
    ) -> None:
        """PF side, then the netdev home (see ops/cni/vf/restore.py)."""
        restore_vf(ctx, record, unaddressed)

    def check_conf(self, conf: NetConf, record: VfAttachment) -> None:
        """The config's deviceID, if any, must be the recorded VF."""
        if conf.device_id is not None and str(conf.device_id) != record.device_id:
            raise CheckFailed(
                f"{record.key} holds VF {record.device_id}, but the config names {conf.device_id}"
            )

    def verify(self, ctx: AttachContext, record: VfAttachment, prev: CniResult | None) -> None:
        """The VF in the pod as recorded, and its PF-side attributes as applied."""
        verify(ctx, record, prev)


def _capture(ctx: AttachContext, vf: VfTarget, *, pf_side: bool) -> VfOriginalState:
    """The VF as it is: its PF-side attributes only where ADD will change some (`pf_side`)
    or the VF has no netdev (DPDK), as reading them makes the kernel gather every VF's."""
    info = read_vf(ctx.netlink, vf.pf, vf.index) if pf_side or vf.dpdk else None
    if vf.dpdk:
        return VfOriginalState.capture(info, name="", effective_mac="", mtu=0)
    link = ctx.netlink.link(require_netdev(vf))
    return VfOriginalState.capture(
        info, name=link.name, effective_mac=link.mac, mtu=link.mtu, up=link.up,
        altnames=link.altnames,
    )  # fmt: skip


__all__ = ["VfKind"]
