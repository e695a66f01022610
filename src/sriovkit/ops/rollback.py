"""The rollback of a multi-step operation: undo callbacks on an ExitStack, failures remembered.

Each undo is registered just before (or as) its step succeeds; on failure the stack unwinds in
reverse order and keeps going when one undo fails, so every undo gets its chance and the error
reported names each one that failed. Undos are sorted into two kinds, because what a failure
leaves behind differs: an undo of the resource itself (the VF's PF side, its netdev) that failed
means the resource was not given back and must keep its records for DEL/GC to finish; any other
undo (IPAM DEL) that failed leaves the resource returned, with only its addresses to clean up.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from sriovkit.errors import HostError, SriovkitError
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.pci import PciAddress


class Rollback:
    """Undo callbacks on `stack` that keep unwinding when one fails, and remember it.

    `vf_failures` are undos of the VF itself (PF side, netdev): the VF was not given back.
    `other_failures` (IPAM DEL) leave the VF returned: it must not stay allocated for them.
    """

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.vf_failures: list[str] = []
        self.other_failures: list[str] = []

    def undo(self, what: str, fn: Callable[..., object], *args: Any, vf: bool = True) -> None:
        """Register `fn(*args)` as the undo of the step described by `what`."""
        failures = self.vf_failures if vf else self.other_failures

        def run() -> None:
            try:
                fn(*args)
            except Exception as exc:  # keep unwinding; report every undo that failed
                failures.append(f"{what}: {exc}")

        self.stack.callback(run)

    def forget(self, store: StateStore, key: AttachmentKey, pci: PciAddress) -> None:
        """Drop the records of `key` and `pci`, unless the VF itself could not be given back."""
        if not self.vf_failures:  # a VF not given back keeps its record, for DEL/GC to finish
            store.delete_attachment(key)
            store.delete_allocation(pci)


def failed(err: SriovkitError, rollback: Rollback, pci: PciAddress) -> SriovkitError:
    """The error to report for `err` once `rollback` ran: it names every undo that failed."""
    errno = getattr(err, "errno", None)
    if rollback.vf_failures:
        failures = rollback.vf_failures + rollback.other_failures
        return HostError(
            f"{err}; undoing it failed too ({'; '.join(failures)}): VF {pci} keeps its "
            "record so that DEL or GC can give it back",
            errno,
        )
    if rollback.other_failures:
        return HostError(
            f"{err}; VF {pci} was given back, but undoing the rest failed "
            f"({'; '.join(rollback.other_failures)}): its addresses may stay allocated "
            "until the IPAM plugin's GC",
            errno,
        )
    return err


__all__ = ["Rollback", "failed"]
