"""The VF side of CNI attachment: find a VF from its PCI address, and give it back as it was.

Used by the VF kind (ops/cni/vf/kind.py) for ADD, its rollback, DEL, GC and stale-allocation
cleanup, so every path restores a VF the same way.

Where a VF netdev is: sysfs is only the host netns's view (on a real host a netdev that moved into
a pod vanishes from `/sys/class/net`; in veth mode the tree keeps its original name), so the
netdev name is read from sysfs *before* ADD and kept in the attachment record; afterwards the
record, not sysfs, says where to look.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from sriovkit.errors import HostError, InvalidInput, NotFound, SriovkitError
from sriovkit.host.netlink import LinkChange, LinkInfo, Links, Netlink, VfAttrs
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.attachment import VfAttachment, VfOriginalState
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import VfSettings
from sriovkit.ops.vf import USERSPACE_DRIVERS
from sriovkit.ops.vfconfig import apply_vf


@dataclass(frozen=True, slots=True)
class VfTarget:
    """A VF resolved through sysfs: its PF, index, PF netdev, driver and host netdev (if any)."""

    pci: PciAddress
    pf_pci: PciAddress
    pf: str  # the PF netdev VF attributes are set through
    index: int
    driver: str | None
    netdev: str | None  # None in DPDK mode (vfio-pci / uio own the VF: no netdev)

    @property
    def dpdk(self) -> bool:
        """True when a userspace driver owns the VF (no netdev to move)."""
        return self.driver in USERSPACE_DRIVERS


def resolve_vf(sysfs: Sysfs, pci: PciAddress) -> VfTarget:
    """Resolve VF `pci` to its PF, index and netdevs; errors name the VF and what is missing."""
    if not sysfs.exists(pci):
        # A configuration error (CNI code 7), not an internal one: the config names a device
        # this host does not have.
        raise InvalidInput(
            "deviceID", f"{pci}: no such PCI device on this host ({sysfs.device_dir(pci)})"
        )
    pf_pci = PciAddress.try_parse(sysfs.link_base(pci, "physfn") or "")
    if pf_pci is None:
        raise InvalidInput("deviceID", f"{pci} is not an SR-IOV VF (it has no physfn link)")
    index = next((i for i, a in sysfs.virtfns(pf_pci).items() if a == pci), None)
    if index is None:
        raise HostError(f"VF {pci}: its PF {pf_pci} has no virtfn link to it")
    nets = sysfs.netdev_map()
    pf_names = nets.get(pf_pci)
    if not pf_names:
        raise HostError(
            f"VF {pci}: its PF {pf_pci} has no netdev (is the PF driver bound?); "
            "VF attributes are set through it"
        )
    driver = sysfs.link_base(pci, "driver")
    names = nets.get(pci, ())
    netdev = None if driver in USERSPACE_DRIVERS else (names[0] if names else None)
    return VfTarget(pci, pf_pci, pf_names[0], index, driver, netdev)


def require_netdev(vf: VfTarget) -> str:
    """The VF's host netdev, or an error saying why a kernel-driver VF has none."""
    if vf.netdev is None:
        if vf.driver is None:
            raise HostError(f"VF {vf.pci} has no driver bound: no netdev to attach")
        raise HostError(
            f"VF {vf.pci} (driver {vf.driver}) has no netdev in the host netns: is it "
            "attached elsewhere?"
        )
    return vf.netdev


def _apply_pf(netlink: VfAttrs, record: VfAttachment, settings: VfSettings) -> None:
    if record.pf is None or record.vf_index is None:
        return
    # NotFound: the PF lost its VFs (sriov_numvfs went to 0): nothing left to restore.
    with contextlib.suppress(NotFound):
        apply_vf(netlink, record.pf, record.vf_index, settings)


def restore_pf_side(netlink: VfAttrs, record: VfAttachment) -> None:
    """Put the PF-side VF attributes back (one request, verified; mac first in kernel order)."""
    _apply_pf(netlink, record, record.original.vf_settings())


def needs_trust_for_mac(settings: VfSettings, current_trust: bool | None) -> bool:
    """Whether the VF must be trusted for a while so that its netdev can take a new MAC.

    igb refuses a VF's own MAC change while the PF has set an admin MAC and the VF is not
    trusted ("VF n attempted to override administratively set MAC address", EADDRNOTAVAIL;
    measured in the lab), and the netdev only picks the admin MAC up on a driver reload. So
    where the VF will end up untrusted, it is trusted while its netdev MAC is set, then not.
    """
    trust = settings.trust if settings.trust is not None else current_trust
    return trust is False


