"""A pod is root in its netns: it renames the VF, makes links of the VF's names, hides the VF.

Issue 10, section 1. The VF is identified by its device (here: the veth peer the simulated host
recorded, standing in for the PCI parent), never by name: whatever the pod does, DEL gives back
the VF and only the VF, or keeps its records and fails while it cannot; ADD refuses an ifname
the pod already uses before it changes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sriovkit.errors import CheckFailed, HostError
from sriovkit.host.netlink import LinkChange
from sriovkit.host.netns import HOST_NETNS
from sriovkit.model.cni_env import BadEnv
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.ops.cni.vf.check import verify
from sriovkit.sim.veth import VethHost, VethPair

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 (netns, veth)", allow_module_level=True)

from attach_lab import CNI_DIR, Lab, ip_link, leased_ips, new_pod  # noqa: E402

if not (CNI_DIR / "host-local").is_file():
    pytest.skip(f"needs host-local in {CNI_DIR}", allow_module_level=True)


def in_pod(pod: Path, *args: str) -> None:
    """`ip ARGS` run in the pod's netns: what a process root in the pod can do."""
    subprocess.run(["ip", "-n", pod.name, *args], check=True, capture_output=True)


def ip_addrs_of(pod: Path) -> str:
    return subprocess.run(["ip", "-n", pod.name, "-o", "addr"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def snapshot(lab: Lab, host: VethHost, pair: VethPair) -> tuple[object, ...]:
    link = ip_link(pair.name)
    assert link is not None, f"{pair.name} is not in the host netns"
    pf = next(p.netdev for p in host.sim.pfs if p.address == pair.pf) or ""
    return (
        link["ifname"], link["address"], link["mtu"], "UP" in link["flags"],
        tuple(link.get("altnames", ())), link.get("link"), lab.vf_info(pf, pair.index),
    )  # fmt: skip


def added(lab: Lab, pod: Path, pair: VethPair, container: str = "c1") -> None:
    env = lab.env("ADD", container, pod)
    raw = lab.raw(pair.vf, mac="02:00:00:66:00:01", vlan=30, mtu=1400)
    attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    assert ip_link("net1", pod) is not None


def deleted(lab: Lab, pod: Path, pair: VethPair, container: str = "c1") -> None:
    env = lab.env("DEL", container, pod)
    raw = lab.raw(pair.vf)
    attach.delete(lab.ctx(), env, lab.conf(env, raw), raw)


def assert_clean(lab: Lab) -> None:
    assert lab.store.attachment_keys() == []
    assert list(lab.store.allocations()) == []
    assert leased_ips(lab.data, lab.network) == []


def test_renamed_vf_comes_home(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    added(lab, pod, pair)
    in_pod(pod, "link", "set", "net1", "down")
    in_pod(pod, "link", "set", "net1", "name", "foo")
    in_pod(pod, "link", "set", "foo", "up")
    # CHECK sees the rename (by device), not a missing interface
    record = lab.store.read_attachment(lab.env("CHECK", "c1", pod).key)
    assert record is not None
    with pytest.raises(CheckFailed, match="called foo in the pod"):
        verify(lab.ctx(), record)
    deleted(lab, pod, pair)
    assert ip_link("foo", pod) is None
    assert snapshot(lab, host, pair) == before
    assert_clean(lab)


def test_pod_link_named_like_the_vf_stays_in_the_pod(
    lab: Lab, host: VethHost, pods: list[Path]
) -> None:
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    added(lab, pod, pair)
    in_pod(pod, "link", "set", "net1", "down")
    in_pod(pod, "link", "set", "net1", "name", "foo")
    # The pod's own veth pair, one end named as ADD named the VF, the other as the host's VF
    # name, with the VF's MAC: neither may reach the host.
    in_pod(pod, "link", "add", "net1", "address", "02:00:00:66:00:01", "type", "veth",
           "peer", "name", pair.name)  # fmt: skip
    deleted(lab, pod, pair)
    mine = ip_link("net1", pod)
    assert mine is not None and ip_link(pair.name, pod) is not None  # untouched, in the pod
    assert snapshot(lab, host, pair) == before
    host_link = ip_link(pair.name)
    assert host_link is not None and host_link.get("link_netnsid") is None  # its peer is home
    assert_clean(lab)


def test_pod_altname_clashing_with_a_host_name_does_not_block_the_return(
    lab: Lab, host: VethHost, pods: list[Path]
) -> None:
    pair, other = host.pairs[0], host.pairs[1]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    added(lab, pod, pair)
    # An altname equal to a host link's name would make the kernel refuse the move home.
    in_pod(pod, "link", "property", "add", "dev", "net1", "altname", other.name)
    deleted(lab, pod, pair)
    assert snapshot(lab, host, pair) == before
    assert_clean(lab)


def test_del_that_cannot_move_the_vf_home_leaves_no_released_address_on_it(
    lab: Lab, host: VethHost, pods: list[Path]
) -> None:
    """IPAM DEL overlaps the move home (ops/cni/ipam.py `DelIpam`), so the addresses go off the
    VF before the move: a move home the kernel then refuses leaves the VF without the address
    IPAM released, and the records for the retry."""
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    added(lab, pod, pair)
    (leased,) = leased_ips(lab.data, lab.network)
    assert f" {leased}/" in ip_addrs_of(pod)
    # A host link of the VF's name: the kernel moves the VF out under its pod name, then
    # refuses to rename it (EEXIST), and the request fails.
    blocker = subprocess.run(["ip", "link", "add", pair.name, "type", "veth", "peer", "name",
                              pair.name + "x"], check=False, capture_output=True,
                             text=True)  # fmt: skip
    assert blocker.returncode == 0, blocker.stderr
    try:
        with pytest.raises(HostError, match="kept for a retry"):
            deleted(lab, pod, pair)
        host_addrs = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                                    check=True).stdout  # fmt: skip
        assert f" {leased}/" not in ip_addrs_of(pod) + host_addrs
        assert leased_ips(lab.data, lab.network) == []
        assert lab.store.attachment_keys() == [lab.env("DEL", "c1", pod).key]
    finally:
        subprocess.run(["ip", "link", "del", pair.name], check=True, capture_output=True)
    deleted(lab, pod, pair)
    assert snapshot(lab, host, pair) == before
    assert_clean(lab)


def test_vf_hidden_in_a_nested_netns_keeps_its_records(
    lab: Lab, host: VethHost, pods: list[Path]
) -> None:
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    nested = new_pod(pods)  # a netns the pod made and moved the VF into
    added(lab, pod, pair)
    in_pod(pod, "link", "set", "net1", "netns", nested.name)
    with pytest.raises(HostError, match="not in the pod netns"):
        deleted(lab, pod, pair)
    assert len(lab.store.attachment_keys()) == 1  # kept for a retry
    # IPAM is released only once the VF is back: its address is still in use in the pod.
    assert leased_ips(lab.data, lab.network) != []
    subprocess.run(["ip", "-n", nested.name, "link", "set", "net1", "netns", pod.name],
                   check=True, capture_output=True)  # fmt: skip
    deleted(lab, pod, pair)
    assert snapshot(lab, host, pair) == before
    assert_clean(lab)


@pytest.mark.parametrize("ifname", ["eth0", "lo", "alias0"])
def test_add_refuses_an_ifname_the_pod_has(
    lab: Lab, host: VethHost, pods: list[Path], ifname: str
) -> None:
    pair = host.pairs[0]
    before = snapshot(lab, host, pair)
    pod = new_pod(pods)
    in_pod(pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    in_pod(pod, "link", "property", "add", "dev", "eth0", "altname", "alias0")
    in_pod(pod, "addr", "add", "192.0.2.9/24", "dev", "eth0")
    env = lab.env("ADD", "c1", pod, ifname=ifname)
    raw = lab.raw(pair.vf, mac="02:00:00:66:00:01", vlan=30)
    with pytest.raises(BadEnv, match=f"already has an interface {ifname}") as caught:
        attach.add(lab.ctx(), env, lab.conf(env, raw), raw)
    assert caught.value.cni_code == 4
    assert snapshot(lab, host, pair) == before  # nothing changed, PF side included
    eth0 = ip_link("eth0", pod)
    assert eth0 is not None and eth0.get("link") == "eth0p" and "192.0.2.9" in str(ip_addrs_of(pod))
    assert_clean(lab)


def test_rename_between_lookup_and_move_moves_the_looked_up_link(
    lab: Lab, host: VethHost, pods: list[Path]
) -> None:
    """The seam acts on the ifindex it identified, not on whatever has that name by then."""
    pair = host.pairs[0]
    pod = new_pod(pods)
    added(lab, pod, pair)
    netlink = lab.ctx().netlink
    pod_seam = netlink.in_netns(pod)
    try:
        found = pod_seam.find_device(pair.vf, hint="net1")
        assert found is not None and found.name == "net1"
        in_pod(pod, "link", "set", "net1", "name", "foo")
        in_pod(pod, "link", "add", "net1", "type", "veth", "peer", "name", "decoy")
        pod_seam.move_link("net1", HOST_NETNS, LinkChange(new_name=pair.name))
    finally:
        pod_seam.close()
    assert ip_link("net1", pod) is not None and ip_link("foo", pod) is None
    link = ip_link(pair.name)
    assert link is not None and link.get("link_netnsid") is None
    deleted(lab, pod, pair)  # the VF is in the host already: DEL puts the rest back
    assert_clean(lab)


def test_ipv4_addresses_get_their_broadcast(lab: Lab, host: VethHost, pods: list[Path]) -> None:
    pair = host.pairs[0]
    pod = new_pod(pods)
    added(lab, pod, pair)
    out = subprocess.run(["ip", "-n", pod.name, "-j", "addr", "show", "net1"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    (v4,) = [a for a in json.loads(out)[0]["addr_info"] if a["family"] == "inet"]
    assert (v4["prefixlen"], v4.get("broadcast")) == (24, "10.77.0.255")
    deleted(lab, pod, pair)
    assert_clean(lab)
