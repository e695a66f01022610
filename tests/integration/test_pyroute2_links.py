"""The pyroute2 seam against the running kernel: veth pairs in throwaway network namespaces.

Everything happens inside namespaces made for the test, reached through the seam's own
netns-bound sockets, so the test never touches the host's links and the test thread never moves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import HostError, NotFound, Timeout
from sriovkit.host.netlink import LinkChange

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 to create network namespaces", allow_module_level=True)

from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: E402
from sriovkit.host._pyroute2_conn import link_info  # noqa: E402
from sriovkit.host.netlink import LinkInfo  # noqa: E402


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[tuple[Path, Path]]:
    """Two throwaway namespaces: `host` with a veth pair (skv0 <-> skv1) and an empty `pod`."""
    tag = uuid.uuid4().hex[:8]
    host, pod = f"skh-{tag}", f"skp-{tag}"
    ip("netns", "add", host)
    ip("netns", "add", pod)
    try:
        ip("-n", host, "link", "add", "skv0", "type", "veth", "peer", "name", "skv1")
        ip("-n", host, "link", "property", "add", "dev", "skv0", "altname", "skalt0")
        yield Path("/run/netns") / host, Path("/run/netns") / pod
    finally:
        ip("netns", "del", pod)
        ip("netns", "del", host)


@pytest.fixture
def nl(netns: tuple[Path, Path]) -> Iterator[Pyroute2Netlink]:
    with Pyroute2Netlink(netns[0]) as seam:
        yield seam


def test_links_seen_in_the_bound_netns_only(nl: Pyroute2Netlink) -> None:
    own = os.readlink("/proc/thread-self/ns/net")
    names = {lk.name for lk in nl.links()}
    assert names == {"lo", "skv0", "skv1"}
    assert os.readlink("/proc/thread-self/ns/net") == own  # this thread never moved
    veth = nl.link("skalt0")  # altnames resolve
    assert (veth.name, veth.kind, veth.altnames, veth.up) == ("skv0", "veth", ("skalt0",), False)
    with pytest.raises(NotFound):
        nl.link("nosuch0")


def test_set_link_in_one_request(nl: Pyroute2Netlink) -> None:
    got = nl.set_link(
        "skv1", LinkChange(new_name="skren1", mtu=1400, mac="02:aa:bb:cc:dd:01", up=True)
    )
    assert (got.name, got.mtu, got.mac, got.up) == ("skren1", 1400, "02:aa:bb:cc:dd:01", True)
    with pytest.raises(HostError) as err:
        nl.set_link("skren1", LinkChange(new_name="skv0"))
    assert err.value.errno == 17  # EEXIST
    assert "skren1" in str(err.value)


def test_move_link_renames_and_configures_in_one_call(
    nl: Pyroute2Netlink, netns: tuple[Path, Path]
) -> None:
    nl.move_link(
        "skv0", netns[1], LinkChange(new_name="net1", mtu=1280, mac="02:00:00:00:0a:01", up=True)
    )
    with pytest.raises(NotFound):
        nl.link("skv0")
    with nl.in_netns(netns[1]) as pod:
        moved = pod.link("net1")
        assert (moved.mtu, moved.mac, moved.up) == (1280, "02:00:00:00:0a:01", True)
        assert moved.altnames == ("skalt0",)  # altnames travel with the netdev
        pod.del_altname("net1", "skalt0")
        assert pod.link("net1").altnames == ()
        pod.move_link("net1", netns[0], LinkChange(new_name="skv0"))
    back = nl.link("skv0")
    assert back.up is False  # the kernel closes a netdev it moves


def test_addresses_and_routes(nl: Pyroute2Netlink) -> None:
    nl.set_link("skv0", LinkChange(up=True))
    nl.set_link("skv1", LinkChange(up=True))
    nl.add_address("skv0", "10.77.0.2/24")
    assert [a.cidr for a in nl.addresses("skv0") if a.family == 4] == ["10.77.0.2/24"]
    with pytest.raises(HostError) as err:
        nl.add_address("skv0", "10.77.0.2/24")
    assert err.value.errno == 17  # EEXIST
    nl.add_route("10.88.0.0/16", gateway="10.77.0.1", dev="skv0")
    routes = {(r.dst, r.gateway) for r in nl.routes("skv0")}
    assert ("10.88.0.0/16", "10.77.0.1") in routes
    assert ("10.77.0.0/24", None) in routes  # the connected route of the address
    nl.add_route("default", gateway="10.77.0.1")
    assert any(r.dst == "default" for r in nl.routes())
    nl.flush_addresses("skv0")
    assert [a for a in nl.addresses("skv0") if a.family == 4] == []
    # IPv4 routes through the link went with its addresses
    assert [r for r in nl.routes("skv0") if ":" not in r.dst and r.dst != "default"] == []


def test_wait_link(nl: Pyroute2Netlink) -> None:
    assert nl.wait_link("skv1", 1.0).name == "skv1"
    with pytest.raises(Timeout):
        nl.wait_link("nosuch0", 0.2)


def test_missing_netns_is_a_host_error() -> None:
    with pytest.raises(HostError) as err:
        Pyroute2Netlink(Path("/run/netns/sriovkit-no-such-netns"))
    assert err.value.errno == 2  # ENOENT


def test_remembered_indexes_follow_our_renames_and_moves(
    nl: Pyroute2Netlink, netns: tuple[Path, Path]
) -> None:
    # The seam remembers name -> ifindex from its lookups (one round trip saved per request);
    # a rename or move it made itself, or a request failing on a link gone behind its back,
    # must not leave a name pointing at the wrong place.
    host, pod = netns
    nl.link("skv0")
    nl.set_link("skv0", LinkChange(new_name="skv9"))
    with pytest.raises(NotFound):
        nl.add_address("skv0", "10.1.0.1/24")
    nl.add_address("skv9", "10.1.0.1/24")
    assert [a.cidr for a in nl.addresses("skv9") if a.family == 4] == ["10.1.0.1/24"]
    nl.move_link("skv9", pod, LinkChange())
    with pytest.raises(NotFound):
        nl.add_address("skv9", "10.1.0.2/24")
    # Moved away by someone else after the seam looked it up: a clean NotFound, then a fresh
    # lookup once it is back.
    nl.link("skv1")
    ip("-n", host.name, "link", "set", "skv1", "netns", pod.name)
    with pytest.raises(NotFound):
        nl.add_address("skv1", "10.1.0.3/24")
    ip("-n", pod.name, "link", "set", "skv1", "netns", host.name, "name", "skv1")
    nl.add_address("skv1", "10.1.0.3/24")
    assert [a.cidr for a in nl.addresses("skv1") if a.family == 4] == ["10.1.0.3/24"]


def test_link_states_say_what_links_say(nl: Pyroute2Netlink) -> None:
    # The device plugin's health reads admin state and carrier only: a dump without VF lists,
    # or one request per named link (a missing one is left out).
    nl.set_link("skv0", LinkChange(up=True))
    nl.set_link("skv1", LinkChange(up=True))
    nl.wait_link("skv0", 2.0)

    def whole() -> dict[str, tuple[bool, bool]]:
        return {lk.name: (lk.up, lk.carrier) for lk in nl.links()}

    for _ in range(50):  # carrier follows the peer asynchronously (linkwatch)
        if whole()["skv0"] == (True, True):
            break
        time.sleep(0.02)
    assert {s.name: (s.up, s.carrier) for s in nl.link_states()} == whole()
    named = nl.link_states({"skv0", "gone0"})
    assert [(s.name, s.up, s.carrier) for s in named] == [("skv0", True, True)]
    nl.set_link("skv1", LinkChange(up=False))
    for _ in range(50):
        if not whole()["skv0"][1]:
            break
        time.sleep(0.02)
    assert {s.name: (s.up, s.carrier) for s in nl.link_states({"skv0", "skv1"})} == {
        "skv0": (True, False), "skv1": (False, False)
    }  # fmt: skip


def _decoded_by_pyroute2(msg: Any) -> LinkInfo:
    """The reference: `LinkInfo` from pyroute2's own decoding of every attribute."""
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    props = msg.get_attr("IFLA_PROP_LIST")
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        mac=str(msg.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN").lower(),
        carrier=bool(msg.get_attr("IFLA_CARRIER")),
        up=bool(int(msg["flags"]) & 1),
        kind=linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None,
        altnames=tuple(props.get_attrs("IFLA_ALT_IFNAME")) if props is not None else (),
        num_vfs=int(msg.get_attr("IFLA_NUM_VF") or 0),
        parent=msg.get_attr("IFLA_PARENT_DEV_NAME"),
        link_netnsid=msg.get_attr("IFLA_LINK_NETNSID"),
        master=msg.get_attr("IFLA_MASTER"),
        link=msg.get_attr("IFLA_LINK"),
        parent_bus=msg.get_attr("IFLA_PARENT_DEV_BUS_NAME"),
        max_mtu=msg.get_attr("IFLA_MAX_MTU"),
    )


