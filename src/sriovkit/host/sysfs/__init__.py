"""The sysfs seam as a package: the reader, the write verbs and the inventory's PCI walk.

`reader.py` reads (`SysfsReader`), `writer.py` adds the write verbs (`Sysfs`, the seam), and
`pciwalk.py` is the reader's fast walk over thousands of VFs. Imports point one way only:
writer -> reader -> pciwalk, so the package has no cycle.
"""

from __future__ import annotations

from sriovkit.host.sysfs.reader import SysfsReader
from sriovkit.host.sysfs.writer import NO_OVERRIDE, Sysfs

__all__ = ["NO_OVERRIDE", "Sysfs", "SysfsReader"]
