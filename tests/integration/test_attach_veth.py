"""ops.attach for real: veth ends standing in for VF netdevs, real netns, Debian's host-local.

The PF side (VF MAC/VLAN/QoS/spoofchk/trust/...) is kept by the fake with igb's capability
table; everything about the VF netdev (netns moves, names, MTU, MAC, addresses, routes) and the
IPAM plugin are real.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import Busy, CheckFailed, HostError
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.cni_result import to_version
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import VfInfo
from sriovkit.ops import vf as vf_ops
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.sim.veth import VethHost, VethPair

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 (netns, veth)", allow_module_level=True)

from attach_lab import (  # noqa: E402
    CNI_DIR,
    Lab,
    drop_netns,
    ip_addrs,
    ip_link,
    leased_ips,
    new_pod,
)

if not (CNI_DIR / "host-local").is_file():
    pytest.skip(f"needs host-local in {CNI_DIR}", allow_module_level=True)


def pf_netdev(host: VethHost, pair: VethPair) -> str:
    return next(p.netdev for p in host.sim.pfs if p.address == pair.pf) or ""


def snapshot(lab: Lab, host: VethHost, pair: VethPair) -> tuple[object, ...]:
    """Everything ADD may change about a VF, as seen from the host."""
    link = ip_link(pair.name)
    assert link is not None, f"{pair.name} is not in the host netns"
    info: VfInfo = lab.vf_info(pf_netdev(host, pair), pair.index)
    return (
        link["ifname"], link["address"], link["mtu"], "UP" in link["flags"],
        tuple(link.get("altnames", ())), info,
    )  # fmt: skip


def assert_no_records(lab: Lab) -> None:
    assert lab.store.attachment_keys() == []
    assert list(lab.store.allocations()) == []


def test_add_check_del_restores_everything(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    # The kernel carries altnames across netns moves: ADD must drop them in the pod.
    subprocess.run(
        ["ip", "link", "property", "add", "dev", pair.name, "altname", pair.name + "x"],
        check=True,
        capture_output=True,
    )
    # An admin-up VF must come back up (and one that was down, down: the other tests).
    subprocess.run(["ip", "link", "set", pair.name, "up"], check=True, capture_output=True)
    before = snapshot(lab, host, pair)
    assert before[3] and before[4] == (pair.name + "x",)
    pod = new_pod(pods)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, vlan=120, vlanQoS=3, mac="02:00:00:77:00:09", mtu=1400, spoofchk="off")
    # Listen on the peer for the pod's gratuitous ARP before it is sent.
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sniffer.bind((pair.peer, 0))
    sniffer.settimeout(5.0)
    try:
        result = attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
        frame = sniffer.recv(2048)
    finally:
        sniffer.close()
    iface = result.interfaces[0]
    assert (iface.name, iface.mac, iface.mtu, iface.sandbox, iface.pci_id) == (
        "net1",
        "02:00:00:77:00:09",
        1400,
        str(pod),
        pair.vf,
    )
    (ip,) = result.ips
    assert ip.interface == 0 and ip.gateway == "10.77.0.1"
    assert ip_link(pair.name) is None
    inside = ip_link("net1", pod)
    assert inside is not None
    assert (inside["address"], inside["mtu"]) == ("02:00:00:77:00:09", 1400)
    assert "UP" in inside["flags"] and not inside.get("altnames")
    assert ip_addrs("net1", pod) == [ip.address]
    routes = subprocess.run(
        ["ip", "-n", pod.name, "route", "show", "default"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "via 10.77.0.1 dev net1" in routes
    vf = lab.vf_info(pf_netdev(host, pair), pair.index)
    assert (vf.vlan, vf.qos, vf.mac, vf.spoofchk) == (120, 3, "02:00:00:77:00:09", False)
    # The gratuitous ARP: sender MAC and sender IP == target IP == the pod's address.
    address = socket.inet_aton(ip.address.split("/")[0])
    assert frame[12:14] == b"\x08\x06" and frame[6:12] == bytes.fromhex("020000770009")
    assert frame[28:32] == address and frame[38:42] == address
    assert leased_ips(lab.data, lab.network) == [ip.address.split("/")[0]]

    check_env = lab.env("CHECK", "c1", pod)
    check_raw = {**raw, "prevResult": to_version(result, "1.1.0")}
    attach.check(lab.ctx(), check_env, lab.conf(check_env, check_raw), check_raw)

    attach.delete(lab.ctx(), lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    after = snapshot(lab, host, pair)
    assert after == before
    assert ip_link("net1", pod) is None
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []
    # DEL again: nothing to do, still success.
    attach.delete(lab.ctx(), lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    assert snapshot(lab, host, pair) == before


def test_del_without_add_succeeds(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    before = snapshot(lab, host, host.pairs[0])
    env = lab.env("DEL", "never", None)
    raw = lab.raw(host.pairs[0].vf)
    attach.delete(lab.ctx(), env, lab.conf(env, raw), raw)
    attach.delete(lab.ctx(), env, None, None)  # even without a usable config
    assert snapshot(lab, host, host.pairs[0]) == before
    assert_no_records(lab)


def test_del_after_the_netns_is_deleted(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[1]
    info_before = lab.vf_info(pf_netdev(host, pair), pair.index)
    pod = new_pod(pods)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, vlan=300, trust="on")
    attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    drop_netns(pod)  # veth caveat: this destroys the pair (a real VF would come back)
    attach.delete(lab.ctx(), lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    assert lab.vf_info(pf_netdev(host, pair), pair.index) == info_before
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []


def test_busy_vf_is_refused_and_nothing_changes(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    pod1, pod2 = new_pod(pods), new_pod(pods)
    env1 = lab.env("ADD", "c1", pod1)
    raw1 = lab.raw(pair.vf)
    attach.add(lab.ctx(), env1, lab.conf(env1, raw1), raw1)
    held = (ip_link("net1", pod1), lab.vf_info(pf_netdev(host, pair), pair.index))
    env2 = lab.env("ADD", "c2", pod2)
    raw2 = lab.raw(pair.vf, vlan=55, mtu=1300)
    with pytest.raises(Busy) as err:
        attach.add(lab.ctx(), env2, lab.conf(env2, raw2), raw2)
    assert err.value.cni_code == 11
    assert pair.vf in str(err.value) and "c1" in str(err.value) and str(pod1) in str(err.value)
    assert (ip_link("net1", pod1), lab.vf_info(pf_netdev(host, pair), pair.index)) == held
    assert ip_link("net1", pod2) is None
    assert lab.store.attachment_keys() == [AttachmentKey("c1", "net1")]
    assert len(leased_ips(lab.data, lab.network)) == 1


def test_add_failing_at_ipam_leaves_nothing(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    # A range of one address: the first ADD takes it, the second finds the range exhausted.
    lab.ipam_range = {"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.5", "rangeEnd": "10.77.0.5"}
    first, second = host.pairs[0], host.pairs[1]
    env1 = lab.env("ADD", "c1", new_pod(pods))
    raw1 = lab.raw(first.vf)
    attach.add(lab.ctx(), env1, lab.conf(env1, raw1), raw1)
    before = snapshot(lab, host, second)
    pod2 = new_pod(pods)
    env2 = lab.env("ADD", "c2", pod2)
    raw2 = lab.raw(second.vf, vlan=42, mac="02:00:00:77:00:42", mtu=1280)
    with pytest.raises(HostError, match="host-local"):
        attach.add(lab.ctx(), env2, lab.conf(env2, raw2), raw2)
    assert snapshot(lab, host, second) == before
    assert ip_link("net1", pod2) is None
    assert lab.store.attachment_keys() == [AttachmentKey("c1", "net1")]
    assert leased_ips(lab.data, lab.network) == ["10.77.0.5"]


def test_refused_attribute_leaves_nothing(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    env = lab.env("ADD", "c1", new_pod(pods))
    raw = lab.raw(pair.vf, vlan=10, link_state="enable")  # igb has no ndo_set_vf_link_state
    with pytest.raises(HostError) as err:
        attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    assert err.value.errno == errno.EOPNOTSUPP and "link-state" in str(err.value)
    assert snapshot(lab, host, pair) == before
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []


def test_gc_releases_leaked_and_keeps_valid(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    keep, leak = host.pairs[0], host.pairs[1]
    leaked_before = snapshot(lab, host, leak)
    pod_keep, pod_leak = new_pod(pods), new_pod(pods)
    for container, pair, pod in (("keep", keep, pod_keep), ("leak", leak, pod_leak)):
        env = lab.env("ADD", container, pod)
        raw = lab.raw(pair.vf, vlan=9)
        attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    gc_env = lab.env("GC", "x", None)
    valid: dict[str, Any] = {
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "net1"}]
    }
    gc_raw = lab.raw(None, **valid)
    attach.gc(lab.ctx(), lab.conf(gc_env, gc_raw), gc_raw)
    assert snapshot(lab, host, leak) == leaked_before
    assert ip_link("net1", pod_keep) is not None
    assert lab.store.attachment_keys() == [AttachmentKey("keep", "net1")]
    assert len(leased_ips(lab.data, lab.network)) == 1


def test_check_detects_changed_mtu_and_address(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pod = new_pod(pods)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(host.pairs[0].vf, mtu=1400)
    result = attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    check_env = lab.env("CHECK", "c1", pod)
    check_raw = {**raw, "prevResult": to_version(result, "1.1.0")}
    check_conf = lab.conf(check_env, check_raw)
    attach.check(lab.ctx(), check_env, check_conf, check_raw)
    # The runtime's prevResult is what CHECK must hold the pod to (spec): an address it lists
    # that the pod lacks is a failure even though our own record is satisfied.
    prev = to_version(result, "1.1.0")
    prev["ips"] = [*prev["ips"], {"address": "10.77.0.200/24", "interface": 0}]
    odd_raw = {**raw, "prevResult": prev}
    with pytest.raises(CheckFailed, match=r"address 10\.77\.0\.200/24 from prevResult is missing"):
        attach.check(lab.ctx(), check_env, lab.conf(check_env, odd_raw), odd_raw)
    subprocess.run(["ip", "-n", pod.name, "link", "set", "net1", "mtu", "1280"], check=True)
    with pytest.raises(CheckFailed, match="MTU is 1280, recorded 1400"):
        attach.check(lab.ctx(), check_env, check_conf, check_raw)
    subprocess.run(["ip", "-n", pod.name, "link", "set", "net1", "mtu", "1400"], check=True)
    subprocess.run(["ip", "-n", pod.name, "addr", "flush", "dev", "net1"], check=True)
    with pytest.raises(CheckFailed, match=f"address {result.ips[0].address} is missing"):
        attach.check(lab.ctx(), check_env, check_conf, check_raw)


def test_dpdk_mode_without_netdev_move(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    pf = pf_netdev(host, pair)
    info_before = lab.vf_info(pf, pair.index)
    lab.sysfs.load_module("vfio-pci")  # type: ignore[attr-defined]
    vf_ops.bind_driver(lab.sysfs, PciAddress.parse(pair.vf), "vfio-pci")
    pod = new_pod(pods)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, vlan=77)
    result = attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    assert result.interfaces[0].pci_id == pair.vf and len(result.ips) == 1
    assert ip_link(pair.name) is not None  # nothing moved (the veth stays where it was)
    assert ip_link("net1", pod) is None
    assert lab.vf_info(pf, pair.index).vlan == 77
    attach.delete(lab.ctx(), lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    assert lab.vf_info(pf, pair.index) == info_before
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []
