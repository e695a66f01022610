"""A plan: the ordered steps that take a host from what it is to what is wanted.

Planners are pure functions of the current state (read first) and the wanted state; they hold
the rules (the kernel's 0-first rule for `sriov_numvfs`, the bind order). `--dry-run` prints the
plan and apply runs the very same plan through `run`, so each rule is written once. The node
policy grows from here: a new kind of change is a new `StepKind`, a planner and an action.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace

__all__ = ["Plan", "Step", "StepKind", "Undo", "run"]


class StepKind(enum.Enum):
    """What a step changes; the value is the kernel interface it goes through."""

    SET_NUM_VFS = "sriov_numvfs"
    SET_DRIVERS_AUTOPROBE = "sriov_drivers_autoprobe"
    BIND_VFS = "bind VFs"
    SET_DRIVER_OVERRIDE = "driver_override"
    UNBIND = "unbind"
    BIND = "bind"
    DRIVERS_PROBE = "drivers_probe"


class Undo(enum.Enum):
    """What happens to a step's change once the plan ends."""

    KEEP = "keep"  # the change is the point of the plan
    ON_FAILURE = "on failure"  # put back when a later step fails
    AFTER = "after"  # a temporary change: put back when the plan ends, however it ends


# How a step reads in a dry run; fields of the step fill the braces.
_TEXT = {
    StepKind.SET_NUM_VFS: "write {new} to sriov_numvfs",
    StepKind.SET_DRIVERS_AUTOPROBE: "write {new} to sriov_drivers_autoprobe",
    StepKind.BIND_VFS: "bind the {what} to {new}",
    StepKind.SET_DRIVER_OVERRIDE: "set driver_override of {where} to {new}",
    StepKind.UNBIND: "unbind {where} from {old}",
    StepKind.BIND: "bind {where} to {new}",
    StepKind.DRIVERS_PROBE: "probe a driver for {where}",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One change: what (`kind`, `what`), where (a device), from `old` to `new`, and why."""

    kind: StepKind
    where: str
    old: str | None
    new: str | None
    why: str = ""
    what: str = ""
    undo: Undo = Undo.KEEP

    def reverse(self) -> Step:
        """The step that puts `old` back (run when the plan unwinds)."""
        kind = {StepKind.UNBIND: StepKind.BIND, StepKind.BIND: StepKind.UNBIND}.get(
            self.kind, self.kind
        )
        return replace(self, kind=kind, old=self.new, new=self.old, undo=Undo.KEEP)

    def describe(self) -> str:
        """One line for a dry run."""
        text = _TEXT[self.kind].format(
            where=self.where, what=self.what, old=self.old or "nothing", new=self.new or "nothing"
        )
        return f"{text} ({self.why})" if self.why else text


@dataclass(frozen=True, slots=True)
class Plan:
    """Steps in the order they run; an empty plan means nothing is to change."""

    steps: tuple[Step, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def kinds(self) -> list[StepKind]:
        """The kinds of the steps, in order."""
        return [s.kind for s in self.steps]

    def lines(self) -> list[str]:
        """The plan as a dry run prints it, one line per step."""
        return [s.describe() for s in self.steps]


Action = Callable[[Step], None]


def run(plan: Plan, act: Action) -> None:
    """Carry out `plan`, one `act(step)` per step, in order.

    A step marked `Undo.ON_FAILURE` is reversed (its undo registered just after it succeeded)
    when a later step raises; one marked `Undo.AFTER` is reversed when the plan ends either way.
    Reversals run newest first, the failure ones before the temporary ones.
    """
    with ExitStack() as after, ExitStack() as on_failure:
        for step in plan.steps:
            act(step)
            if step.undo is Undo.AFTER:
                after.callback(act, step.reverse())
            elif step.undo is Undo.ON_FAILURE:
                on_failure.callback(act, step.reverse())
        on_failure.pop_all()
