"""Waking up promptly when kubelet's device-plugins directory changes.

kubelet, when it (re)starts, deletes every socket in `device-plugins/` (ours too) and creates a
new `kubelet.sock`; a plugin must then re-create its socket and register again, and until it does
the node shows no capacity for its resources. sriov-network-device-plugin notices by polling;
here the directory is watched with inotify (`host/inotify.py`), so a change wakes the agent
within milliseconds.

`DirWatch.wait(timeout)` returns on a change in the directory, on `interrupt()`, or after
`timeout`. The caller re-checks the directory's state each time it returns (the events themselves
are not parsed: any change means "look again"), so the timeout is only a safety net: for the
directory itself appearing or being replaced (the watch is re-armed on the next call), and for a
system without inotify, where it degrades to a poll at that interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from pathlib import Path

from sriovkit.host.inotify import (
    IN_ATTRIB,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Inotify,
)

log = logging.getLogger("sriovkit.agent")

# What changes a socket's presence or the directory's own.
_MASK = (
    IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
    | IN_MOVE_SELF
)


class DirWatch:
    """An inotify watch on one directory (or a plain timer where inotify is missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inotify: Inotify | None = None
        self._watched: tuple[int, int] | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self._inotify = Inotify()
        except OSError as exc:
            log.warning("device plugin: no inotify (%s): watching %s every few tenths", exc, path)
            return
        self._arm()

    @property
    def uses_inotify(self) -> bool:
        return self._inotify is not None

    def _arm(self) -> None:
        """Watch the directory if it is there and not already watched (a new directory at the
        same path is a new inode and needs a new watch)."""
        if self._inotify is None:
            return
        try:
            st = os.stat(self.path)
        except OSError:
            self._watched = None
            return
        ident = (st.st_dev, st.st_ino)
        if ident == self._watched:
            return
        if self._inotify.add_watch(self.path, _MASK) is not None:
            self._watched = ident

    def wait(self, timeout: float) -> None:
        """Return on a change, an `interrupt()`, or after `timeout` seconds."""
        self._arm()
        fds = [self._wake_r] + ([self._inotify.fileno()] if self._inotify is not None else [])
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._inotify is not None and self._inotify.fileno() in ready:
            self._inotify.read()  # drain: one wake-up per burst of events
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 65536):
                    pass

    def interrupt(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
