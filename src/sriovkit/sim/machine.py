"""The kernel side of a simulated host: VF enable/disable, driver bind/unbind, module loading.

Each operation changes the tree the way the PCI core and the drivers change sysfs on a real
host, and fails with the errno the kernel returns in the same situation.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.model.pci import PciAddress
from sriovkit.sim.config import patch_num_vfs
from sriovkit.sim.iomem import render_iomem
from sriovkit.sim.profiles import DRIVERS, PROFILES, resource_flags
from sriovkit.sim.spec import DevSpec, HostSpec, NetSpec, PfSpec, decode, netdev_driver, vf_config
from sriovkit.sim.tree import (
    PCI_DEVICES,
    PCI_DRIVERS,
    ZERO_RES,
    Tree,
    cpu_mask,
    res_line,
    resource_text,
)

STATE_DIR = ".sriovkit-sim"
HOST_JSON = f"{STATE_DIR}/host.json"
STATE_JSON = f"{STATE_DIR}/state.json"


def fail(code: int, what: str) -> HostError:
    """A HostError carrying `code`, worded like the other sysfs write failures."""
    return HostError(f"{what}: {os.strerror(code)}", errno=code)


class SimKernel:
    """Stateful operations on one simulated root. The tree itself is the state."""

    def __init__(self, root: Path, spec: HostSpec | None = None) -> None:
        self.root = Path(root)
        self.tree = Tree(str(self.root))
        if spec is None:
            spec = decode((self.root / HOST_JSON).read_bytes())
        self.spec = spec
        self._devs = {d.address: d for d in spec.devices}
        self._pfs = {p.address: p for p in spec.pfs}
        self._state: dict[str, object] = {}
        self._batch = 0

    # -- state -------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize kernel operations (the real kernel holds the device lock)."""
        if self._batch:
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1
            return
        lock_path = self.root / STATE_DIR / "lock"
        with lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            self._state = json.loads(self.tree.read(STATE_JSON) or "{}")
            self._batch = 1
            try:
                yield
            finally:
                self._batch = 0
                self.tree.file(STATE_JSON, json.dumps(self._state))
                self.write_iomem()

    def _next_ifindex(self) -> int:
        value = int(str(self._state.get("next_ifindex", 2)))
        self._state["next_ifindex"] = value + 1
        return value

    def dynids(self, driver: str) -> list[tuple[int, int]]:
        """IDs added with `new_id`."""
        table = self._state.get("dynids", {})
        assert isinstance(table, dict)
        return [(int(v), int(d)) for v, d in table.get(driver, [])]

    def add_dynid(self, driver: str, vendor: int, device: int) -> None:
        """Record a `new_id` entry."""
        table = self._state.setdefault("dynids", {})
        assert isinstance(table, dict)
        table.setdefault(driver, []).append([vendor, device])

    # -- lookups -------------------------------------------------------------------------------
    def path_of(self, addr: str) -> str | None:
        """Root-relative directory of a present function."""
        return self.tree.readlink(f"{PCI_DEVICES}/{addr}")

    def driver_of(self, addr: str) -> str | None:
        """Name of the driver bound to `addr`, or None."""
        try:
            drv = os.readlink(self.tree.abs(f"{PCI_DEVICES}/{addr}/driver"))
        except OSError:
            return None
        return drv.rsplit("/", 1)[-1]

    def num_vfs(self, pf_addr: str) -> int:
        """Current sriov_numvfs of a PF."""
        dev = self._devs[pf_addr]
        return int((self.tree.read(f"{dev.path}/sriov_numvfs") or "0").strip())

    def pf(self, addr: str) -> PfSpec | None:
        """PF record of `addr`."""
        return self._pfs.get(addr)

    def device(self, addr: str) -> DevSpec | None:
        """Boot-time record of `addr` (None for VFs)."""
        return self._devs.get(addr)

    def _vf_owner(self, addr: str) -> tuple[PfSpec, int] | None:
        path = self.path_of(addr)
        if path is None:
            return None
        physfn = self.tree.readlink(f"{path}/physfn")
        if physfn is None:
            return None
        pf = self._pfs[physfn.rsplit("/", 1)[-1]]
        rid = PciAddress.parse(addr).routing_id - PciAddress.parse(pf.address).routing_id
        return pf, (rid - pf.offset) // pf.stride

    def _ids(self, path: str) -> tuple[int, int, int]:
        def num(name: str) -> int:
            return int((self.tree.read(f"{path}/{name}") or "0").strip(), 16)

        return num("vendor"), num("device"), num("class")

    # -- modules ------------------------------------------------------------------------------
    def load_module(self, driver: str) -> None:
        """`modprobe`: create the driver directory, then probe unbound devices it matches."""
        if driver not in DRIVERS:
            raise fail(errno.ENOENT, f"module {driver} not found")
        with self.locked():
            if self.tree.driver_loaded(driver):
                return
            self.tree.load_driver(driver)
            for name in sorted(os.listdir(self.tree.abs(PCI_DEVICES))):
                path = self.path_of(name)
                if (path and self.driver_of(name) is None and self.matches(name, path, driver)
                        and not self.probe_error(path, driver)):  # fmt: skip
                    self._bind(name, path, driver)

    # -- matching and binding ------------------------------------------------------------------
    def matches(self, addr: str, path: str, driver: str) -> bool:
        """pci_match_device: driver_override first, then the dynamic and static id tables."""
        override = (self.tree.read(f"{path}/driver_override") or "(null)").strip()
        if override != "(null)":
            return override == driver
        vendor, device, cls = self._ids(path)
        info = DRIVERS.get(driver)
        if info is None:
            return False
        if (vendor, device) in info.ids or (vendor, device) in self.dynids(driver):
            return True
        return cls in info.classes

    def probe_error(self, path: str, driver: str) -> int:
        """The errno the driver's probe() fails with for this device, 0 when it succeeds.

        vfio-pci refuses a device in no IOMMU group (EINVAL, unless noiommu mode is on).
        """
        if driver == "vfio-pci" and not self._group(path):
            return errno.EINVAL
        return 0

    def bind(self, addr: str, driver: str) -> None:
        """`echo ADDR > drivers/DRIVER/bind`: a failing probe() fails the write."""
        with self.locked():
            path = self.path_of(addr)
            if path is None or not self.matches(addr, path, driver):
                raise fail(errno.ENODEV, f"cannot bind {addr} to {driver}")
            if self.driver_of(addr) is not None:
                raise fail(errno.EBUSY, f"cannot bind {addr} to {driver}: already bound")
            err = self.probe_error(path, driver)
            if err:
                raise fail(err, f"probe of {addr} with {driver} failed")
            self._bind(addr, path, driver)

    def unbind(self, addr: str, driver: str) -> None:
        """`echo ADDR > drivers/DRIVER/unbind`."""
        with self.locked():
            path = self.path_of(addr)
            if path is None or self.driver_of(addr) != driver:
                raise fail(errno.ENODEV, f"cannot unbind {addr} from {driver}")
            self._unbind(addr, path, driver)

    def probe(self, addr: str) -> None:
        """`echo ADDR > /sys/bus/pci/drivers_probe`: attach the first matching loaded driver."""
        with self.locked():
            path = self.path_of(addr)
            if path is None:
                raise fail(errno.ENODEV, f"no PCI device {addr}")
            if self.driver_of(addr) is not None:
                return
            for driver in sorted(os.listdir(self.tree.abs(PCI_DRIVERS))):
                # A failing probe() is ignored, so that the next driver may try its luck; the
                # write itself succeeds and the device may stay unbound.
                if self.matches(addr, path, driver) and not self.probe_error(path, driver):
                    self._bind(addr, path, driver)
                    return

    def _bind(self, addr: str, path: str, driver: str) -> None:
        self.tree.attach(path, addr, driver)
        if netdev_driver(driver):
            net, up = self._netdev_for(addr)
            if net is not None:
                self.tree.netdev(path, net, self._next_ifindex(), up)
        if driver == "vfio-pci":
            group = self._group(path)
            self.tree.file(f"dev/vfio/{group}", "")

    def _unbind(self, addr: str, path: str, driver: str) -> None:
        pf = self._pfs.get(addr)
        if pf is not None and self.num_vfs(addr):
            # PF drivers disable SR-IOV in their remove(): the VFs go away with the binding.
            self._set_vfs(pf, 0)
        self.tree.drop_netdevs(path)
        self.tree.detach(path, addr, driver)
        if driver == "vfio-pci":
            group = self._group(path)
            gdev = self.tree.abs(f"sys/kernel/iommu_groups/{group}/devices")
            if not any(self.driver_of(a) == "vfio-pci" for a in os.listdir(gdev)):
                self.tree.unlink(f"dev/vfio/{group}")

    def _group(self, path: str) -> str:
        return (self.tree.readlink(f"{path}/iommu_group") or "").rsplit("/", 1)[-1]

    def _netdev_for(self, addr: str) -> tuple[NetSpec | None, bool]:
        dev = self._devs.get(addr)
        if dev is not None:
            return dev.net, True
        owner = self._vf_owner(addr)
        if owner is None:
            return None, False
        pf, index = owner
        speed = PROFILES[pf.profile].speed_mbps
        return NetSpec(f"{pf.vf_name_base}v{index}", pf.vf_mac(index), speed), False

    # -- SR-IOV --------------------------------------------------------------------------------
    def set_num_vfs(self, pf_addr: str, text: str) -> None:
        """`echo N > sriov_numvfs` with the PCI core's checks, in the kernel's order."""
        with self.locked():
            pf = self._pfs.get(pf_addr)
            if pf is None:
                raise fail(errno.ENOENT, f"{pf_addr} is not SR-IOV capable")
            value = text.strip()
            if not value.isdigit():
                raise fail(errno.EINVAL, f"invalid sriov_numvfs value {text!r} for {pf_addr}")
            count = int(value)
            if count > 0xFFFF or count > pf.total_vfs:
                raise fail(
                    errno.ERANGE,
                    f"{count} VFs requested on {pf_addr}, sriov_totalvfs is {pf.total_vfs}",
                )
            current = self.num_vfs(pf_addr)
            if count == current:
                return
            driver = self.driver_of(pf_addr)
            if driver is None or not DRIVERS[driver].sriov:
                raise fail(errno.ENOENT, f"no driver with SR-IOV support bound to {pf_addr}")
            if count and current:
                raise fail(errno.EBUSY, f"{current} VFs already enabled on {pf_addr}")
            self._set_vfs(pf, count)

    def _set_vfs(self, pf: PfSpec, count: int) -> None:
        dev = self._devs[pf.address]
        current = self.num_vfs(pf.address)
        if count == 0:
            for i in reversed(range(current)):
                self._remove_vf(pf, dev, i)
        else:
            self._add_vfs(pf, dev, count)
        self.tree.file(f"{dev.path}/sriov_numvfs", f"{count}\n")
        cfg = self.tree.abs(f"{dev.path}/config")
        self.tree.file(
            f"{dev.path}/config",
            patch_num_vfs(Path(cfg).read_bytes(), pf.sriov_cap, count, pf.ari_hierarchy),
        )

    def _add_vfs(self, pf: PfSpec, dev: DevSpec, count: int) -> None:
        parent = dev.path.rsplit("/", 1)[0]
        autoprobe = (self.tree.read(f"{dev.path}/sriov_drivers_autoprobe") or "1").strip() == "1"
        if autoprobe and not self.tree.driver_loaded(pf.vf_driver):
            self.tree.load_driver(pf.vf_driver)  # udev loads the VF driver by modalias
        groups = self._free_groups(count)
        prof = PROFILES[pf.profile]
        config = vf_config(dev, pf, bound=False)
        cpus = cpu_mask(dev.numa, self.spec.cpus_per_node, self.spec.nodes)
        ids = (dev.vendor, pf.vf_device, *(prof.vf_subsys or prof.subsys))
        for i in range(count):
            addr = str(pf.vf_address(i))
            path = f"{parent}/{addr}"
            lines = [ZERO_RES] * 13
            for bar in pf.vf_bars:
                lines[bar.index] = res_line(
                    bar.start + i * bar.size, bar.size, resource_flags(bar.kind)
                )
            self.tree.pci_function(
                path,
                addr,
                ids=ids,
                cls=prof.cls,
                revision=prof.vf_revision,
                numa=dev.numa,
                cpus=cpus,
                irq=0,
                resource="".join(lines),
                config=config,
                link=dev.link,
                group=groups[i],
            )
            self.tree.link(f"{path}/physfn", dev.path)
            self.tree.link(f"{dev.path}/virtfn{i}", path)
            if autoprobe:
                for driver in sorted(os.listdir(self.tree.abs(PCI_DRIVERS))):
                    if self.matches(addr, path, driver):
                        self._bind(addr, path, driver)
                        break

    def _remove_vf(self, pf: PfSpec, dev: DevSpec, index: int) -> None:
        addr = str(pf.vf_address(index))
        path = f"{dev.path.rsplit('/', 1)[0]}/{addr}"
        driver = self.driver_of(addr)
        if driver is not None:
            self._unbind(addr, path, driver)
        self.tree.leave_group(addr, int(self._group(path)))
        self.tree.unlink(f"{PCI_DEVICES}/{addr}")
        self.tree.unlink(f"{dev.path}/virtfn{index}")
        self.tree.rmtree(path)

    def _free_groups(self, count: int) -> list[int]:
        """Lowest free IOMMU group ids, as the kernel's IDA hands them out."""
        used = {int(n) for n in os.listdir(self.tree.abs("sys/kernel/iommu_groups"))}
        out: list[int] = []
        candidate = 0
        while len(out) < count:
            if candidate not in used:
                out.append(candidate)
            candidate += 1
        return out

    # -- derived files -------------------------------------------------------------------------
    def write_iomem(self) -> None:
        """Regenerate /proc/iomem from the live tree."""
        text = render_iomem(self.spec, self.num_vfs, self.driver_of)
        self.tree.file("proc/iomem", text)

    def pf_resource(self, dev: DevSpec, pf: PfSpec | None) -> str:
        """The `resource` file of a boot-time function."""
        return resource_text(
            dev.bars, dev.rom, pf.vf_bars if pf else [], pf.device_total if pf else 0
        )
