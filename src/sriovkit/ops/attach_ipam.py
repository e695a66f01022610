"""IPAM ADD of one attachment, overlapped with the VF's netns move where the plugin allows it.

The netns move costs ~15-20 ms in the kernel and an IPAM plugin process a few ms; a plugin that
never looks at the pod (`host.ipam.POD_INDEPENDENT`: host-local, static, whereabouts) runs on a
thread meanwhile. Any other plugin (dhcp runs its client on the pod's interface) runs after the
move, as the CNI spec's ordering implies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sriovkit.host.ipam import Ipam, pod_independent
from sriovkit.ops.background import Background


class AddIpam:
    """IPAM ADD for one invocation: `start_early()`, then `result()`; `undo()` releases it."""

    def __init__(self, ipam: Ipam, conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.ipam = ipam
        self.conf = conf
        self.env = env
        self._job: Background[dict[str, Any]] | None = None

    def start_early(self) -> None:
        """Start the plugin now if it does not need the VF in the pod first."""
        if self._job is None and pod_independent(self.conf):
            self._job = Background("ipam-add", self.ipam.add, self.conf, self.env)

    def result(self) -> dict[str, Any]:
        """The plugin's result (running it now if it was not started early)."""
        if self._job is None:
            return self.ipam.add(self.conf, self.env)
        return self._job.result()

    def undo(self) -> None:
        """IPAM DEL, once an early ADD has ended (a DEL that overtook it would free nothing)."""
        if self._job is not None:
            self._job.wait()
        self.ipam.delete(self.conf, self.env)


__all__ = ["AddIpam"]
