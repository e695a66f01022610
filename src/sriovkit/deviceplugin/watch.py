"""Waking up promptly when kubelet's device-plugins directory changes.

kubelet, when it (re)starts, deletes every socket in `device-plugins/` (ours too) and creates a
new `kubelet.sock`; a plugin must then re-create its socket and register again, and until it does
the node shows no capacity for its resources. sriov-network-device-plugin notices by polling;
here the directory is watched with inotify (through ctypes: Linux's libc has the three calls, and
no extra package is needed), so a change wakes the agent within milliseconds.

`DirWatch.wait(timeout)` returns on a change in the directory, on `interrupt()`, or after
`timeout`. The caller re-checks the directory's state each time it returns (the events themselves
are not parsed: any change means "look again"), so the timeout is only a safety net: for the
directory itself appearing or being replaced (the watch is re-armed on the next call), and for a
system without inotify, where it degrades to a poll at that interval.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
from pathlib import Path

log = logging.getLogger("sriovkit.agent")

_IN_CLOEXEC = os.O_CLOEXEC
_IN_NONBLOCK = os.O_NONBLOCK
# inotify(7): what changes a socket's presence or the directory's own.
_IN_ATTRIB = 0x004
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_MASK = (
    _IN_ATTRIB | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)


class DirWatch:
    """An inotify watch on one directory (or a plain timer where inotify is missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._libc: ctypes.CDLL | None = None
        self._fd = -1
        self._watched: tuple[int, int] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name, use_errno=True)
            fd = libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        except (OSError, AttributeError) as exc:
            log.warning("device plugin: no inotify (%s): watching %s every few tenths", exc, path)
            return
        if fd < 0:
            log.warning("device plugin: inotify_init1 failed (errno %d)", ctypes.get_errno())
            return
        self._libc, self._fd = libc, fd
        self._arm()

    @property
    def uses_inotify(self) -> bool:
        return self._fd >= 0

    def _arm(self) -> None:
        """Watch the directory if it is there and not already watched (a new directory at the
        same path is a new inode and needs a new watch)."""
        if self._libc is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            self._watched = None
            return
        ident = (st.st_dev, st.st_ino)
        if ident == self._watched:
            return
        if self._libc.inotify_add_watch(self._fd, os.fsencode(self.path), _MASK) >= 0:
            self._watched = ident

    def wait(self, timeout: float) -> None:
        """Return on a change, an `interrupt()`, or after `timeout` seconds."""
        self._arm()
        fds = [self._wake_r] + ([self._fd] if self._fd >= 0 else [])
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:  # drain: one wake-up per burst of events
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 65536):
                    pass

    def interrupt(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._fd = self._wake_r = self._wake_w = -1
