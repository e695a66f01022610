"""podman 4.3 (CNI backend) runs our installed `sriov` plugin as a node's runtime does.

Every test runs twice: with the shim talking to a real `sriovkit agent`, and with no agent
listening (the shim's in-process fallback). The VFs are veth ends of a simulated 82576 host;
IPAM is Debian's Go host-local. Each test checks what the kernel holds (inside the container
through `podman exec`, and from the host with `ip -j`), the PF side of the simulated host, the
state dir's records and host-local's leases.
"""

from __future__ import annotations

import json

import pytest
from cnikit import ip_addrs, ip_links
from podmankit import Pod, RuntimeLab, inet_of

from sriovkit.sim.netlink import FakeNetlink

pytestmark = [pytest.mark.root, pytest.mark.runtime]

SUBNET0 = "10.56.0.0/24"
SUBNET1 = "10.57.0.0/24"


def pf_vf(rt: RuntimeLab, vf: str) -> tuple[str, int, int, bool | None, bool | None]:
    """(MAC, VLAN, QoS, spoofchk, trust) of VF `vf` as its PF reports them."""
    pair = rt.host.pair(vf)
    pf = next(p.netdev for p in rt.host.sim.pfs if p.address == pair.pf)
    assert pf is not None
    fake = FakeNetlink(rt.host.root)
    try:
        info = fake.vfs(pf)[pair.index]
    finally:
        fake.close()
    return (info.mac, info.vlan, info.qos, info.spoofchk, info.trust)


def attachment_records(rt: RuntimeLab, pod: Pod) -> list[str]:
    return [r for r in rt.cni.records() if r.startswith("attachments/") and pod.id in r]


def assert_attached(rt: RuntimeLab, pod: Pod, vf: str, ifname: str, network: str) -> str:
    """The VF is the container's IFNAME with one address from host-local; returns the CIDR."""
    pair = rt.host.pair(vf)
    assert pair.name not in ip_links(), f"{pair.name} is still in the host netns"
    seen = rt.pod_links(pod)[ifname]
    # The very netdev (a netns move keeps the ifindex), not something else given that name.
    assert seen["ifindex"] == rt.original_ifindex[vf]
    assert "UP" in seen["flags"]
    (cidr,) = ip_addrs(pod.netns, ifname)
    # What the container itself sees.
    assert inet_of(rt.exec(pod, f"ip -o addr show dev {ifname}"), ifname) == [cidr]
    # The records: one attachment for this container and ifname naming the VF, one allocation.
    (record,) = [r for r in attachment_records(rt, pod) if ifname in r]
    text = (rt.cni.state / record).read_text()
    assert vf in text and str(pod.netns) in text
    assert f"allocations/{vf}.json" in rt.cni.records()
    ip = cidr.split("/")[0]
    assert f"{network}/{ip}" in rt.cni.leases()
    if rt.mode == "agent":
        assert rt.agent_saw("ADD", pod, ifname), "the agent never served this ADD"
    return cidr


def test_run_and_rm_round_trip(rt: RuntimeLab) -> None:
    vf = rt.vf(0)
    rt.network("sknet0", vf, SUBNET0, mtu=1400, vlan=100, vlanQoS=3, spoofchk="off", trust="on")
    before = rt.cni.snapshot()

    pod = rt.run("--network", "sknet0")
    cidr = assert_attached(rt, pod, vf, "eth0", "sknet0")
    assert cidr.startswith("10.56.0.") and cidr.endswith("/24")
    link = rt.exec(pod, "ip -o link show dev eth0")
    assert " mtu 1400 " in link and rt.host.pair(vf).mac in link
    assert pf_vf(rt, vf)[1:] == (100, 3, False, True)
    inspect = json.loads(rt.podman("inspect", pod.name).stdout)[0]
    assert inspect["NetworkSettings"]["Networks"]["sknet0"]["IPAddress"] == cidr.split("/")[0]

    rt.rm(pod)
    # Back in the host netns as it was: name, MAC, MTU, admin state; PF side; no records/leases.
    assert rt.cni.snapshot() == before
    assert rt.cni.records() == [] and rt.cni.leases() == []
    if rt.mode == "agent":
        assert rt.agent_saw("DEL", pod, "eth0")


