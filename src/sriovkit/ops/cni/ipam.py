"""IPAM delegation for every kind: the config and CNI_* variables an IPAM plugin sees, and
ADD and DEL overlapped with the netns moves where the plugin allows it.

The netns move costs ~15-20 ms in the kernel and an IPAM plugin process a few ms; a plugin that
never looks at the pod (`host.ipam.POD_INDEPENDENT`: host-local, static, whereabouts) runs on a
thread meanwhile. Any other plugin (dhcp runs its client on the pod's interface) runs after the
move, as the CNI spec's ordering implies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sriovkit.host.ipam import Ipam, ipam_type, pod_independent
from sriovkit.model.attachment import Attachment
from sriovkit.model.cni_env import CniEnv
from sriovkit.ops.background import Background
from sriovkit.ops.cni.rollback import Rollback


def ipam_conf(raw_conf: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The config to hand to the IPAM plugin, or None when it names no IPAM."""
    if raw_conf is None:
        return None
    ipam = raw_conf.get("ipam")
    return raw_conf if isinstance(ipam, Mapping) and ipam else None


def record_env(record: Attachment, args: str = "") -> dict[str, str]:
    """The CNI_* variables an IPAM plugin needs to release what `record`'s ADD allocated."""
    return {
        "CNI_CONTAINERID": record.container_id,
        "CNI_IFNAME": record.ifname,
        "CNI_NETNS": record.netns,
        "CNI_ARGS": args,
    }


def ipam_env_of(env: CniEnv) -> dict[str, str]:
    """The CNI_* variables of this invocation, as the IPAM plugin must see them."""
    out = {
        "CNI_CONTAINERID": env.container_id or "",
        "CNI_IFNAME": env.ifname or "",
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in env.args.items()),
    }
    if env.netns is not None:
        out["CNI_NETNS"] = env.netns
    if env.path:
        out["CNI_PATH"] = os.pathsep.join(env.path)  # else Ipam uses its own search path
    return out


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


class DelIpam:
    """IPAM DEL for one release: `early()` once the pod holds none of the attachment's
    addresses, `finish()` after everything is back.

    A plugin that never looks at the pod (see `AddIpam`) runs on a thread from `early()` on,
    overlapping the netns move home; any other runs in `finish()`, as it always did. Released
    before the VF is back, an address must be gone from the pod first: otherwise a VF that then
    failed to come back would keep an address the plugin hands to the next pod.
    """

    def __init__(self, ipam: Ipam, conf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.ipam = ipam
        self.conf = conf
        self.env = env
        self._job: Background[None] | None = None

    def early(self) -> None:
        """The pod no longer holds the addresses: start the plugin now if it allows."""
        if self._job is None and pod_independent(self.conf):
            self._job = Background("ipam-del", self.ipam.delete, self.conf, self.env)

    def wait(self) -> None:
        """Wait for an early DEL to end, whatever its outcome (before a failure is raised)."""
        if self._job is not None:
            self._job.wait()

    def finish(self) -> None:
        """The early DEL's outcome (raised if it failed), or the DEL run now."""
        if self._job is None:
            self.ipam.delete(self.conf, self.env)
        else:
            self._job.result()


def start_ipam(ipam: Ipam, env: CniEnv, raw_conf: Mapping[str, Any], rollback: Rollback) -> AddIpam:
    """IPAM ADD, started early where the plugin allows (it then overlaps the netns move)."""
    conf_for_ipam = ipam_conf(raw_conf) or raw_conf
    ipam.find(ipam_type(conf_for_ipam))  # a missing plugin allocated nothing
    job = AddIpam(ipam, conf_for_ipam, ipam_env_of(env))
    # Registered before the call: a plugin that fails half-way may hold an address, and IPAM
    # DEL of nothing is a no-op.
    rollback.undo("releasing IPAM", job.undo, held=False)
    job.start_early()
    return job


__all__ = ["AddIpam", "DelIpam", "ipam_conf", "ipam_env_of", "record_env", "start_ipam"]
