"""Veth mode: a simulated host whose VF netdevs are real veth ends in the host netns."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.netlink import LinkChange
from sriovkit.model.vf import LinkState, VfSettings

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 to create veth pairs", allow_module_level=True)

from sriovkit.sim import create_host  # noqa: E402
from sriovkit.sim.netlink import FakeNetlink  # noqa: E402
from sriovkit.sim.veth import (  # noqa: E402
    VethHost,
    create_veth_host,
    load_pairs,
)
from sriovkit.sim.veth_netlink import SplitNetlink  # noqa: E402
from sriovkit.wiring import open_netlink  # noqa: E402

HOST_NS = Path("/proc/self/ns/net")  # the process's netns: the test thread never moves


def ip_links(netns: str | None = None) -> dict[str, dict[str, object]]:
    args = ["ip", "-j", *(["-n", netns] if netns else []), "link", "show"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return {lk["ifname"]: lk for lk in json.loads(out)}


def prefix() -> str:
    return "skt" + uuid.uuid4().hex[:4]


@pytest.fixture
def nl(host: VethHost) -> Iterator[SplitNetlink]:
    seam = open_netlink(host.root)
    assert isinstance(seam, SplitNetlink)
    try:
        yield seam
    finally:
        seam.close()


def tree_netdev(host: VethHost, vf: str) -> tuple[str, str]:
    """(name, mac) of the VF's netdev as the simulated sysfs tree shows it."""
    (netdev,) = (host.root / "sys/bus/pci/devices" / vf / "net").iterdir()
    return netdev.name, (netdev / "address").read_text().strip()


def test_veth_ends_carry_the_tree_names_and_macs(host: VethHost) -> None:
    links = ip_links()
    vfs = [vf for pf in host.sim.pfs for vf in host.sim.vfs(pf.address)]
    assert len(vfs) == len(host.pairs) == 4  # 82576: two PFs, two VFs each
    for vf in vfs:
        name, mac = tree_netdev(host, vf)
        assert links[name]["address"] == mac
        assert links[name]["link_type"] == "ether"
        ifindex = (host.root / "sys/class/net" / name / "ifindex").read_text().strip()
        assert int(ifindex) == links[name]["ifindex"]
        peer = host.pair(vf).peer
        assert links[name]["link"] == peer  # the other end of the pair, in the host netns
        assert "UP" in links[peer]["flags"]


def test_move_vf_into_pod_and_back(host: VethHost, nl: SplitNetlink, pod: Path) -> None:
    pair = host.pairs[0]
    nl.move_link(
        pair.name, pod, LinkChange(new_name="net1", mtu=1400, mac="02:00:00:00:0a:01", up=True)
    )
    assert pair.name not in ip_links()
    seen = ip_links(pod.name)["net1"]
    assert (seen["mtu"], seen["address"]) == (1400, "02:00:00:00:0a:01")
    assert "UP" in seen["flags"]
    inside = nl.in_netns(pod)
    try:
        assert inside.link("net1").up is True
        inside.add_address("net1", "10.66.0.2/24")
        assert [a.cidr for a in inside.addresses("net1") if a.family == 4] == ["10.66.0.2/24"]
        inside.flush_addresses("net1")
        inside.move_link("net1", HOST_NS, LinkChange(new_name=pair.name, mtu=1500, mac=pair.mac))
    finally:
        inside.close()
    back = nl.link(pair.name)
    assert (back.mtu, back.mac, back.up) == (1500, pair.mac, False)
    assert "net1" not in ip_links(pod.name)
    # The tree is the host's view: it kept the VF's netdev all along.
    assert tree_netdev(host, pair.vf) == (pair.name, pair.mac)