def test_mac_and_ip_asked_of_podman(rt: RuntimeLab) -> None:
    # podman 4.3's CNI backend passes these as CNI_ARGS "MAC=...;IP=..." (see README.md).
    vf = rt.vf(1)
    rt.network("sknet0", vf, SUBNET0)
    before = rt.cni.snapshot()

    pod = rt.run("--network", "sknet0", "--mac-address", "02:00:00:aa:bb:01", "--ip", "10.56.0.77")
    assert assert_attached(rt, pod, vf, "eth0", "sknet0") == "10.56.0.77/24"
    assert rt.pod_links(pod)["eth0"]["address"] == "02:00:00:aa:bb:01"
    assert "02:00:00:aa:bb:01" in rt.exec(pod, "ip -o link show dev eth0")
    assert pf_vf(rt, vf)[0] == "02:00:00:aa:bb:01"
    inspect = json.loads(rt.podman("inspect", pod.name).stdout)[0]["NetworkSettings"]
    assert inspect["Networks"]["sknet0"]["MacAddress"] == "02:00:00:aa:bb:01"

    rt.rm(pod)
    assert rt.cni.snapshot() == before  # the original MAC is back, on the netdev and the PF


def test_network_connect_and_disconnect(rt: RuntimeLab) -> None:
    vf0, vf1 = rt.vf(0), rt.vf(2)  # one VF of each PF
    rt.network("sknet0", vf0, SUBNET0, mtu=1400)
    rt.network("sknet1", vf1, SUBNET1)
    before = rt.cni.snapshot()
    host_before = ip_links()

    pod = rt.run("--network", "sknet0")
    assert_attached(rt, pod, vf0, "eth0", "sknet0")

    rt.podman(
        "network", "connect", "--ip", "10.57.0.33", "--mac-address", "02:00:00:aa:bb:02",
        "sknet1", pod.name,
    )  # fmt: skip
    # podman names the second network's interface eth1.
    assert assert_attached(rt, pod, vf1, "eth1", "sknet1") == "10.57.0.33/24"
    assert rt.pod_links(pod)["eth1"]["address"] == "02:00:00:aa:bb:02"
    assert len(attachment_records(rt, pod)) == 2

    rt.podman("network", "disconnect", "sknet0", pod.name)
    pair0 = rt.host.pair(vf0)
    back = ip_links()[pair0.name]
    was = host_before[pair0.name]
    assert (back["ifindex"], back["address"], back["mtu"], back["flags"]) == (
        was["ifindex"],
        was["address"],
        was["mtu"],
        was["flags"],
    )
    assert "eth0" not in rt.pod_links(pod)
    assert [r for r in attachment_records(rt, pod) if "eth0" in r] == []
    assert f"allocations/{vf0}.json" not in rt.cni.records()
    assert [lease for lease in rt.cni.leases() if lease.startswith("sknet0/")] == []
    # The other network is untouched.
    assert ip_addrs(pod.netns, "eth1") == ["10.57.0.33/24"]
    assert inet_of(rt.exec(pod, "ip -o addr"), "eth1") == ["10.57.0.33/24"]

    rt.podman("network", "disconnect", "sknet1", pod.name)
    assert rt.cni.snapshot() == before
    if rt.mode == "agent":
        assert rt.agent_saw("DEL", pod, "eth0") and rt.agent_saw("DEL", pod, "eth1")

    # Connected again, the same container gets the VF again (a fresh ADD, no stale state).
    rt.podman("network", "connect", "sknet0", pod.name)
    assert_attached(rt, pod, vf0, "eth0", "sknet0")
    rt.rm(pod)
    assert rt.cni.snapshot() == before
