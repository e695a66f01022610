"""Giving a VF back: the VF kind's part of CNI DEL, GC and ADD's stale cleanup.

The order, for every path alike (the lifecycle then releases IPAM and deletes the records):

1. PF-side attributes (admin MAC first, trust last: see `pf_side_restored`),
2. the netdev: moved back from the pod netns in one message, or, when the pod netns is gone,
   found in the host netns (a real VF comes back there on its own) and renamed back; a VF
   still bound to its kernel driver with no netdev in the host yet is on its way back from the
   dying netns: Busy (code 11), records kept, so a DEL retry or GC finishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sriovkit.errors import Busy, HostError
from sriovkit.model.attachment import VfAttachment
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.vf.device import (
    bring_home,
    find_in_host,
    fix_in_host,
    on_its_way_back,
    original_up,
    pf_side_restored,
    restore_altnames,
)


def restore_vf(
    ctx: AttachContext, record: VfAttachment, unaddressed: Callable[[], None] | None = None
) -> None:
    """Put the VF of `record` back as recorded (PF side, then netdev); raise if it cannot.

    `unaddressed` is called once the VF in the pod has none of the recorded addresses, just
    before it moves home (see `bring_home`).
    """
    if not ctx.sysfs.exists(record.pci):
        return  # the VF itself is gone (sriov_numvfs lowered): nothing left to restore
    with pf_side_restored(ctx.netlink, record):
        if record.original.name:  # else DPDK mode: the VF never had a netdev to move
            _netdev_home(ctx, record, unaddressed)


def _netdev_home(
    ctx: AttachContext, record: VfAttachment, unaddressed: Callable[[], None] | None
) -> None:
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
                if bring_home(ctx.netlink, pod, record, ctx.host_netns, unaddressed):
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


__all__ = ["restore_vf"]