def mac_while_trusted(netlink: Netlink, record: VfAttachment, mac: str | None) -> None:
    """Give the VF netdev (still in the host) `mac`, then take the PF-side trust away."""
    netlink.set_link(record.original.name, LinkChange(mac=mac))
    _apply_pf(netlink, record, VfSettings(trust=False))


@contextlib.contextmanager
def pf_side_restored(netlink: VfAttrs, record: VfAttachment) -> Iterator[None]:
    """Put the PF side back; the body gives the netdev its own MAC back, trusted if need be.

    Admin MAC before the netdev's: some drivers (i40e with trust off) refuse a netdev MAC that
    disagrees with the admin MAC. And trust last, after the body: igb refuses an untrusted
    VF's MAC change once an admin MAC is set (see `needs_trust_for_mac`), which is how a DEL
    after the pod's netns was deleted used to fail for good.
    """
    if record.applied.vf_settings().empty:
        # ADD set no PF-side attribute, and a VF cannot change its own from the pod (its MAC,
        # which a VF driver can ask the PF for, comes back with the netdev's): nothing to put
        # back, and no PF read (on a PF with many VFs, the kernel gathers every VF's attributes
        # and statistics for one RTM_GETLINK).
        yield
        return
    settings = record.original.vf_settings()
    # Only where ADD set an admin MAC: otherwise the netdev kept its own MAC (an untrusted
    # VF cannot have changed it) and two more PF requests would buy nothing.
    hold = (
        record.pf is not None
        and bool(record.original.name)
        and record.applied.mac is not None
        and needs_trust_for_mac(settings, None)
    )
    _apply_pf(netlink, record, replace(settings, trust=True) if hold else settings)
    if not hold:
        yield
        return
    untrust = VfSettings(trust=False)
    try:
        yield
    except BaseException:
        with contextlib.suppress(SriovkitError):  # the body's error is the one to report
            _apply_pf(netlink, record, untrust)
        raise
    _apply_pf(netlink, record, untrust)


def move_home(
    pod: Links, ifname: str, original: VfOriginalState, up: bool, host_netns: Path
) -> None:
    """Move the VF netdev `ifname` from the pod back to the host netns as it was, in one message.

    Its IPv4/IPv6 addresses and routes are dropped by the kernel on the namespace change.
    """
    mac = original.effective_mac or None
    change = LinkChange(new_name=original.name, mtu=original.mtu, mac=mac, up=up)
    pod.move_link(ifname, host_netns, change)


def bring_home(
    host: Links,
    pod: Netlink,
    record: VfAttachment,
    host_netns: Path,
    unaddressed: Callable[[], None] | None = None,
) -> bool:
    """Move the VF of `record` from `pod` back to the host as it was; False if it is not there.

    The one way a VF leaves a pod, for DEL, GC and ADD's rollback alike. The VF is found by its
    device, whatever the pod renamed it to (a link of the recorded name the pod made itself is
    never touched). Altnames it carries now were given by the pod (ADD dropped the host's):
    they go first, as one that exists in the host would make the kernel refuse the move. Then
    one message back (name, MTU, MAC, the admin state captured before ADD), then the altnames
    ADD dropped.

    With `unaddressed`: the addresses the record's result lists are taken off the VF first (the
    kernel would drop them with the move anyway) and `unaddressed` is called, so IPAM can
    release them during the move while a VF that then failed to move keeps none of them.
    """
    link = pod.find_device(record.device_id, hint=record.ifname)
    if link is None:
        return False
    if unaddressed is not None:
        addresses = result_addresses(record)
        if addresses is not None:
            for cidr in addresses:
                pod.del_address(link.name, cidr)
            unaddressed()
    for alt in link.altnames:
        pod.del_altname(link.name, alt)
    if link.up:
        # Down first, then the move: a netdev already down and without its addresses (above)
        # leaves a netns faster than in one message that also takes it down
        # (benchmarks/netns_move.py, medians of 24 on the 2-vCPU CI machine: ~16-17.5 ms
        # against ~19-20), where one message moving it in and up is the fastest way in.
        pod.apply_link(link.name, LinkChange(up=False))
    original = record.original
    move_home(pod, link.name, original, original_up(original), host_netns)
    restore_altnames(host, original)
    return True


def result_addresses(record: VfAttachment) -> list[str] | None:
    """The addresses (CIDRs) the record's committed result gave the pod; None when the record
    has no result (its ADD did not finish) or the result cannot be read."""
    result = record.result
    if result is None:
        return None
    ips = result.get("ips", [])
    if not isinstance(ips, list):
        return None
    out = []
    for ip in ips:
        address = ip.get("address") if isinstance(ip, dict) else None
        if not isinstance(address, str):
            return None
        out.append(address)
    return out


