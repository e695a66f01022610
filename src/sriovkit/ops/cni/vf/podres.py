"""The `sriov` CNI without Multus: an ADD's VF chosen among the devices kubelet gave the pod.

A config with `resourceName` and no deviceID (nor a readable device-info file) names a pool,
not a VF. The device plugin's Allocate told kubelet which VFs the pod got; kubelet's
PodResources API (`ctx.pod_devices`, host/podresources.py) lists them for the pod named in
CNI_ARGS, and the ADD takes the first one no other interface of this pod already holds.

Locking. The lifecycle locks a VF only after `resolve` has named it, so two ADDs of one pod
(eth1 and eth2 of the same resource, run in parallel by a runtime or by two agent workers) could
both choose the first free VF, and the second would then find it attached to its sibling and
fail with Busy. So the choice is made under the pod's lock (`StateStore.lock_pod`, taken before
any other lock and held for the whole ADD): the second ADD chooses only once the first has
written its allocation, and takes the next VF. DEL, CHECK and GC do not take it: they work from
the records, never from PodResources. Different pods hold different devices (kubelet's
accounting), so ADDs of different pods never wait on each other beyond the shared lock stripes.

Which device, in kubelet's order:
1. one already allocated to this very (container, ifname): a retried ADD, answered from its
   record by the lifecycle's idempotent path;
2. else the first with no live allocation;
3. else the first not held by another interface of this sandbox: a previous pod's leftover,
   which the lifecycle reclaims (its pod is gone) or refuses with Busy (its DEL is on its way);
4. else none: the pod asked for fewer devices of the resource than it has networks using it.

Error codes (the CNI spec's): the pod holding no device of the resource, or none left, is code 7
(invalid network config: the pod spec does not request what the network needs, and retrying
cannot help); kubelet not answering, or its socket missing, is code 11 (try again later).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.cni import CniEnv, NetConf, pod_of
from sriovkit.model.pci import PciAddress
from sriovkit.ops.cni.context import AttachContext


@contextmanager
def chosen_vf(ctx: AttachContext, conf: NetConf, env: CniEnv) -> Iterator[NetConf]:
    """`conf` with `device_id` set to the pod's VF chosen as the module doc says, the pod's
    lock held until the `with` body (the rest of the ADD) ends."""
    resource = conf.resource_name
    if resource is None:
        raise InvalidInput("deviceID", "missing: ADD needs the VF's PCI address")
    namespace, name = pod_of(env, resource)
    if ctx.pod_devices is None:
        raise HostError(f"cannot find pod {namespace}/{name}'s {resource}: no PodResources client")
    # Asked before the lock: kubelet's answer does not depend on our records, and a slow
    # kubelet then holds up only this ADD, not its siblings.
    ids = ctx.pod_devices.devices(namespace, name, resource)
    devices = _pci_ids(ids, namespace, name, resource)
    with ctx.store.lock_pod(namespace, name, ctx.lock_timeout):
        pick = choose(ctx.store, devices, env.key)
        if pick is None:
            raise InvalidInput(
                "resourceName",
                f"pod {namespace}/{name} holds {len(devices)} {resource} device(s) "
                f"({', '.join(devices)}), all attached to its other interfaces",
            )
        yield replace(conf, device_id=PciAddress.parse(pick, "resourceName"))


def _pci_ids(ids: Sequence[str], namespace: str, name: str, resource: str) -> list[str]:
    """The canonical PCI addresses among `ids`; code 7 naming the pod when there are none."""
    devices = [str(pci) for pci in map(PciAddress.try_parse, ids) if pci is not None]
    if not devices:
        got = f"only {', '.join(ids)}, not PCI addresses" if ids else "none"
        raise InvalidInput(
            "resourceName",
            f"pod {namespace}/{name} holds no {resource} device according to kubelet ({got}); "
            f"does the pod request {resource} in its resources?",
        )
    return devices


def choose(store: StateStore, devices: Sequence[str], key: AttachmentKey) -> str | None:
    """The device for attachment `key` among the pod's `devices` (rules 1-4 of the module doc);
    call it with the pod's lock held."""
    holders = {device: _holder(store, device) for device in devices}
    for device, holder in holders.items():
        if holder == key:
            return device
    for device, holder in holders.items():
        if holder is None:
            return device
    for device, holder in holders.items():
        if holder is not None and holder.container_id != key.container_id:
            return device
    return None


def _holder(store: StateStore, device: str) -> AttachmentKey | None:
    """Who holds `device`: its allocation's attachment, if that attachment records it.

    An allocation whose attachment record is missing or names other devices is the leftover of
    an ADD that died before writing its attachment; the lifecycle deletes it, so it holds nothing.
    """
    alloc = store.read_allocation(device)
    if alloc is None:
        return None
    record = store.read_attachment(alloc.key)
    if record is None or device not in record.devices:
        return None
    return alloc.key


__all__ = ["choose", "chosen_vf"]
