"""VF lifecycle: how many VFs a PF has (`sriov_numvfs`) and which driver each VF is bound to.

Kernel rules this module exists to follow (drivers/pci/iov.c, pci-sysfs.c):
- a PF with M > 0 VFs refuses `sriov_numvfs = N` (N != 0, N != M) with EBUSY: write 0 first;
- VF functions appear synchronously, but driver probe and netdev registration finish later, and
  slow drivers (i40e ~22 s for 64 VFs, ixgbe > 60 s) need a budget that grows with the count;
- `driver_override` + `drivers_probe` is the one binding path that works for every driver, and
  vfio-pci only binds a function whose whole IOMMU group is free of kernel drivers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from sriovkit.errors import HostError, InvalidInput, NotFound, Timeout
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress

Progress = Callable[[str], None]

# Drivers that take a function away from the kernel's network stack: no netdev to wait for.
USERSPACE_DRIVERS = frozenset({"vfio-pci", "uio_pci_generic", "igb_uio", "pci-stub"})
# Seconds per VF a driver needs to probe a VF and register its netdev (measured or reported:
# i40e 64 VFs ~22 s, ixgbe 63 VFs > 60 s, igb ~0.5 s per VF under QEMU TCG).
_SECONDS_PER_VF = {"ixgbe": 1.2, "i40e": 0.5, "ice": 0.5, "igb": 1.0, "mlx5_core": 0.5}
_BASE_BUDGET = 10.0


def wait_budget(pf_driver: str | None, count: int) -> float:
    """Seconds to wait for `count` VFs of a PF driven by `pf_driver`."""
    return _BASE_BUDGET + count * _SECONDS_PER_VF.get(pf_driver or "", 0.5)


@dataclass(frozen=True, slots=True)
class VfFunction:
    """One VF after a count change: where it is, its driver and netdevs."""

    index: int
    address: PciAddress
    driver: str | None
    netdevs: tuple[str, ...]


class _Clock:
    """Monotonic time and sleep, replaceable in tests."""

    def __init__(self, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.now = now
        self.sleep = sleep


def _pf_rel(pf: PciAddress, attr: str) -> str:
    return f"/sys/bus/pci/devices/{pf}/{attr}"


def _vf_functions(sysfs: Sysfs, pf: PciAddress) -> list[VfFunction]:
    out = []
    nets = sysfs.netdev_map()
    for index, addr in sysfs.virtfns(pf).items():
        out.append(VfFunction(index, addr, sysfs.link_base(addr, "driver"), nets.get(addr, ())))
    return out


def list_vfs(sysfs: Sysfs, pf: PciAddress) -> list[VfFunction]:
    """The PF's VFs as they are now."""
    return _vf_functions(sysfs, pf)


def _wait(
    what: Callable[[], list[str]],
    budget: float,
    clock: _Clock,
    progress: Progress | None,
    describe: str,
) -> None:
    """Poll until `what()` reports nothing missing; Timeout naming what is still missing."""
    deadline = clock.now() + budget
    next_report = clock.now() + 2.0
    while True:
        missing = what()
        if not missing:
            return
        now = clock.now()
        if now >= deadline:
            raise Timeout(
                f"{describe}: still missing after {budget:.0f} s: " + ", ".join(missing[:8])
                + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            )  # fmt: skip
        if progress is not None and now >= next_report:
            progress(f"{describe}: waiting for {len(missing)} more ({', '.join(missing[:3])} ...)")
            next_report = now + 2.0
        clock.sleep(0.05)


def set_num_vfs(
    sysfs: Sysfs,
    pf: PciAddress,
    count: int,
    *,
    timeout: float | None = None,
    progress: Progress | None = None,
    driver: str | None = None,
    clock: _Clock | None = None,
) -> list[VfFunction]:
    """Make `pf` have exactly `count` VFs and wait until they are usable.

    With `driver`, the new VFs are bound to it (e.g. vfio-pci) with autoprobe switched off while
    they are created, so the kernel driver never grabs them first; autoprobe is restored after.
    """
    clock = clock or _Clock()
    if count < 0:
        raise InvalidInput("count", f"{count} is negative")
    info = sysfs.sriov(pf)
    if info is None:
        if not sysfs.exists(pf):
            raise NotFound(f"PCI device {pf} not found")
        raise HostError(f"{pf} is not SR-IOV capable (no sriov_totalvfs)")
    if count > info.total_vfs:
        raise InvalidInput("count", f"{count} exceeds sriov_totalvfs {info.total_vfs} of {pf}")
    if driver is not None:
        _require_driver(sysfs, driver)
    pf_driver = sysfs.link_base(pf, "driver")
    budget = timeout if timeout is not None else wait_budget(pf_driver, count)
    if info.num_vfs == count and (driver is None or count == 0):
        return _wait_ready(sysfs, pf, count, budget, clock, progress, expect_driver=None)
    if info.num_vfs != 0:
        # The kernel refuses to change a non-zero count directly (EBUSY): go through 0.
        sysfs.write(_pf_rel(pf, "sriov_numvfs"), "0")
        _wait(lambda: [str(a) for a in sysfs.virtfns(pf).values()], budget, clock, progress,
              f"removing VFs of {pf}")  # fmt: skip
    if count == 0:
        return []
    with ExitStack() as undo:
        if driver is not None and info.drivers_autoprobe:
            sysfs.write(_pf_rel(pf, "sriov_drivers_autoprobe"), "0")
            undo.callback(sysfs.write, _pf_rel(pf, "sriov_drivers_autoprobe"), "1")
        sysfs.write(_pf_rel(pf, "sriov_numvfs"), str(count))
        if driver is not None:
            _wait_ready(sysfs, pf, count, budget, clock, progress, expect_driver=None,
                        want_drivers=False)  # fmt: skip
            for vf in sysfs.virtfns(pf).values():
                bind_driver(sysfs, vf, driver)
    return _wait_ready(sysfs, pf, count, budget, clock, progress, expect_driver=driver)


