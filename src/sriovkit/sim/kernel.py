"""`SimSysfs`: the Sysfs seam for a simulated host, answering writes the way the kernel does.

Writes to sriov_numvfs, bind/unbind, drivers_probe, new_id and driver_override change the tree
as the PCI core would (VFs appear with their links, netdevs and IOMMU groups; drivers attach and
detach) and fail with the kernel's errno. Any other write is a plain file write.
"""

from __future__ import annotations

import errno
from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.sim.events import publish
from sriovkit.sim.machine import SimKernel, fail

__all__ = ["SimSysfs", "load_module"]


def load_module(root: Path, driver: str) -> None:
    """Load a driver module (e.g. "vfio-pci") into the simulated host at `root`."""
    SimKernel(Path(root)).load_module(driver)


class SimSysfs(Sysfs):
    """Sysfs over a tree written by `sriovkit.sim.create_host`, with kernel write semantics."""

    def __init__(self, root: Path = Path("/")) -> None:
        super().__init__(root)
        self.kernel = SimKernel(self.root)

    def load_module(self, driver: str) -> None:
        """`modprobe DRIVER` on the simulated host."""
        self.kernel.load_module(driver)

    def write(self, rel: str, value: str) -> None:
        """Write one attribute; kernel-handled attributes are emulated, the rest written as is."""
        parts = self._resolve(rel)
        try:
            handled = self._dispatch(parts, value)
        except HostError as exc:
            raise HostError(
                f"failed to write {value!r} to {rel}: {exc.message}", errno=exc.errno
            ) from exc
        if not handled:
            super().write(rel, value)
        else:
            # What the PCI core's uevent names: the device written to (bind/unbind/probe take
            # its address as the value; sriov_numvfs and driver_override sit in its directory).
            named = PciAddress.try_parse(value.strip()) or PciAddress.try_parse(parts[-2])
            publish(self.root, "device", None if named is None else str(named))

    def _resolve(self, rel: str) -> list[str]:
        """Path components of `rel` relative to the root, symlinks resolved (sys/class/net/...)."""
        full = self.path(rel)
        try:
            real = full.parent.resolve() / full.name
            return list(real.relative_to(self.root.resolve()).parts)
        except (OSError, ValueError):
            return list(Path(rel.lstrip("/")).parts)

    def _dispatch(self, parts: list[str], value: str) -> bool:
        name = parts[-1] if parts else ""
        if parts[:3] == ["sys", "bus", "pci"] and len(parts) == 4 and name == "drivers_probe":
            self.kernel.probe(_address(value))
            return True
        if parts[:4] == ["sys", "bus", "pci", "drivers"] and len(parts) == 6:
            return self._driver_file(parts[4], name, value)
        if parts[:2] == ["sys", "devices"] and len(parts) > 3:
            addr = parts[-2]
            if PciAddress.try_parse(addr) is None:
                return False
            return self._device_file(addr, name, value)
        return False

    def _driver_file(self, driver: str, name: str, value: str) -> bool:
        if name == "bind":
            self.kernel.bind(_address(value), driver)
        elif name == "unbind":
            self.kernel.unbind(_address(value), driver)
        elif name == "new_id":
            self._new_id(driver, value)
        else:
            return False
        return True

    def _new_id(self, driver: str, value: str) -> None:
        fields = value.split()
        try:
            vendor, device = int(fields[0], 16), int(fields[1], 16)
        except (IndexError, ValueError):
            raise fail(errno.EINVAL, f"bad new_id {value!r} for {driver}") from None
        kernel = self.kernel
        with kernel.locked():
            if (vendor, device) in kernel.dynids(driver):
                raise fail(errno.EEXIST, f"{vendor:04x}:{device:04x} already in {driver}")
            kernel.add_dynid(driver, vendor, device)
        # Adding an id makes the driver probe unbound devices that now match.
        for addr in sorted((kernel.root / "sys/bus/pci/devices").iterdir()):
            path = kernel.path_of(addr.name)
            if (
                path
                and kernel.driver_of(addr.name) is None
                and kernel.matches(addr.name, path, driver)
            ):
                kernel.bind(addr.name, driver)

    def _device_file(self, addr: str, name: str, value: str) -> bool:
        kernel = self.kernel
        if name == "sriov_numvfs":
            kernel.set_num_vfs(addr, value)
            return True
        if name == "sriov_drivers_autoprobe":
            text = value.strip()
            if text not in ("0", "1"):
                raise fail(errno.EINVAL, f"sriov_drivers_autoprobe takes 0 or 1, not {value!r}")
            return False  # stored as written; read back when VFs are created
        if name == "driver_override":
            text = value.strip()
            if len(text) >= 4096:
                raise fail(errno.EINVAL, "driver_override too long")
            path = kernel.path_of(addr)
            if path is None:
                raise fail(errno.ENODEV, f"no PCI device {addr}")
            kernel.tree.file(f"{path}/driver_override", (text or "(null)") + "\n")
            return True
        return False


def _address(value: str) -> str:
    addr = PciAddress.try_parse(value.strip())
    if addr is None:
        raise fail(errno.ENODEV, f"no PCI device {value.strip()!r}")
    return str(addr)
