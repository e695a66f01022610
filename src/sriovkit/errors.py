"""One tree of errors for the whole project.

Every message says what failed, on which device or field, and why. Each class carries the process
exit code the CLI uses and the CNI error code the plugins report, so adapters never guess.
Adapters (the CLI's `main`, the CNI dispatcher's `execute`, the agent's request handler) are the
only places that map an error, expected or not, to an exit code or a CNI error document.

Every exception class of the package is defined here; modules that used to define one re-export
it under its old name (`sriovkit.model.cni_result.CniError`, `sriovkit.agent.protocol.
ProtocolError`, ...). Exceptions, on purpose:

- `sriovkit.cni.shim` (`AgentUnreachable`, `AgentLost` and its private ones): the shim is a
  standalone script that imports only modules built into the interpreter, so it cannot import
  this module; its errors never leave it (they choose between the agent and the in-process path).
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


class Unavailable(SriovkitError):
    """A service sriovkit asks (kubelet's PodResources API) does not answer: not running,
    restarting, or its socket is missing. CNI code 11: the runtime's retry may succeed."""

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


# --- the CNI spec's well-known codes ---------------------------------------------------------


class CniError(SriovkitError):
    """An error that maps to one of the CNI spec's well-known codes (the class says which)."""


class IncompatibleVersion(CniError):
    """Code 1: the config's cniVersion is not one we support (or the verb needs a newer one)."""

    cni_code = 1
    exit_code = 2


class DecodeFailure(CniError):
    """Code 6: the network config on stdin is not a JSON object."""

    cni_code = 6
    exit_code = 2


class BadEnv(CniError):
    """Code 4: a CNI_* environment variable is missing or invalid."""

    cni_code = 4
    exit_code = 2

    def __init__(self, var: str, reason: str) -> None:
        super().__init__(f"invalid {var}: {reason}")
        self.var = var


class IpamError(HostError):
    """The IPAM plugin answered with an error: carries the plugin's CNI code and message."""

    def __init__(self, plugin: str, code: int, msg: str, details: str = "") -> None:
        text = f"IPAM plugin {plugin} failed (code {code}): {msg}"
        if details and details != msg:
            text += f": {details}"
        super().__init__(text)
        self.plugin = plugin
        self.code = code
        # Passed through to our own CNI error, so e.g. "try again later" (11) stays retryable.
        self.cni_code = code
        self.msg = msg
        self.details = details


# --- the node agent and the lab ---------------------------------------------------------------


class ProtocolError(SriovkitError):
    """A request to the agent that is not a well-formed SKC1 frame within the limits.

    Never leaves the agent's reader: the client gets a CNI error document and is hung up on.
    """


class LabUnavailable(HostError):
    """The lab cannot be had here (no QEMU with igb and no way to install it, no kernel...).

    The message says what is missing and how to get it; pytest turns it into the skip reason.
    """

    exit_code = 7


class NodeUnavailable(HostError):
    """The node tier's kubelet, containerd or images cannot be had here (not Debian, no root,
    the source package or the build failed). The message says what is missing."""

    exit_code = 7


__all__ = [
    "Abandoned",
    "BadEnv",
    "Busy",
    "CheckFailed",
    "CniError",
    "DecodeFailure",
    "HostError",
    "IncompatibleVersion",
    "InvalidInput",
    "IpamError",
    "LabUnavailable",
    "NodeUnavailable",
    "NotFound",
    "PluginNotAvailable",
    "ProtocolError",
    "SriovkitError",
    "Timeout",
    "Unavailable",
]