def undo_move(netlink: Netlink, record: VfAttachment, host_netns: Path) -> None:
    """ADD's undo of the netdev move: the VF is in the pod, or never left the host.

    Registered before the move. The kernel moves a netdev first (under its host name when that
    is free in the pod), then applies MAC and MTU, and renames it last, so a refused MAC or
    name fails the request with the VF already in the pod: the undo finds it there by device.
    Raises when the VF is in neither place, so the rollback keeps the records for DEL/GC.
    """
    with pf_side_restored(netlink, record):
        _undo_move(netlink, record, host_netns)


def _undo_move(netlink: Netlink, record: VfAttachment, host_netns: Path) -> None:
    try:
        pod: Netlink | None = netlink.in_netns(Path(record.netns))
    except HostError:
        pod = None  # the pod netns went away: a real VF returns to the host by itself
    if pod is not None:
        try:
            if bring_home(netlink, pod, record, host_netns):
                return
        finally:
            pod.close()
    # Not in the pod: the move was refused before it happened (the kernel checks the names and
    # the netns first), so the VF is still in the host; put back whatever differs.
    link = netlink.find_device(record.device_id, hint=record.original.name)
    if link is None:
        raise HostError(
            f"VF {record.device_id} is neither in netns {record.netns} nor in the host netns"
        )
    fix_in_host(netlink, link.name, record.original, original_up(record.original))


def on_its_way_back(sysfs: Sysfs, links: Links, record: VfAttachment) -> bool:
    """Whether the VF netdev of `record` is still in a dying netns, not yet back in the host.

    The kernel returns a VF netdev from a deleted netns only once the netns cleanup ran, which
    is asynchronous (seconds on a busy host). Until then sysfs shows the VF bound to its kernel
    driver but with no netdev in the host netns. A userspace or no driver means no netdev
    will ever come back. Nor does a stand-in the seam says died with its netns
    (`Links.netdevs_die_with_netns`: only the veth-mode simulated host's seam, whose veth end
    is destroyed with the pod netns while its simulated sysfs keeps naming it): that is asked
    of the seam, never inferred from sysfs naming a netdev netlink did not find.
    """
    if links.netdevs_die_with_netns:
        return False
    driver = sysfs.link_base(record.pci, "driver")
    if driver is None or driver in USERSPACE_DRIVERS:
        return False
    return not sysfs.netdev_map().get(record.pci)


def original_up(original: VfOriginalState) -> bool:
    """The admin state to restore, as captured before ADD."""
    return original.up


def restore_altnames(netlink: Links, original: VfOriginalState) -> None:
    """Give the VF netdev back the altnames ADD dropped in the pod (udev's names, say)."""
    if not original.altnames:
        return
    present = set(netlink.link(original.name).altnames)
    for alt in original.altnames:
        if alt not in present:
            netlink.add_altname(original.name, alt)


def fix_in_host(netlink: Links, name: str, original: VfOriginalState, up: bool) -> None:
    """A VF netdev found in the host netns under `name`: rename it back, MTU, MAC, admin state."""
    link = netlink.link(name)
    for alt in link.altnames:
        if alt not in original.altnames:  # given by the pod; it came back with the VF
            netlink.del_altname(name, alt)
    if link.name != original.name and link.up:
        netlink.set_link(name, LinkChange(up=False))  # renaming a running netdev is refused (EBUSY)
    mac = original.effective_mac or None
    netlink.set_link(
        name,
        LinkChange(
            new_name=original.name if link.name != original.name else None,
            mtu=original.mtu if link.mtu != original.mtu else None,
            mac=mac if mac != link.mac else None,
            up=up,
        ),
    )


def find_in_host(
    netlink: Links,
    record: VfAttachment,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> LinkInfo | None:
    """The VF netdev in the host netns, by its device, or None if it is not there.

    A real VF whose pod netns was deleted comes back to the host netns on its own, keeping the
    pod's name (or `devN` on a clash), but only once the kernel's netns cleanup ran: so look a
    few times within `timeout`. Whatever its name, only the VF's own device counts.
    """
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        link = netlink.find_device(record.device_id, hint=record.original.name)
        if link is not None:
            return link
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sleep(min(pause, left))
        pause = min(pause * 2, 0.2)


__all__ = [
    "VfTarget",
    "bring_home",
    "find_in_host",
    "fix_in_host",
    "mac_while_trusted",
    "move_home",
    "needs_trust_for_mac",
    "on_its_way_back",
    "original_up",
    "pf_side_restored",
    "require_netdev",
    "resolve_vf",
    "restore_pf_side",
    "result_addresses",
    "undo_move",
]
