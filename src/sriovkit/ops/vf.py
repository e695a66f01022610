"""VF lifecycle: how many VFs a PF has (`sriov_numvfs`) and which driver each VF is bound to.

Kernel rules this module exists to follow (drivers/pci/iov.c, pci-sysfs.c):
- a PF with M > 0 VFs refuses `sriov_numvfs = N` (N != 0, N != M) with EBUSY: write 0 first;
- VF functions appear synchronously, but driver probe and netdev registration finish later, and
  slow drivers (i40e ~22 s for 64 VFs, ixgbe > 60 s) need a budget that grows with the count;
- `driver_override` + `drivers_probe` is the one binding path that works for every driver, and
  vfio-pci only binds a function whose whole IOMMU group is free of kernel drivers.

Those rules live in the planners here (`plan_num_vfs`, `plan_bind`: pure, from the state read
first); `--dry-run` prints their plan and apply runs it (`ops.plan.run`) through the sysfs verbs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sriovkit.errors import HostError, InvalidInput, NotFound, Timeout
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.device import SriovInfo
from sriovkit.model.pci import PciAddress
from sriovkit.ops.plan import Plan, Step, StepKind, Undo, run

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


def plan_num_vfs(pf: PciAddress, info: SriovInfo, count: int, driver: str | None) -> Plan:
    """The steps that give `pf` (now as `info` says) `count` VFs, bound to `driver` if given."""
    # Binding to a chosen driver needs VFs created with autoprobe off, so that the PF's VF
    # driver never grabs them first: existing VFs are made again.
    rebuild = driver is not None and count != 0
    if info.num_vfs == count and not rebuild:
        return Plan()
    total = f"total {info.total_vfs}"
    steps: list[Step] = []
    if info.num_vfs != 0:
        # The kernel refuses to change a non-zero count directly (EBUSY): go through 0.
        if count == 0:
            why = total
        elif count != info.num_vfs:
            why = f"the kernel refuses {info.num_vfs} -> {count}"
        else:
            why = f"to create them again bound to {driver}"
        steps.append(Step(StepKind.SET_NUM_VFS, str(pf), str(info.num_vfs), "0", why))
    if count != 0:
        if rebuild and info.drivers_autoprobe:
            steps.append(Step(
                StepKind.SET_DRIVERS_AUTOPROBE, str(pf), "1", "0",
                "no kernel driver takes the new VFs first; 1 again after", undo=Undo.AFTER,
            ))  # fmt: skip
        steps.append(Step(StepKind.SET_NUM_VFS, str(pf), "0", str(count), total))
        if rebuild:
            steps.append(Step(StepKind.BIND_VFS, str(pf), None, driver, what=f"{count} VFs"))
    return Plan(tuple(steps))


def num_vfs_plan(sysfs: Sysfs, pf: PciAddress, count: int, driver: str | None) -> Plan:
    """Check the request against the PF as it is now and plan it (nothing is written)."""
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
    return plan_num_vfs(pf, info, count, driver)


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
    plan = num_vfs_plan(sysfs, pf, count, driver)
    budget = timeout if timeout is not None else wait_budget(sysfs.link_base(pf, "driver"), count)
    if not plan:
        return _wait_ready(sysfs, pf, count, budget, clock, progress, expect_driver=None)
    run(plan, _Actions(sysfs, budget, clock, progress).act)
    if count == 0:
        return []
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
    if not sysfs.driver_loaded(driver):
        raise HostError(
            f"driver {driver} is not loaded (no /sys/bus/pci/drivers/{driver}); "
            f"load it first, e.g. `modprobe {driver}`"
        )


def _group_conflicts(sysfs: Sysfs, dev: PciAddress, group: str) -> list[str]:
    """Devices sharing `dev`'s IOMMU group that still belong to a kernel driver."""
    conflicts = []
    for other in sysfs.iommu_group_members(group):
        if other == dev:
            continue
        drv = sysfs.link_base(other, "driver")
        if drv is not None and drv not in USERSPACE_DRIVERS and drv != "pcieport":
            conflicts.append(f"{other} (driver {drv})")
    return conflicts


def plan_bind(dev: PciAddress, current: str | None, override: str | None,
              driver: str | None) -> Plan:  # fmt: skip
    """The steps that move `dev` from `current` to `driver` (None: its default kernel driver).

    Unbind, then set `driver_override` so that only the wanted driver can claim the device,
    then `drivers_probe`, the one path that works for every driver. The unbind and the
    override are put back if a later step fails, newest first: the old override goes back
    before the old driver is re-bound, because the PCI core refuses a `bind` (ENODEV) to any
    driver other than the one an override names. (A manual unbind probes nothing, so the
    device stays free between the unbind and the override.)
    """
    if current == driver and driver is not None:
        return Plan()
    where = str(dev)
    steps: list[Step] = []
    if current is not None:
        steps.append(Step(StepKind.UNBIND, where, current, None, undo=Undo.ON_FAILURE))
    steps.append(
        Step(StepKind.SET_DRIVER_OVERRIDE, where, override, driver, undo=Undo.ON_FAILURE)
    )
    steps.append(Step(StepKind.DRIVERS_PROBE, where, current, driver))
    return Plan(tuple(steps))


