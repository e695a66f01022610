"""The CNI_* environment of one plugin invocation, validated per the spec's rules for each verb.

Pure: reads a mapping, not os.environ. Failures are BadEnv (CNI code 4, "invalid environment
variables"); container id and interface name rules come from `attachment` (they become file names).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sriovkit.errors import BadEnv, InvalidInput
from sriovkit.model.attachment import AttachmentKey, check_container_id, check_ifname


class CniCommand(enum.StrEnum):
    """CNI_COMMAND values."""

    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    VERSION = "VERSION"
    STATUS = "STATUS"
    GC = "GC"


_ATTACH = frozenset({CniCommand.ADD, CniCommand.DEL, CniCommand.CHECK})
_ARG_KEY = re.compile(r"[A-Za-z0-9_]+")
_TEXT_VARS = ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS", "CNI_PATH")


def _utf8(var: str, value: str) -> str:
    """`value`, unless it holds bytes that are not UTF-8 (BadEnv naming `var`).

    The shim and the agent carry the environment's raw bytes into str with surrogateescape,
    so such bytes arrive as lone surrogates; no record, JSON result or netdev name can hold
    them, and refusing here is what keeps them from failing later as an internal error.
    """
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            try:
                shown = repr(value.encode("utf-8", "surrogateescape"))
            except UnicodeEncodeError:  # a surrogate that did not come from a byte
                shown = ascii(value)
            raise BadEnv(var, f"not valid UTF-8: {shown}") from None
    return value


def parse_cni_args(text: str) -> dict[str, str]:
    """`CNI_ARGS` (`K=V;K2=V2`) as a dict; unknown keys are kept (K8S_POD_NAME etc.)."""
    out: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not _ARG_KEY.fullmatch(key):
            raise BadEnv("CNI_ARGS", f"{pair!r} is not KEY=VALUE")
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class CniEnv:
    """The validated CNI_* environment of one plugin invocation."""

    command: CniCommand
    container_id: str | None = None
    netns: str | None = None
    ifname: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()

    @property
    def key(self) -> AttachmentKey:
        """(container id, ifname) of ADD/DEL/CHECK."""
        if self.container_id is None or self.ifname is None:
            raise BadEnv("CNI_CONTAINERID", f"{self.command} has no attachment")
        return AttachmentKey(self.container_id, self.ifname)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CniEnv:
        """Validate `env` per the spec's rules for its CNI_COMMAND (BadEnv, code 4)."""
        raw = env.get("CNI_COMMAND", "")
        if not raw:
            raise BadEnv("CNI_COMMAND", "not set")
        try:
            command = CniCommand(raw)
        except ValueError:
            raise BadEnv("CNI_COMMAND", f"unknown command {raw!r}") from None
        attach = command in _ATTACH
        container_id = env.get("CNI_CONTAINERID") or None
        ifname = env.get("CNI_IFNAME") or None
        netns = env.get("CNI_NETNS") or None
        path_text = env.get("CNI_PATH", "")
        args_text = env.get("CNI_ARGS", "")
        # What a verb uses must be text; VERSION uses none of it (it must answer regardless).
        used = _TEXT_VARS if attach else () if command is CniCommand.VERSION else ("CNI_PATH",)
        for var in used:
            _utf8(var, env.get(var, ""))
        if attach:
            for var, value in (("CNI_CONTAINERID", container_id), ("CNI_IFNAME", ifname)):
                if value is None:
                    raise BadEnv(var, f"not set (required for {command})")
            if netns is None and command is not CniCommand.DEL:
                raise BadEnv("CNI_NETNS", f"not set (required for {command})")
            if not path_text:
                raise BadEnv("CNI_PATH", f"not set (required for {command})")
            # Only the attaching verbs use these (VERSION must answer whatever else is set).
            try:
                check_container_id(container_id or "", "CNI_CONTAINERID")
                check_ifname(ifname or "", "CNI_IFNAME")
            except InvalidInput as exc:
                raise BadEnv(exc.field, exc.reason) from None
            if netns is not None and (not netns.startswith("/") or "\0" in netns):
                raise BadEnv("CNI_NETNS", f"{netns!r} is not an absolute path")
        return cls(
            command=command,
            container_id=container_id if attach else None,
            netns=netns if attach else None,
            ifname=ifname if attach else None,
            args=parse_cni_args(args_text) if attach else {},
            path=tuple(p for p in path_text.split(":") if p),
        )


__all__ = ["BadEnv", "CniCommand", "CniEnv", "parse_cni_args"]
