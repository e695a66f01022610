"""The plan (ops/plan.py) and the VF planners: one plan serves `--dry-run` and apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sriovkit.cli import cli
from sriovkit.errors import HostError
from sriovkit.model.device import SriovInfo
from sriovkit.model.pci import PciAddress
from sriovkit.ops import vf as vf_ops
from sriovkit.ops.plan import Plan, Step, StepKind, Undo, run
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs

PF = PciAddress.parse("0000:3b:00.0")


def info(num_vfs: int, autoprobe: bool = True) -> SriovInfo:
    return SriovInfo(total_vfs=7, num_vfs=num_vfs, offset=128, stride=2, vf_device_id=0x10CA,
                     drivers_autoprobe=autoprobe)  # fmt: skip


@pytest.mark.parametrize(
    ("num", "count", "driver", "lines"),
    [
        (2, 2, None, []),
        (0, 0, "vfio-pci", []),
        (0, 3, None, ["write 3 to sriov_numvfs (total 7)"]),
        (2, 0, None, ["write 0 to sriov_numvfs (total 7)"]),
        (2, 3, None, ["write 0 to sriov_numvfs (the kernel refuses 2 -> 3)",
                      "write 3 to sriov_numvfs (total 7)"]),
        (2, 2, "vfio-pci", [
            "write 0 to sriov_numvfs (to create them again bound to vfio-pci)",
            "write 0 to sriov_drivers_autoprobe (no kernel driver takes the new VFs first; "
            "1 again after)",
            "write 2 to sriov_numvfs (total 7)",
            "bind the 2 VFs to vfio-pci",
        ]),
    ],
)  # fmt: skip
def test_num_vfs_plan_goes_through_zero(
    num: int, count: int, driver: str | None, lines: list[str]
) -> None:
    assert vf_ops.plan_num_vfs(PF, info(num), count, driver).lines() == lines


def test_autoprobe_is_left_alone_when_already_off() -> None:
    plan = vf_ops.plan_num_vfs(PF, info(0, autoprobe=False), 2, "vfio-pci")
    assert plan.kinds() == [StepKind.SET_NUM_VFS, StepKind.BIND_VFS]


def test_bind_plan_order_and_undo() -> None:
    plan = vf_ops.plan_bind(PF, "igbvf", "(null)", "vfio-pci")
    assert plan.kinds() == [StepKind.UNBIND, StepKind.SET_DRIVER_OVERRIDE, StepKind.DRIVERS_PROBE]
    assert [s.undo for s in plan] == [Undo.ON_FAILURE, Undo.ON_FAILURE, Undo.KEEP]
    assert vf_ops.plan_bind(PF, None, None, "vfio-pci").kinds() == [
        StepKind.SET_DRIVER_OVERRIDE, StepKind.DRIVERS_PROBE
    ]  # fmt: skip
    assert not vf_ops.plan_bind(PF, "vfio-pci", "vfio-pci", "vfio-pci")


def test_run_reverses_on_failure_and_temporary_steps_always() -> None:
    done: list[tuple[StepKind, str | None]] = []

    def act(step: Step) -> None:
        done.append((step.kind, step.new))
        if step.kind is StepKind.DRIVERS_PROBE:
            raise HostError("refused")

    plan = Plan((
        Step(StepKind.SET_DRIVERS_AUTOPROBE, "pf", "1", "0", undo=Undo.AFTER),
        Step(StepKind.SET_DRIVER_OVERRIDE, "vf", None, "vfio-pci", undo=Undo.ON_FAILURE),
        Step(StepKind.UNBIND, "vf", "igbvf", None, undo=Undo.ON_FAILURE),
        Step(StepKind.DRIVERS_PROBE, "vf", "igbvf", "vfio-pci"),
    ))  # fmt: skip
    with pytest.raises(HostError):
        run(plan, act)
    assert done[4:] == [
        (StepKind.BIND, "igbvf"), (StepKind.SET_DRIVER_OVERRIDE, None),
        (StepKind.SET_DRIVERS_AUTOPROBE, "1"),
    ]  # fmt: skip
    done.clear()
    run(Plan(plan.steps[:3]), act)
    assert done[-1] == (StepKind.SET_DRIVERS_AUTOPROBE, "1")  # on success only AFTER unwinds
    assert len(done) == 4


def test_dry_run_prints_the_plan_apply_runs(tmp_path: Path) -> None:
    h = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    pf = h.pfs[0].address
    sysfs = SimSysfs(tmp_path)
    plan = vf_ops.num_vfs_plan(sysfs, PciAddress.parse(pf), 3, None)
    args = ["--root", str(tmp_path), "vfs", pf, "--count", "3"]
    res = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert res.exit_code == 0 and res.output.splitlines() == plan.lines()
    assert len(sysfs.virtfns(PciAddress.parse(pf))) == 2  # nothing written
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert len(sysfs.virtfns(PciAddress.parse(pf))) == 3
    res = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert res.output == f"{pf} already has 3 VFs: nothing to do\n"

