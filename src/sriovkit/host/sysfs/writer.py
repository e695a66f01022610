"""`Sysfs(root)`: the sysfs seam, the reader plus the write verbs the VF lifecycle needs.

Each verb is one write to one kernel attribute, with its path built here and nowhere else
(drivers/pci/pci-sysfs.c, iov.c and drivers/base/bus.c define them). Every verb goes through
`write`, the one write primitive, so a simulated host (`sriovkit.sim.kernel.SimSysfs`) answers
all of them by emulating that single method.
"""

from __future__ import annotations

import errno as errno_mod
import os

from sriovkit.errors import HostError
from sriovkit.host.sysfs.reader import PCI_DEVICES, PCI_DRIVERS, SysfsReader
from sriovkit.model.pci import PciAddress

# What `driver_override` reads back as when no override is set (pci-sysfs.c prints "(null)").
NO_OVERRIDE = "(null)"


class Sysfs(SysfsReader):
    """The sysfs + procfs seam. `root` is treated as `/` (a simulated host or a real one)."""

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

    # -- SR-IOV on a PF ------------------------------------------------------------------------
    def set_num_vfs(self, pf: PciAddress, count: int) -> None:
        """Write `count` to the PF's `sriov_numvfs` (the kernel refuses N -> M, both non-zero)."""
        self.write(f"/{PCI_DEVICES}/{pf}/sriov_numvfs", str(count))

    def set_drivers_autoprobe(self, pf: PciAddress, on: bool) -> None:
        """Whether VFs the PF creates from now on are probed by a driver at once."""
        self.write(f"/{PCI_DEVICES}/{pf}/sriov_drivers_autoprobe", "1" if on else "0")

    # -- driver binding ------------------------------------------------------------------------
    def set_driver_override(self, dev: PciAddress, driver: str | None) -> None:
        """Only `driver` may bind `dev` from now on; None clears the override."""
        # A lone newline clears it: the kernel strips it and stores an empty override.
        value = driver if driver and driver != NO_OVERRIDE else "\n"
        self.write(f"/{PCI_DEVICES}/{dev}/driver_override", value)

    def unbind(self, dev: PciAddress, driver: str) -> None:
        """Detach `dev` from `driver` (the driver it is bound to)."""
        self.write(f"/{PCI_DRIVERS}/{driver}/unbind", str(dev))

    def bind(self, dev: PciAddress, driver: str) -> None:
        """Attach an unbound `dev` to `driver` directly (no override, no probe of others)."""
        self.write(f"/{PCI_DRIVERS}/{driver}/bind", str(dev))

    def drivers_probe(self, dev: PciAddress) -> None:
        """Ask the PCI core to find a driver for `dev` (its override, else the id tables)."""
        self.write("/sys/bus/pci/drivers_probe", str(dev))
