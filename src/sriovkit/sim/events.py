"""The simulated kernel's events: what `host/events.py` gets from the real kernel's netlink.

On a simulated host nothing announces a `sriov_numvfs` write or a link change, so the simulated
kernel does: every handled sysfs write (`SimSysfs`: VFs created or removed, bind, unbind, probe)
publishes a `device` event naming the PCI function, and every change of the fake netlink world
(`FakeSeam._change`, `FakeNetlink.set_carrier`) a `link` event naming the links that changed, as
rtnetlink's messages name their netdev: the listener re-reads those links only. A listener (the
agent's `SimEvents`) binds a unix datagram socket in `ROOT/.sriovkit-sim/events/`; a publisher
sends one datagram to each socket there. Datagrams are prompt (select() wakes at once, unlike
polling a file), need no lock, and a listener that died leaves a socket nobody answers: sending
to it fails and is ignored. With no listener, publishing costs one listdir of an empty directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Sequence
from itertools import count
from pathlib import Path

from sriovkit.host.events import Event

EVENTS_DIR = ".sriovkit-sim/events"
MAX_NAMES = 64
"""Above this many links in one change, the event names none (the listener reads them all)."""
_serial = count()
_serial_lock = threading.Lock()


def publish(root: Path, kind: str, name: str | Sequence[str] | None = None) -> None:
    """Tell every listener of the simulated host at `root` that something changed: `name` the
    device or link, or the links (one datagram for all of them, as the kernel's messages of one
    change arrive together); more than `MAX_NAMES` or none: an event naming nothing."""
    where = Path(root) / EVENTS_DIR
    try:
        listeners = os.listdir(where)
    except OSError:
        return
    if not listeners:
        return
    names = [name] if isinstance(name, str) else list(name or ())
    # Netdev names hold no whitespace (the kernel's dev_valid_name), so a space separates them.
    payload = f"{kind} {' '.join(names) if len(names) <= MAX_NAMES else ''}".encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        for entry in listeners:
            with contextlib.suppress(OSError):  # a listener gone or full: it rescans anyway
                sock.sendto(payload, str(where / entry))


class SimEvents:
    """The agent's end: an `EventSource` over the simulated host's published events."""

    def __init__(self, root: Path) -> None:
        where = Path(root) / EVENTS_DIR
        where.mkdir(parents=True, exist_ok=True)
        with _serial_lock:
            serial = next(_serial)
        self.path = where / f"{os.getpid()}.{serial}.sock"
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.bind(str(self.path))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    def fileno(self) -> int:
        """The socket, readable when an event waits."""
        return self._sock.fileno()

    def read(self) -> list[Event]:
        """The events waiting now."""
        out: list[Event] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return out
            kind, _, rest = data.decode(errors="replace").partition(" ")
            if kind in ("link", "device", "rescan"):
                names: list[str | None] = [*rest.split()] or [None]
                out.extend(Event(kind, name) for name in names)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop listening and remove the socket."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


__all__ = ["EVENTS_DIR", "MAX_NAMES", "SimEvents", "publish"]
