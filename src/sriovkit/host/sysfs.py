"""`Sysfs(root)`: read and write the kernel's PCI/netdev view under a root directory.

(Skeleton: the reading side is filled in by the inventory work.)
"""

from __future__ import annotations

import errno as errno_mod
import os
from pathlib import Path

from sriovkit.errors import HostError


class Sysfs:
    """The sysfs + procfs seam. `root` is treated as `/` (a simulated host or a real one)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        """`rel` (an absolute-looking path like `/sys/bus/pci`) under this root."""
        return self.root / rel.lstrip("/")

    def write(self, rel: str, value: str) -> None:
        """Write one sysfs attribute, the single write primitive every side effect goes through.

        The kernel answers a sysfs write with an errno (EBUSY for sriov_numvfs while VFs exist,
        ENODEV/EINVAL from bind); it is mapped to HostError with that errno kept.
        """
        target = self.path(rel)
        try:
            fd = os.open(target, os.O_WRONLY)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            code = exc.errno or errno_mod.EIO
            raise HostError(
                f"failed to write {value!r} to {rel}: {os.strerror(code)}", errno=code
            ) from exc