def bind_plan(sysfs: Sysfs, dev: PciAddress, driver: str | None) -> Plan:
    """Check that `dev` can go to `driver` (None: back to its default) and plan it."""
    if not sysfs.exists(dev):
        raise NotFound(f"PCI device {dev} not found")
    if driver is not None:
        _require_driver(sysfs, driver)
        group = sysfs.link_base(dev, "iommu_group")
        if driver == "vfio-pci" and group is not None:
            conflicts = _group_conflicts(sysfs, dev, group)
            if conflicts:
                raise HostError(
                    f"cannot bind {dev} to vfio-pci: IOMMU group {group} is shared with "
                    + ", ".join(conflicts) + "; unbind those first"
                )  # fmt: skip
    current = sysfs.link_base(dev, "driver")
    return plan_bind(dev, current, sysfs.attr(dev, "driver_override"), driver)


def bind_driver(sysfs: Sysfs, dev: PciAddress, driver: str | None) -> str | None:
    """Bind `dev` to `driver` through driver_override (None: back to its default kernel driver).

    Returns the driver it ends up bound to. On failure the previous binding is restored.
    """
    plan = bind_plan(sysfs, dev, driver)
    if plan:
        run(plan, _Actions(sysfs).act)
    return sysfs.link_base(dev, "driver")


def unbind_driver(sysfs: Sysfs, dev: PciAddress) -> str | None:
    """Detach `dev` from its driver; returns the driver it had."""
    current = sysfs.link_base(dev, "driver")
    if current is not None:
        sysfs.unbind(dev, current)
    return current


class _Actions:
    """How each kind of step is carried out: one sysfs verb, plus the wait the kernel needs."""

    def __init__(self, sysfs: Sysfs, budget: float = 0.0, clock: _Clock | None = None,
                 progress: Progress | None = None) -> None:  # fmt: skip
        self.sysfs, self.budget, self.progress = sysfs, budget, progress
        self.clock = clock or _Clock()

    def act(self, step: Step) -> None:
        """Carry out one step (the `run` action)."""
        sysfs, dev = self.sysfs, PciAddress.parse(step.where)
        kind = step.kind
        if kind is StepKind.SET_NUM_VFS:
            sysfs.set_num_vfs(dev, int(step.new or 0))
            if not int(step.new or 0):
                self._wait(lambda: [str(a) for a in sysfs.virtfns(dev).values()],
                           f"removing VFs of {dev}")  # fmt: skip
        elif kind is StepKind.SET_DRIVERS_AUTOPROBE:
            sysfs.set_drivers_autoprobe(dev, step.new == "1")
        elif kind is StepKind.BIND_VFS:
            info = sysfs.sriov(dev)  # the count the step before wrote
            count = info.num_vfs if info is not None else 0
            _wait_ready(sysfs, dev, count, self.budget, self.clock, self.progress,
                        expect_driver=None, want_drivers=False)  # fmt: skip
            for vf in sysfs.virtfns(dev).values():
                bind_driver(sysfs, vf, step.new)
        elif kind is StepKind.SET_DRIVER_OVERRIDE:
            sysfs.set_driver_override(dev, step.new)
        elif kind is StepKind.UNBIND:
            if step.old is not None:
                sysfs.unbind(dev, step.old)
        elif kind is StepKind.BIND:
            # Undo of an unbind: only if nothing claimed the device meanwhile.
            if step.new is not None and sysfs.link_base(dev, "driver") is None:
                sysfs.bind(dev, step.new)
        elif kind is StepKind.DRIVERS_PROBE:
            sysfs.drivers_probe(dev)
            # The write succeeds even when the driver's probe fails (the PCI core ignores probe
            # errors so the next driver may try): only the resulting link tells.
            bound = sysfs.link_base(dev, "driver")
            if step.new is not None and bound != step.new:
                raise HostError(
                    f"failed to bind {dev} to {step.new}: the driver did not claim it "
                    f"(now bound to {bound or 'nothing'})"
                )
            if step.new is None and bound is None:
                raise HostError(f"failed to bind {dev} back to a kernel driver: none claimed it")

    def _wait(self, what: Callable[[], list[str]], describe: str) -> None:
        _wait(what, self.budget, self.clock, self.progress, describe)
