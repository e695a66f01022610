"""inotify(7) through ctypes: Linux's libc has the three calls, so no package is needed.

The agent watches directories, not files: kubelet re-creates its device-plugins directory's
sockets, and a Kubernetes ConfigMap volume replaces its files by swapping a `..data` symlink, so
a watch on a file's inode would go stale at the first update. Callers use the events only as a
prompt to look again at the state they care about; they never trust an event's details alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# inotify(7)'s event bits.
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len (of the NUL-padded name)


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    """One event: the watch it came from, its bits, and the entry's name (empty for the
    watched directory itself)."""

    wd: int
    mask: int
    name: str


class Inotify:
    """One inotify instance. Raises OSError where the kernel or libc has no inotify (the
    caller then polls)."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK)
        except AttributeError as exc:
            raise OSError(errno.ENOSYS, f"no inotify in libc: {exc}") from None
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._libc = libc
        self._fd: int = fd

    def fileno(self) -> int:
        """The descriptor to select() on: readable when events are queued."""
        return self._fd

    def add_watch(self, path: Path, mask: int) -> int | None:
        """Watch `path` for `mask`; its watch descriptor, or None when it cannot be watched
        (gone, not permitted). The same inode twice gives the same descriptor."""
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        return wd if wd >= 0 else None

    def rm_watch(self, wd: int) -> None:
        """Stop a watch (already gone with its inode: no error)."""
        self._libc.inotify_rm_watch(self._fd, wd)

    def read(self) -> list[InotifyEvent]:
        """Every queued event, without blocking."""
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._fd, 65536):
                data += chunk
        events = []
        offset = 0
        while offset + _HEADER.size <= len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            raw = data[offset : offset + length].split(b"\0", 1)[0]
            offset += length
            events.append(InotifyEvent(wd, mask, os.fsdecode(raw)))
        return events

    def close(self) -> None:
        """Close the instance (every watch goes with it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = [
    "IN_ATTRIB", "IN_CLOSE_WRITE", "IN_CREATE", "IN_DELETE", "IN_DELETE_SELF", "IN_IGNORED",
    "IN_MODIFY", "IN_MOVED_FROM", "IN_MOVED_TO", "IN_MOVE_SELF", "IN_Q_OVERFLOW", "Inotify",
    "InotifyEvent",
]  # fmt: skip
