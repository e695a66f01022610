"""One tree of errors for the whole project.

Every message says what failed, on which device or field, and why. Each class carries the process
exit code the CLI uses and the CNI error code the plugins report, so adapters never guess.
"""

from __future__ import annotations


class SriovkitError(Exception):
    """Base of every error sriovkit raises on purpose."""

    exit_code: int = 1
    cni_code: int = 999

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(SriovkitError):
    """Bad input from a user: names the field and the reason; nothing on the host changed."""

    exit_code = 2
    cni_code = 7

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid {field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(SriovkitError):
    """A device, netdev, VF or record that was asked for does not exist."""

    exit_code = 3


class HostError(SriovkitError):
    """The host (sysfs, netlink, a driver) refused or failed an operation."""

    exit_code = 4

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class Busy(SriovkitError):
    """A resource is in use (a VF attached elsewhere, a lock held); retrying later may work."""

    exit_code = 5
    cni_code = 11


class Abandoned(SriovkitError):
    """A request nobody waits for any more (its client left or its deadline passed): not run.

    CNI code 11: should anyone still read the answer, trying again is the right reaction.
    """

    exit_code = 5
    cni_code = 11


class Timeout(HostError):
    """A wait on the host ran out of its budget; the message says what is still missing."""

    exit_code = 6


class CheckFailed(HostError):
    """CNI CHECK found the attachment different from what ADD recorded."""


class PluginNotAvailable(HostError):
    """CNI code 50 (spec 1.1 STATUS): the plugin cannot serve ADDs right now."""

    cni_code = 50


__all__ = [
    "Abandoned",
    "Busy",
    "CheckFailed",
    "HostError",
    "InvalidInput",
    "NotFound",
    "PluginNotAvailable",
    "SriovkitError",
    "Timeout",
]
