"""Network namespaces as CNI hands them over (a path), and traffic sent from inside one.

Nothing here moves the calling thread into another namespace: the agent's main thread must stay
in the host netns (DESIGN.md), so anything that needs a socket inside a pod's namespace runs in a
short-lived thread that enters it, does its work and exits.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

from sriovkit.errors import HostError

HOST_NETNS = Path("/proc/self/ns/net")
"""The netns of the process's main thread: the host netns for the agent and the plugin."""

_CLONE_NEWNET = 0x40000000
_ETH_P_ARP = 0x0806
_ETH_P_IPV6 = 0x86DD
_IPPROTO_ICMPV6 = 58
_BROADCAST = b"\xff" * 6


def netns_alive(path: Path) -> bool:
    """True when `path` is a live network namespace (a bind-mounted or /proc nsfs file).

    After `ip netns del` the file is gone; after the last process of a pod dies its
    `/proc/PID/ns/net` is gone. A plain file left behind (a mount point whose nsfs mount was
    removed) is not a namespace: every nsfs inode shares one device number, so compare it with
    our own namespace's.
    """
    try:
        st = os.stat(path)
        ours = os.stat(HOST_NETNS)
    except OSError:
        return False
    return st.st_dev == ours.st_dev


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, _CLONE_NEWNET)
        return
    import ctypes  # noqa: PLC0415 - only for Python 3.11

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def enter_netns(netns: Path) -> None:
    """Move the CALLING THREAD into the netns at `netns`: only ever from a short-lived thread."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def socket_in_netns(
    netns: Path, family: int, kind: int, proto: int, bind: tuple[object, ...] | None = None
) -> socket.socket:
    """A socket created (and optionally bound) inside `netns`, without moving this thread.

    A socket keeps the namespace it was created in, so a thread that enters the namespace,
    opens it and exits gives the caller a pod-side socket while the caller stays home.
    """
    box: dict[str, object] = {}

    def enter_and_open() -> None:
        try:
            enter_netns(netns)
            sock = socket.socket(family, kind, proto)
            try:
                if bind is not None:
                    sock.bind(bind)
            except OSError:
                sock.close()
                raise
            box["sock"] = sock
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=enter_and_open, name="sriovkit-netns-socket", daemon=True)
    worker.start()
    worker.join()
    error = box.get("error")
    if isinstance(error, OSError):
        code = error.errno or errno_mod.EIO
        raise HostError(f"cannot open a socket in {netns}: {os.strerror(code)}", code)
    sock = box["sock"]
    assert isinstance(sock, socket.socket)
    return sock


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def garp_frame(mac: str, address: str) -> bytes:
    """A gratuitous ARP request announcing `address` at `mac` (sender IP == target IP)."""
    hw = _mac_bytes(mac)
    ip = ipaddress.IPv4Address(address).packed
    header = _BROADCAST + hw + struct.pack("!H", _ETH_P_ARP)
    # htype Ethernet, ptype IPv4, hlen 6, plen 4, op 1 (request): RFC 5227 prefers requests.
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip + b"\x00" * 6 + ip
    return header + arp


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def na_frame(mac: str, address: str) -> bytes:
    """An unsolicited Neighbour Advertisement of `address` at `mac` to all nodes (RFC 4861 7.2.6).

    Override flag set so neighbours replace a cached entry (the VF's MAC is new to them);
    Solicited flag clear; the target link-layer address option carries the MAC.
    """
    hw = _mac_bytes(mac)
    src = ipaddress.IPv6Address(address).packed
    dst = ipaddress.IPv6Address("ff02::1").packed
    body = struct.pack("!I", 0x2000_0000) + src + struct.pack("!BB", 2, 1) + hw
    pseudo = src + dst + struct.pack("!I3xB", 4 + len(body), _IPPROTO_ICMPV6)
    csum = _checksum(pseudo + struct.pack("!BBH", 136, 0, 0) + body)
    icmp = struct.pack("!BBH", 136, 0, csum) + body
    ip6 = struct.pack("!IHBB", 6 << 28, len(icmp), _IPPROTO_ICMPV6, 255) + src + dst
    eth = b"\x33\x33\x00\x00\x00\x01" + hw + struct.pack("!H", _ETH_P_IPV6)
    return eth + ip6 + icmp


def announce(netns: Path, ifname: str, mac: str, addresses: Iterable[str]) -> int:
    """Send a gratuitous ARP per IPv4 and an unsolicited NA per IPv6 address; returns the count.

    Neighbours (and the switch behind a real VF) learn the pod's new MAC at once instead of
    after their ARP entries expire. Raises HostError when the socket cannot be opened or a
    frame cannot be sent (e.g. the link has no carrier yet).
    """
    frames = [
        garp_frame(mac, a) if ipaddress.ip_address(a).version == 4 else na_frame(mac, a)
        for a in addresses
    ]
    if not frames:
        return 0
    box: dict[str, OSError] = {}
    sent = threading.Event()

    def enter_and_send() -> None:
        try:
            enter_netns(netns)
            # Protocol 0: a send-only packet socket. One bound to ETH_P_ARP registers a receive
            # hook, and tearing that down waits for an RCU grace period (~15 ms each for bind
            # and close) that the ADD would otherwise pay.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            box["error"] = exc
            sent.set()
            return
        try:
            sock.bind((ifname, 0))
            for frame in frames:
                sock.send(frame)
        except OSError as exc:
            box["error"] = exc
        finally:
            sent.set()
            sock.close()  # after the caller has moved on: nobody waits for this close

    worker = threading.Thread(target=enter_and_send, name="sriovkit-announce", daemon=True)
    worker.start()
    sent.wait()
    if "error" in box:
        code = box["error"].errno or errno_mod.EIO
        raise HostError(
            f"cannot announce {ifname}'s addresses in {netns}: {os.strerror(code)}", code
        )
    return len(frames)


__all__ = [
    "HOST_NETNS",
    "announce",
    "enter_netns",
    "garp_frame",
    "na_frame",
    "netns_alive",
    "socket_in_netns",
]
