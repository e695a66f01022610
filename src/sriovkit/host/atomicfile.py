"""Write a file atomically: a reader sees the old contents or the new ones, never a torn file.

The one way sriovkit replaces a file (state records, the installed CNI plugin, the lab's and the
simulated host's own files): write a temp file in the same directory (a rename only replaces
atomically within one file system), fsync it, give it its mode, rename it over the target, then
fsync the directory (the rename is durable only once the directory is). Raises `OSError`;
callers say what they were writing when they map it to a `HostError`.

`durable=False` skips both fsyncs: the replacement is still atomic for every reader and
survives the writer being killed (the page cache outlives a process), but not a power loss,
after which the file may be old, new, empty or truncated. For files that describe state that
dies with the boot anyway (the CNI plugin's attachment and allocation records, host/state.py),
where the fsyncs would only slow the CNI ADD/DEL path down.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def temp_name(name: str) -> str:
    """A hidden temp name for `name` no other writer uses (pid and a monotonic clock)."""
    return f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp"


def write_at(
    dfd: int,
    name: str,
    data: bytes,
    *,
    mode: int = 0o600,
    temp: str | None = None,
    hold_lock: bool = False,
    durable: bool = True,
) -> None:
    """Replace `name` in the directory open as `dfd` with `data`, atomically and durably.

    The temp file (`temp`, default `temp_name(name)`) is created with O_EXCL and O_NOFOLLOW, so
    nothing planted under that name is written through. `hold_lock` flock()s it from creation to
    rename: a sweeper can then tell a live writer's temp file from a dead one's (the kernel
    drops a dead process's lock). `durable=False`: no fsync of the file or the directory (see
    the module doc). On failure the temp file is removed and the error raised.
    """
    tmp = temp or temp_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode, dir_fd=dfd)
    try:
        try:
            if hold_lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.fchmod(fd, mode)  # the mode given to open() is filtered through the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    if durable:
        os.fsync(dfd)


def write_file(path: Path, data: bytes, *, mode: int = 0o644, parents: bool = False) -> None:
    """Replace the file at `path` with `data` atomically (see `write_at`); `parents`: create
    its directory first. The directory is opened as named (a symlinked directory is followed);
    the file itself is never written through a symlink."""
    directory = Path(path).parent
    if parents:
        directory.mkdir(parents=True, exist_ok=True)
    dfd = os.open(directory, _DIR_FLAGS)
    try:
        write_at(dfd, Path(path).name, data, mode=mode)
    finally:
        os.close(dfd)


__all__ = ["temp_name", "write_at", "write_file"]