def _wait_ready(
    sysfs: Sysfs,
    pf: PciAddress,
    count: int,
    budget: float,
    clock: _Clock,
    progress: Progress | None,
    *,
    expect_driver: str | None,
    want_drivers: bool = True,
) -> list[VfFunction]:
    info = sysfs.sriov(pf)
    autoprobe = bool(info and info.drivers_autoprobe) or expect_driver is not None

    def missing() -> list[str]:
        vfs = sysfs.virtfns(pf)
        out = [f"VF {i} of {pf} (no virtfn{i})" for i in range(count) if i not in vfs]
        if out or not want_drivers or not autoprobe:
            return out
        nets = sysfs.netdev_map()
        for i, addr in vfs.items():
            drv = sysfs.link_base(addr, "driver")
            if drv is None:
                out.append(f"VF {i} {addr} (no driver bound)")
            elif expect_driver is not None and drv != expect_driver:
                out.append(f"VF {i} {addr} (bound to {drv}, not {expect_driver})")
            elif drv not in USERSPACE_DRIVERS and not nets.get(addr):
                out.append(f"VF {i} {addr} (driver {drv}, no netdev yet)")
        return out

    _wait(missing, budget, clock, progress, f"creating {count} VFs on {pf}")
    return _vf_functions(sysfs, pf)


def _require_driver(sysfs: Sysfs, driver: str) -> None:
    if not driver or "/" in driver or driver in (".", ".."):
        raise InvalidInput("driver", f"{driver!r} is not a driver name")
    if not sysfs.path(f"/sys/bus/pci/drivers/{driver}").is_dir():
        raise HostError(
            f"driver {driver} is not loaded (no /sys/bus/pci/drivers/{driver}); "
            f"load it first, e.g. `modprobe {driver}`"
        )


def _group_conflicts(sysfs: Sysfs, dev: PciAddress, driver: str) -> list[str]:
    """Devices sharing `dev`'s IOMMU group that still belong to a kernel driver."""
    group = sysfs.link_base(dev, "iommu_group")
    if group is None:
        return []
    try:
        members = os.listdir(sysfs.path(f"/sys/kernel/iommu_groups/{group}/devices"))
    except OSError:
        return []
    conflicts = []
    for name in sorted(members):
        other = PciAddress.try_parse(name)
        if other is None or other == dev:
            continue
        drv = sysfs.link_base(other, "driver")
        if drv is not None and drv not in USERSPACE_DRIVERS and drv != "pcieport":
            conflicts.append(f"{other} (driver {drv})")
    return conflicts


def bind_driver(sysfs: Sysfs, dev: PciAddress, driver: str | None) -> str | None:
    """Bind `dev` to `driver` through driver_override (None: back to its default kernel driver).

    Returns the driver it ends up bound to. On failure the previous binding is restored.
    """
    if not sysfs.exists(dev):
        raise NotFound(f"PCI device {dev} not found")
    if driver is not None:
        _require_driver(sysfs, driver)
        if driver == "vfio-pci":
            conflicts = _group_conflicts(sysfs, dev, driver)
            if conflicts:
                group = sysfs.link_base(dev, "iommu_group")
                raise HostError(
                    f"cannot bind {dev} to vfio-pci: IOMMU group {group} is shared with "
                    + ", ".join(conflicts) + "; unbind those first"
                )  # fmt: skip
    current = sysfs.link_base(dev, "driver")
    if current == driver and driver is not None:
        return current
    old_override = sysfs.attr(dev, "driver_override")
    dev_rel = f"/sys/bus/pci/devices/{dev}"
    with ExitStack() as undo:
        sysfs.write(f"{dev_rel}/driver_override", driver or "\n")
        undo.callback(_restore_override, sysfs, dev_rel, old_override)
        if current is not None:
            sysfs.write(f"/sys/bus/pci/drivers/{current}/unbind", str(dev))
            undo.callback(_rebind, sysfs, dev, current)
        sysfs.write("/sys/bus/pci/drivers_probe", str(dev))
        bound = sysfs.link_base(dev, "driver")
        if driver is not None and bound != driver:
            raise HostError(
                f"failed to bind {dev} to {driver}: the driver did not claim it "
                f"(now bound to {bound or 'nothing'})"
            )
        undo.pop_all()
        return bound
    return None  # pragma: no cover - the with block always returns or raises


def _restore_override(sysfs: Sysfs, dev_rel: str, old: str | None) -> None:
    sysfs.write(f"{dev_rel}/driver_override", old if old and old != "(null)" else "\n")


def _rebind(sysfs: Sysfs, dev: PciAddress, driver: str) -> None:
    if sysfs.link_base(dev, "driver") is None:
        sysfs.write(f"/sys/bus/pci/drivers/{driver}/bind", str(dev))


def unbind_driver(sysfs: Sysfs, dev: PciAddress) -> str | None:
    """Detach `dev` from its driver; returns the driver it had."""
    current = sysfs.link_base(dev, "driver")
    if current is not None:
        sysfs.write(f"/sys/bus/pci/drivers/{current}/unbind", str(dev))
    return current
