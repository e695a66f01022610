"""Kernel events that tell the device plugin to look at the host again.

The device plugin re-discovers its pools when the host changes (VF count, driver bind/unbind,
netdevs appearing, links going down). Polling sysfs for that is slow or expensive, so it listens
to what the kernel announces:

- rtnetlink link events (`RTNLGRP_LINK`): RTM_NEWLINK on every flags/carrier/operstate change
  and RTM_DELLINK when a netdev goes; they name the netdev, so only link state is re-read;
- kobject uevents (`NETLINK_KOBJECT_UEVENT`, group 1, the kernel's own, before udev): add/remove/
  bind/unbind of PCI devices (sriov_numvfs creating VFs, drivers attaching) and of net devices.

Both are raw AF_NETLINK sockets from the stdlib (no pyroute2 thread, nothing to import): the
messages needed are a header and one attribute. An `EventSource` is anything with a file
descriptor to wait on and a non-blocking `read()`; the caller selects over several of them
(the simulated host's source in `sim/events.py` has the same shape), so one thread serves all.

A socket whose receive buffer overflowed (ENOBUFS: events were lost) yields a `rescan` event:
the only safe answer to lost events is to look at everything again.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass
from typing import Literal, Protocol

EventKind = Literal["link", "device", "rescan", "config"]

NETLINK_ROUTE = 0
NETLINK_KOBJECT_UEVENT = 15
_RTMGRP_LINK = 0x1
_UEVENT_KERNEL_GROUP = 1
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_IFLA_IFNAME = 3
_NLMSG_HDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BBHiII")
_RTATTR = struct.Struct("=HH")
_RCVBUF = 4 << 20  # a burst of 4096 VFs appearing must not overflow the buffer
# uevent actions that can change what a pool holds; "change" and "online" are noise here.
_UEVENT_ACTIONS = frozenset({"add", "remove", "bind", "unbind", "move"})


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that changed: `link` (a netdev's state, `name` its name), `device` (a PCI
    device or netdev appeared, went or changed driver: `name` the PCI address or netdev when
    known), `rescan` (events were lost: look at everything), or `config` (the config file's
    directory changed: `host/filewatch.py`; compare the file before acting)."""

    kind: EventKind
    name: str | None = None
    action: str = ""


class EventSource(Protocol):
    """A source of host events the device plugin's discovery waits on with select()."""

    def fileno(self) -> int:
        """The descriptor that becomes readable when events are waiting."""
        ...

    def read(self) -> list[Event]:
        """The events waiting now (never blocks; empty when none)."""
        ...

    def close(self) -> None:
        """Release the descriptor."""
        ...


class _NetlinkSource:
    def __init__(self, protocol: int, kind: int, groups: int) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, kind | socket.SOCK_CLOEXEC, protocol)
        try:
            with contextlib.suppress(OSError):  # the default still works; overflow = rescan
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            self._sock.bind((0, groups))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    out.append(Event("rescan"))
                    continue
                raise
            out.extend(self._parse(data))

    def _parse(self, data: bytes) -> list[Event]:
        raise NotImplementedError

    def close(self) -> None:
        self._sock.close()


class LinkEvents(_NetlinkSource):
    """rtnetlink link events of the netns the process is in (the host's, for the agent)."""

    def __init__(self) -> None:
        super().__init__(NETLINK_ROUTE, socket.SOCK_RAW, _RTMGRP_LINK)

    def _parse(self, data: bytes) -> list[Event]:
        return parse_link_messages(data)


class UeventEvents(_NetlinkSource):
    """The kernel's kobject uevents (group 1: straight from the kernel, not udev's rebroadcast)."""

    def __init__(self) -> None:
        super().__init__(NETLINK_KOBJECT_UEVENT, socket.SOCK_DGRAM, _UEVENT_KERNEL_GROUP)

    def _parse(self, data: bytes) -> list[Event]:
        event = parse_uevent(data)
        return [] if event is None else [event]


def parse_link_messages(data: bytes) -> list[Event]:
    """The RTM_NEWLINK / RTM_DELLINK messages of one datagram, by netdev name."""
    out: list[Event] = []
    off = 0
    while off + _NLMSG_HDR.size <= len(data):
        length, mtype, _, _, _ = _NLMSG_HDR.unpack_from(data, off)
        if length < _NLMSG_HDR.size or off + length > len(data):
            break
        if mtype in (_RTM_NEWLINK, _RTM_DELLINK):
            name = _ifname(data[off + _NLMSG_HDR.size : off + length])
            out.append(Event("link", name, "del" if mtype == _RTM_DELLINK else "new"))
        off += (length + 3) & ~3
    return out


def _ifname(body: bytes) -> str | None:
    pos = _IFINFOMSG.size
    while pos + _RTATTR.size <= len(body):
        rta_len, rta_type = _RTATTR.unpack_from(body, pos)
        if rta_len < _RTATTR.size:
            return None
        if rta_type == _IFLA_IFNAME:
            raw = body[pos + _RTATTR.size : pos + rta_len]
            return raw.split(b"\0", 1)[0].decode(errors="replace")
        pos += (rta_len + 3) & ~3
    return None


def parse_uevent(data: bytes) -> Event | None:
    """A PCI or net uevent that may change a pool, else None.

    The kernel's format: `ACTION@DEVPATH` then NUL-separated `KEY=VALUE` pairs.
    """
    if data.startswith(b"libudev"):
        return None  # udev's rebroadcast (group 2); we only bind group 1, but be safe
    fields = data.split(b"\0")
    env: dict[str, str] = {}
    for item in fields[1:]:
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    action = env.get("ACTION", "")
    if action not in _UEVENT_ACTIONS:
        return None
    subsystem = env.get("SUBSYSTEM")
    if subsystem == "pci":
        return Event("device", env.get("PCI_SLOT_NAME"), action)
    if subsystem == "net":
        return Event("device", env.get("INTERFACE"), action)
    return None


def kernel_sources() -> list[EventSource]:
    """The real kernel's two sources, opened now (OSError when netlink is not available)."""
    link = LinkEvents()
    try:
        return [link, UeventEvents()]
    except BaseException:
        link.close()
        raise


__all__ = [
    "Event",
    "EventKind",
    "EventSource",
    "LinkEvents",
    "UeventEvents",
    "kernel_sources",
    "parse_link_messages",
    "parse_uevent",
]
