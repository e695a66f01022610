"""Errors of the lab harness, in the project's error tree."""

from __future__ import annotations

from sriovkit.errors import HostError


class LabUnavailable(HostError):
    """The lab cannot be had here (no QEMU with igb and no way to install it, no kernel...).

    The message says what is missing and how to get it; pytest turns it into the skip reason.
    """

    exit_code = 7


__all__ = ["LabUnavailable"]
