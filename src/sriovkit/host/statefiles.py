"""Low-level helpers of the state store: the flock with a time limit, the sweep of temp files
that a writer killed between create and rename left behind, and the removal of an earlier
boot's unreadable record."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time

from sriovkit.errors import Busy

STALE_TEMP_AGE = 600.0
"""Seconds after which an unlocked temp file in the state directory is a dead writer's."""


def sweep_temps(dfd: int, names: list[str]) -> None:
    """Delete the temp files in directory `dfd` that a writer killed mid-write left behind.

    A temp file is stale when no process holds its flock (a writer locks it right after
    creating it and keeps it until the rename is done; the kernel drops a dead writer's lock)
    and it is older than `STALE_TEMP_AGE` (which covers the instant between create and flock,
    and a writer stopped there: SIGSTOP, a frozen cgroup). The pid in the name is not used:
    the agent runs in its DaemonSet container's pid namespace and the in-process fallback in
    the host's, so one cannot tell from a pid whether the other's writer is alive (a live
    writer could look dead, or a reused pid a dead one alive); a flock is on the shared inode
    and means the same to both. Best effort: a file that cannot be checked is left alone.
    """
    now = time.time()
    for name in names:
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError:
            continue  # renamed meanwhile, or not ours to touch (a symlink)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st = os.fstat(fd)
            # Still the file we locked (not renamed and replaced meanwhile), and old enough.
            current = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (
                stat.S_ISREG(st.st_mode)
                and (st.st_dev, st.st_ino) == (current.st_dev, current.st_ino)
                and now - st.st_mtime > STALE_TEMP_AGE
            ):
                os.unlink(name, dir_fd=dfd)
        except OSError:
            pass  # locked by a live writer (BlockingIOError), or gone
        finally:
            os.close(fd)


def discard_leftover(dfd: int, name: str, seen: os.stat_result, temp: str) -> None:
    """Remove the record `name` in directory `dfd` if it is still the file `seen` describes.

    Moved aside to `temp` first (a temp name `sweep_temps` knows), then unlinked: if a writer
    replaced the record since it was read, what was moved aside is that writer's record, and it
    is linked back (unless a newer one is there already). So only the file that was read and
    judged a leftover is ever removed, whoever writes meanwhile.
    """
    try:
        os.rename(name, temp, src_dir_fd=dfd, dst_dir_fd=dfd)
    except FileNotFoundError:
        return
    try:
        moved = os.stat(temp, dir_fd=dfd, follow_symlinks=False)
        if (moved.st_dev, moved.st_ino) != (seen.st_dev, seen.st_ino):
            with contextlib.suppress(FileExistsError):
                os.link(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    finally:
        os.unlink(temp, dir_fd=dfd)


def flock_within(fd: int, what: str, timeout: float | None) -> None:
    """Take an exclusive flock on `fd`: wait forever (`timeout` None) or Busy after `timeout` s."""
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(
                    f"{what} is locked by another operation (waited {timeout:g} s); "
                    "try again later"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
        else:
            return


__all__ = ["STALE_TEMP_AGE", "discard_leftover", "flock_within", "sweep_temps"]
