"""Which boot this is: the kernel's boot id and the time it booted (read from /proc).

The CNI plugin's attachment and allocation records describe kernel state (a VF's netdev in a pod
netns, its PF-side attributes) that does not survive a reboot, so they are written without
fsync (host/state.py) and stamped with the boot id of the boot that wrote them: a record of an
earlier boot is never applied to this boot's VFs (ops/cni/lifecycle.py `release`).

The boot time settles what an unreadable record is (`StateStore` reads): without fsync, a
power loss can leave a record zero-length or truncated; one last modified before this boot
started is an earlier boot's leftover, one modified since could only have been damaged by
someone editing the state directory.
"""

from __future__ import annotations

import functools
from pathlib import Path

PROC = Path("/proc")


def boot_id(proc: Path = PROC) -> str | None:
    """This boot's id (`/proc/sys/kernel/random/boot_id`, a UUID), None if unreadable."""
    try:
        text = (proc / "sys/kernel/random/boot_id").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def boot_time(proc: Path = PROC) -> float | None:
    """When this boot started (`btime` of /proc/stat, seconds since the epoch), None if
    unreadable."""
    try:
        with open(proc / "stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def cached_boot_id(proc: Path = PROC) -> str | None:
    """`boot_id`, read once per process (it cannot change while the process lives)."""
    return boot_id(proc)


def predates_boot(mtime: float, proc: Path = PROC) -> bool:
    """True when a file last modified at `mtime` was written before this boot started (False
    when the boot time is unknown: nothing is then taken for a leftover)."""
    started = boot_time(proc)
    return started is not None and mtime < started


__all__ = ["PROC", "boot_id", "boot_time", "cached_boot_id", "predates_boot"]