def test_direct_link_reading_equals_pyroute2s_decoding(netns: tuple[Path, Path]) -> None:
    """`rtnl_link.parse_link` (the one reading of RTM_NEWLINK: the hot path's, and through
    `link_info` that of every message pyroute2 received) gives exactly the `LinkInfo` that
    pyroute2's full decoding gives, for every kind of link the kernel here has: loopback, veth
    pairs (peer in this netns, peer in another, with altname, down and up, with a custom MTU and
    MAC), and the root netns's own links; from single requests and from a dump."""
    host, pod = netns
    ip("-n", host.name, "link", "add", "skv2", "mtu", "1400", "address", "02:00:00:00:00:42",
       "type", "veth", "peer", "name", "skv3", "netns", pod.name)  # fmt: skip
    ip("-n", host.name, "link", "set", "skv2", "up")
    ip("-n", host.name, "link", "set", "skv0", "up")
    ip("-n", pod.name, "link", "set", "skv3", "up")
    for where in (host, pod, None):
        with Pyroute2Netlink(where) as seam:
            names = [lk.name for lk in seam.links()]
            assert names
            for name in names:
                for vfs in (True, False):
                    fast = seam._link_info(name=name, vfs=vfs)
                    decoded = seam._getlink(name=name, vfs=vfs)
                    assert fast == _decoded_by_pyroute2(decoded) == link_info(decoded), name
                    assert seam._link_info(index=fast.index, vfs=vfs) == fast
            dumped = list(seam._ipr.get_links())
            assert [link_info(m) for m in dumped] == [_decoded_by_pyroute2(m) for m in dumped]
    with Pyroute2Netlink(host) as seam:
        veth = seam.link("skalt0")  # by altname, as the kernel resolves it
        assert (veth.name, veth.altnames, veth.kind, veth.up) == (
            "skv0", ("skalt0",), "veth", True
        )  # fmt: skip
        peer = seam.link("skv2")
        assert (peer.mtu, peer.mac, peer.link_netnsid is not None) == (
            1400, "02:00:00:00:00:42", True
        )  # fmt: skip
