"""The rollback of a multi-step operation: undo callbacks on an ExitStack, failures remembered.

Each undo is registered just before (or as) its step succeeds; on failure the stack unwinds in
reverse order and keeps going when one undo fails, so every undo gets its chance and the error
reported names each one that failed. Undos are sorted into two kinds, because what a failure
leaves behind differs: an undo of the held resource itself (a VF's PF side, its netdev) that
failed means the resource was not given back and must keep its records for DEL/GC to finish;
any other undo (IPAM DEL) that failed leaves the resource returned, with only its addresses to
clean up. Every kind of attachment (ops/cni/kind.py) uses this one rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from sriovkit.errors import HostError, SriovkitError
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey


class Rollback:
    """Undo callbacks on `stack` that keep unwinding when one fails, and remember it.

    `held_failures` are undos of the held resource itself: it was not given back.
    `other_failures` (IPAM DEL) leave the resource returned: it must not stay allocated for them.
    """

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.held_failures: list[str] = []
        self.other_failures: list[str] = []

    def undo(self, what: str, fn: Callable[..., object], *args: Any, held: bool = True) -> None:
        """Register `fn(*args)` as the undo of the step described by `what`."""
        failures = self.held_failures if held else self.other_failures

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep unwinding; report every undo that failed
                failures.append(f"{what}: {exc}")

        self.stack.callback(run)

    def forget(self, store: StateStore, key: AttachmentKey, devices: Iterable[str]) -> None:
        """Drop the records of `key` and `devices`, unless the resource could not be given back."""
        if not self.held_failures:  # a resource not given back keeps its record for DEL/GC
            store.delete_attachment(key)
            for device in devices:
                store.delete_allocation(device)


def failed(err: SriovkitError, rollback: Rollback, what: str) -> SriovkitError:
    """The error to report for `err` once `rollback` ran: it names every undo that failed.

    `what` names the held resource as the messages say it (`VF 0000:3b:02.1`).
    """
    errno = getattr(err, "errno", None)
    if rollback.held_failures:
        failures = rollback.held_failures + rollback.other_failures
        return HostError(
            f"{err}; undoing it failed too ({'; '.join(failures)}): {what} keeps its "
            "record so that DEL or GC can give it back",
            errno,
        )
    if rollback.other_failures:
        return HostError(
            f"{err}; {what} was given back, but undoing the rest failed "
            f"({'; '.join(rollback.other_failures)}): its addresses may stay allocated "
            "until the IPAM plugin's GC",
            errno,
        )
    return err


__all__ = ["Rollback", "failed"]
