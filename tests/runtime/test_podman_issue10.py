"""Regression tests for issue 10, through podman: what a container may do to links in its own
netns must never make the plugin lose a VF or take a link it did not create, and the settings
baked in at install must win over the caller's environment.

Each test runs with the agent and with the in-process fallback. The containers get NET_ADMIN
(`--cap-add`) so that they can rename and create links themselves, with busybox's `ip`.
"""

from __future__ import annotations

import re

import pytest
from cnikit import ip_links
from podmankit import RuntimeLab, files_under, host_macs

pytestmark = [pytest.mark.root, pytest.mark.runtime]

SUBNET0 = "10.56.0.0/24"
SUBNET1 = "10.57.0.0/24"


def test_vf_renamed_in_the_container_comes_back_on_rm(rt: RuntimeLab) -> None:
    vf = rt.vf(0)
    rt.network("sknet0", vf, SUBNET0)
    before = rt.cni.snapshot()
    pod = rt.run("--cap-add", "NET_ADMIN", "--network", "sknet0")
    rt.exec(pod, "ip link set eth0 down && ip link set eth0 name foo && ip link set foo up")
    links = rt.pod_links(pod)
    assert "eth0" not in links
    assert links["foo"]["ifindex"] == rt.original_ifindex[vf]  # the VF, renamed by the container

    rt.rm(pod)
    pair = rt.host.pair(vf)
    back = ip_links().get(pair.name)
    assert back is not None, f"VF {vf} did not come back to the host as {pair.name}"
    assert back["address"] == pair.mac
    assert rt.cni.records() == [] and rt.cni.leases() == []
    assert rt.cni.snapshot() == before


def test_disconnect_leaves_the_containers_own_link_of_the_vf_name(rt: RuntimeLab) -> None:
    vf, other = rt.vf(0), rt.vf(2)
    rt.network("sknet0", vf, SUBNET0)
    rt.network("sknet1", other, SUBNET1)
    before = rt.cni.snapshot()
    # Pinned names: podman 4.3 hands out eth0/eth1 in map order, not in the order given.
    pod = rt.run(
        "--cap-add", "NET_ADMIN",
        "--network", "sknet0:interface_name=eth0", "--network", "sknet1:interface_name=eth1",
    )  # fmt: skip
    # The container renames the VF and makes a link of its own under the VF's pod name (busybox
    # `ip link add name X type veth` makes a veth pair, the peer named veth0).
    rt.exec(pod, "ip link set eth0 down && ip link set eth0 name foo")
    rt.exec(pod, "ip link add name eth0 type veth")
    own = rt.pod_links(pod)
    assert own["foo"]["ifindex"] == rt.original_ifindex[vf]
    impostor = own["eth0"]
    assert impostor["ifindex"] != rt.original_ifindex[vf]

    rt.podman("network", "disconnect", "sknet0", pod.name)
    after = rt.pod_links(pod)
    # The container's own link is where it was, as it was; nothing of it reached the host.
    assert "eth0" in after, "the container's own eth0 was taken out of its netns"
    assert (after["eth0"]["ifindex"], after["eth0"]["address"]) == (
        impostor["ifindex"],
        impostor["address"],
    )
    assert impostor["address"] not in host_macs()
    # The VF came back under its original name and MAC; its records and lease are gone.
    pair = rt.host.pair(vf)
    back = ip_links().get(pair.name)
    assert back is not None, f"VF {vf} did not come back to the host as {pair.name}"
    assert (back["ifindex"], back["address"]) == (rt.original_ifindex[vf], pair.mac)
    assert "foo" not in after
    assert f"allocations/{vf}.json" not in rt.cni.records()
    assert [r for r in rt.cni.records() if r.startswith("attachments/") and "eth0" in r] == []
    assert [lease for lease in rt.cni.leases() if lease.startswith("sknet0/")] == []

    rt.rm(pod)
    assert impostor["address"] not in host_macs()
    assert rt.cni.snapshot() == before


def test_connect_onto_an_ifname_the_container_has_moves_nothing(rt: RuntimeLab) -> None:
    # podman refuses two networks with one interface_name, but it names the next network's
    # interface eth1 without looking at the container's links: the container made eth1 first.
    vf, other = rt.vf(0), rt.vf(2)
    rt.network("sknet0", vf, SUBNET0)
    rt.network("sknet1", other, SUBNET1)
    before = rt.cni.snapshot()
    pod = rt.run("--cap-add", "NET_ADMIN", "--network", "sknet0")
    rt.exec(pod, "ip link add name eth1 type veth")
    own = rt.pod_links(pod)["eth1"]
    vf_before = ip_links()[rt.host.pair(other).name]
    records_before = rt.cni.records()
    pf_side_before = rt.cni.snapshot()["vfs"]

    connect = rt.podman("network", "connect", "sknet1", pod.name, check=False)
    assert connect.returncode != 0, "ADD onto an existing eth1 succeeded"
    # Nothing moved: the VF is in the host as it was, the container's eth1 is its own.
    vf_after = ip_links().get(rt.host.pair(other).name)
    assert vf_after is not None, f"VF {other} left the host netns"
    keys = ("ifindex", "address", "mtu", "flags")
    assert [vf_after[k] for k in keys] == [vf_before[k] for k in keys]
    seen = rt.pod_links(pod)["eth1"]
    assert [seen[k] for k in keys] == [own[k] for k in keys]
    assert rt.cni.records() == records_before  # no record or allocation for the refused ADD
    assert [lease for lease in rt.cni.leases() if lease.startswith("sknet1/")] == []
    assert rt.cni.snapshot()["vfs"] == pf_side_before  # nothing applied to the VF from the PF

    # podman 4.3 still lists sknet1 for the container after the failed connect, so rm runs a
    # DEL for it too: that DEL must not take the container's eth1 either.
    rt.rm(pod)
    assert own["address"] not in host_macs()
    assert rt.cni.snapshot() == before

    # Last, so that a wrong state is reported before a poor message.
    error = connect.stderr.strip()
    # A CNI error that says why (the name is taken), not an internal one (a Python exception).
    assert "eth1" in error or "exists" in error, f"the error does not say why: {error}"
    assert not re.search(r"\b[A-Z][a-z]+\w*(Error|Exception): ", error), f"internal error: {error}"


@pytest.mark.parametrize("variable", ["SRIOVKIT_STATE_DIR", "SRIOVKIT_ROOT"])
def test_baked_settings_win_over_the_runtimes_environment(
    rt: RuntimeLab, variable: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # podman hands its own environment to the CNI plugins it executes.
    decoy = tmp_path_factory.mktemp("decoy")
    env = {variable: str(decoy)}
    vf = rt.vf(0)
    rt.network("sknet0", vf, SUBNET0)
    before = rt.cni.snapshot()

    pod = rt.run("--network", "sknet0", env=env)
    assert rt.host.pair(vf).name not in ip_links()
    assert rt.pod_links(pod)["eth0"]["ifindex"] == rt.original_ifindex[vf]
    assert [r for r in rt.cni.records() if pod.id in r], "no record in the baked state dir"
    assert list(files_under(decoy)) == [], f"{variable} from the environment was used"

    rt.rm(pod, env=env)
    assert rt.cni.snapshot() == before
    assert list(files_under(decoy)) == []