def test_pf_side_vf_attributes_go_to_the_fake(host: VethHost, nl: SplitNetlink) -> None:
    pf = host.sim.pfs[0]
    assert pf.netdev is not None
    assert pf.netdev not in ip_links()  # PFs exist only in the tree
    assert nl.link(pf.netdev).num_vfs == 2
    nl.set_vf(pf.netdev, 1, VfSettings(vlan=100, qos=3, mac="02:11:22:33:44:55"))
    vf1 = nl.vfs(pf.netdev)[1]
    assert (vf1.vlan, vf1.qos, vf1.mac) == (100, 3, "02:11:22:33:44:55")
    # Kept with the tree, so another seam (another process) sees it too.
    other = open_netlink(host.root)
    try:
        assert other.vfs(pf.netdev)[1].vlan == 100
    finally:
        other.close()
    # ...and refused as igb refuses: it has no ndo_set_vf_link_state.
    with pytest.raises(HostError) as err:
        nl.set_vf(pf.netdev, 0, VfSettings(link_state=LinkState.ENABLE))
    assert err.value.errno == errno.EOPNOTSUPP
    # A PF is NETNS_LOCAL: it cannot be moved into a pod.
    with pytest.raises(HostError):
        nl.move_link(pf.netdev, HOST_NS, LinkChange(new_name="net1"))


def test_cleanup_removes_every_veth(tmp_path: Path) -> None:
    tag = prefix()
    made = create_veth_host(tmp_path / "host", "82576", vfs=3, prefix=tag)
    try:
        assert sum(name.startswith(tag) for name in ip_links()) == 12  # 2 PFs x 3 VFs x 2 ends
    finally:
        made.cleanup()
    assert not [name for name in ip_links() if name.startswith(tag)]
    made.cleanup()  # idempotent
    assert len(load_pairs(made.root)) == 6  # the record stays, the veths are gone


def test_cleanup_after_pod_netns_took_a_vf(tmp_path: Path, pod: Path) -> None:
    tag = prefix()
    with create_veth_host(tmp_path / "host", vfs=1, prefix=tag) as made:
        seam = made.netlink()
        try:
            seam.move_link(made.pairs[0].name, pod, LinkChange(new_name="net1"))
        finally:
            seam.close()
    assert not [name for name in ip_links() if name.startswith(tag)]
    assert "net1" not in ip_links(pod.name)


def test_failed_creation_leaves_no_veth(tmp_path: Path) -> None:
    tag = prefix()
    # Someone already holds the name of the last VF's peer: creation fails, nothing is left.
    squatter = f"{tag}1r1"
    subprocess.run(
        ["ip", "link", "add", squatter, "type", "veth", "peer", "name", f"sq{tag}"],
        check=True,
        capture_output=True,
    )
    try:
        with pytest.raises(HostError) as err:
            create_veth_host(tmp_path / "host", vfs=2, prefix=tag)
        assert squatter in str(err.value)
        assert [name for name in ip_links() if name.startswith(tag)] == [squatter]
    finally:
        subprocess.run(["ip", "link", "del", squatter], check=False, capture_output=True)


def test_prefix_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        create_veth_host(tmp_path / "host", prefix="Bad/Name")


def test_links_merge_kernel_and_tree(host: VethHost, nl: SplitNetlink) -> None:
    names = [lk.name for lk in nl.links()]
    pfs = {pf.netdev for pf in host.sim.pfs}
    assert pfs <= set(names)
    assert {p.name for p in host.pairs} | {p.peer for p in host.pairs} <= set(names)
    assert names.count("lo") == 1  # the kernel's; the tree's own lo is not added twice
    assert nl.wait_link(host.pairs[0].name, 1.0).kind == "veth"


def test_plain_simulated_host_keeps_the_fake(tmp_path: Path) -> None:
    create_host(tmp_path / "plain", ["82576"], vfs=1)
    seam = open_netlink(tmp_path / "plain")
    assert isinstance(seam, FakeNetlink)


def test_sim_veth_cli_creates_and_removes_the_pairs(tmp_path: Path) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from sriovkit.cli import cli  # noqa: PLC0415

    prefix = "c" + uuid.uuid4().hex[:5]
    root = tmp_path / "host"
    res = CliRunner().invoke(cli, ["sim", "veth", str(root), "--vfs", "1", "--prefix", prefix])
    try:
        assert res.exit_code == 0, res.output
        links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                          text=True, check=True).stdout)  # fmt: skip
        names = {link["ifname"] for link in links}
        assert {f"{prefix}0v0", f"{prefix}1v0"} <= names
    finally:
        res = CliRunner().invoke(cli, ["sim", "veth-remove", str(root)])
    assert res.exit_code == 0, res.output
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True,
                                      check=True).stdout)  # fmt: skip
    assert not [link for link in links if link["ifname"].startswith(prefix)]
