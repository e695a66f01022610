"""The CNI plugins sriovkit serves, by the config's `type`, as libcni's skel takes a table.

A plugin is a config parser plus a kind of attachment (ops/cni/kind.py) run by the shared
lifecycle (ops/cni/lifecycle.py). A new plugin (the bond plugin will be next) adds its kind to
`KINDS` (records of it are then released by DEL and GC whatever config they come with) and an
entry to `PLUGINS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sriovkit.model.cni import CniEnv, NetConf, parse_netconf
from sriovkit.model.cni_result import CniResult
from sriovkit.ops.cni import lifecycle, upkeep
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.kind import AnyKind
from sriovkit.ops.cni.lifecycle import Kinds
from sriovkit.ops.cni.vf.kind import VfKind

ConfParser = Callable[[bytes, CniEnv | None], NetConf]
"""Validates a plugin's network config (errors name the field); `parse_netconf` for `sriov`."""


@dataclass(frozen=True)
class Plugin:
    """One CNI plugin: its config parser and its kind, with the lifecycle's verbs bound."""

    type: str
    parse: ConfParser
    kind: AnyKind
    kinds: Kinds

    def add(
        self, ctx: AttachContext, env: CniEnv, conf: NetConf, raw_conf: Mapping[str, Any]
    ) -> CniResult:
        """CNI ADD (see lifecycle.add)."""
        return lifecycle.add(ctx, self.kind, self.kinds, env, conf, raw_conf)

    def delete(
        self,
        ctx: AttachContext,
        env: CniEnv,
        conf: NetConf | None,
        raw_conf: Mapping[str, Any] | None,
    ) -> None:
        """CNI DEL (see lifecycle.delete; the record, not `conf`, says what to give back)."""
        lifecycle.delete(ctx, self.kinds, env, raw_conf)

    def check(
        self, ctx: AttachContext, env: CniEnv, conf: NetConf, raw_conf: Mapping[str, Any]
    ) -> None:
        """CNI CHECK (see upkeep.check)."""
        upkeep.check(ctx, self.kind, env, conf, raw_conf)

    def gc(self, ctx: AttachContext, conf: NetConf, raw_conf: Mapping[str, Any]) -> None:
        """CNI GC (see upkeep.gc)."""
        upkeep.gc(ctx, self.kinds, conf, raw_conf)

    def status(self, ctx: AttachContext, raw_conf: Mapping[str, Any] | None = None) -> None:
        """CNI STATUS (see upkeep.status)."""
        upkeep.status(ctx, raw_conf)


VF = VfKind()
KINDS: Kinds = {VF.name: VF}
"""Every kind of attachment, by its records' `kind` tag."""

SRIOV = Plugin("sriov", parse_netconf, VF, KINDS)
"""The `sriov` plugin: one VF into a pod."""

PLUGINS: Mapping[str, Plugin] = {SRIOV.type: SRIOV}
"""Every plugin, by the CNI config's `type` (the name the runtime executes)."""


__all__ = ["KINDS", "PLUGINS", "SRIOV", "VF", "ConfParser", "Plugin"]
