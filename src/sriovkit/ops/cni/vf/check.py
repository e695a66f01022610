"""CNI CHECK of the `sriov` plugin: is the VF still in the pod as ADD left it?

Compares the kernel's and the PF's view with the attachment record: the netdev in the pod netns
under the recorded name, with the recorded MAC, MTU and addresses, and the PF-side attributes
ADD applied. Each mismatch is named (which VF, which field, recorded vs found).
"""

from __future__ import annotations

from pathlib import Path

from sriovkit.errors import CheckFailed
from sriovkit.model.attachment import VfAttachment
from sriovkit.model.cni_result import CniResult, parse_result
from sriovkit.model.vf import ATTR_FIELDS, not_applied, show_value
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.vfconfig import read_vf


def _expected(prev: CniResult | None, record: VfAttachment) -> tuple[str | None, list[str]]:
    """What the runtime's prevResult says our interface should look like: (MAC, addresses).

    The spec has CHECK consult prevResult for the expected interfaces and addresses; only the
    entry for this ifname in this sandbox is ours (a chain may list others).
    """
    if prev is None:
        return None, []
    for index, iface in enumerate(prev.interfaces):
        if iface.name == record.ifname and iface.sandbox in (None, record.netns):
            return iface.mac, [ip.address for ip in prev.ips if ip.interface == index]
    return None, []


def verify(ctx: AttachContext, record: VfAttachment, prev: CniResult | None = None) -> None:
    """Raise CheckFailed naming the differences between the host and `record` (and `prev`)."""
    where = f"VF {record.device_id} ({record.key}, netns {record.netns})"
    if record.result is None:
        raise CheckFailed(f"{where}: its ADD did not complete")
    result = parse_result(record.result, "recorded result")
    problems: list[str] = []
    netns = Path(record.netns)
    if not ctx.netns_alive(netns):
        raise CheckFailed(f"{where}: the pod netns no longer exists")
    if record.original.name:
        pod = ctx.netlink.in_netns(netns)
        try:
            # By the VF's device, never by name: the pod may have renamed it or made another
            # link of the recorded name.
            link = pod.find_device(record.device_id, hint=record.ifname)
            if link is None:
                raise CheckFailed(f"{where}: the VF is not in the pod")
            if link.name != record.ifname:
                raise CheckFailed(
                    f"{where}: the VF is called {link.name} in the pod, not {record.ifname}"
                )
            iface = result.interfaces[0] if result.interfaces else None
            if iface is not None and iface.mac is not None and link.mac != iface.mac:
                problems.append(f"MAC is {link.mac}, recorded {iface.mac}")
            if iface is not None and iface.mtu is not None and link.mtu != iface.mtu:
                problems.append(f"MTU is {link.mtu}, recorded {iface.mtu}")
            have = {a.cidr for a in pod.addresses(record.ifname)}
            for ip in result.ips:
                if ip.address not in have:
                    problems.append(f"address {ip.address} is missing")
            prev_mac, prev_ips = _expected(prev, record)
            if prev_mac is not None and link.mac != prev_mac:
                problems.append(f"MAC is {link.mac}, prevResult says {prev_mac}")
            for address in prev_ips:
                if address not in have:
                    problems.append(f"address {address} from prevResult is missing")
        finally:
            pod.close()
    wanted = record.applied.vf_settings()
    if record.pf is not None and record.vf_index is not None and not wanted.empty:
        current = read_vf(ctx.netlink, record.pf, record.vf_index)
        for attr in not_applied(current, wanted):
            for name in ATTR_FIELDS[attr]:
                want, got = getattr(wanted, name), getattr(current, name)
                if want is not None and got != want:
                    problems.append(
                        f"PF-side {name} is {show_value(got)}, applied {show_value(want)}"
                    )
    if problems:
        raise CheckFailed(f"{where} on {record.pf}: {'; '.join(problems)}")


__all__ = ["verify"]
