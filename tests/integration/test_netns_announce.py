"""Gratuitous ARP and unsolicited NA, judged by a real kernel: a neighbour's cache follows them."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.host.netns import announce, na_frame

pytestmark = pytest.mark.root

NEW_MAC = "02:00:00:aa:bb:01"


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two netns joined by a veth pair `vpod` (the pod side) / `vnb` (a neighbour)."""
    pod, peer = f"ska-{uuid.uuid4().hex[:6]}", f"skb-{uuid.uuid4().hex[:6]}"
    for ns in (pod, peer):
        _ip("netns", "add", ns)
    try:
        tmp_a, tmp_b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
        _ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _ip("link", "set", tmp_a, "netns", pod, "name", "vpod", "address", NEW_MAC)
        _ip("link", "set", tmp_b, "netns", peer, "name", "vnb")
        _ip("-n", pod, "addr", "add", "10.66.0.2/24", "dev", "vpod")
        _ip("-n", pod, "addr", "add", "fd66::2/64", "dev", "vpod", "nodad")
        _ip("-n", peer, "addr", "add", "10.66.0.1/24", "dev", "vnb")
        _ip("-n", peer, "addr", "add", "fd66::1/64", "dev", "vnb", "nodad")
        for ns, dev in ((pod, "vpod"), (peer, "vnb")):
            _ip("-n", ns, "link", "set", "dev", dev, "up")
        # the neighbour still believes the addresses live at an old MAC (the VF's predecessor)
        for addr in ("10.66.0.2", "fd66::2"):
            _ip("-n", peer, "neigh", "replace", addr, "lladdr", "02:00:00:00:00:99", "dev", "vnb",
                "nud", "stale")  # fmt: skip
        yield pod, peer
    finally:
        for ns in (pod, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_neighbour_caches_learn_the_new_mac(pair: tuple[str, str]) -> None:
    pod, peer = pair
    sent = announce(Path(f"/run/netns/{pod}"), "vpod", NEW_MAC, ["10.66.0.2", "fd66::2"])
    assert sent == 2
    for addr in ("10.66.0.2", "fd66::2"):
        line = _ip("-n", peer, "neigh", "show", addr, "dev", "vnb")
        assert NEW_MAC in line, f"{addr}: {line!r}"


def test_na_checksum_verifies() -> None:
    frame = na_frame(NEW_MAC, "fd66::2")
    ip6, icmp = frame[14:54], frame[54:]
    target = bytes.fromhex("fd66" + "0" * 26 + "02")
    assert icmp[0] == 136 and ip6[7] == 255 and icmp[8:24] == target
    pseudo = ip6[8:40] + len(icmp).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    data = pseudo + icmp
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # one's complement sum including the checksum
