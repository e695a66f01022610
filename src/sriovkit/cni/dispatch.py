"""sriovkit's CNI plugins as one function: `execute(env, stdin) -> (exit code, stdout bytes)`.

Both the node agent (for each request a shim forwards) and the shim's in-process fallback call
`execute`, so the two paths cannot behave differently. It never raises and never prints: every
failure, including a bug, becomes the spec's error object on stdout and exit code 1 (what the
reference plugins' skel exits with; the CNI code lives in the JSON, where runtimes read it).

Order of work, so that nothing touches the host before the input is known good:
CNI_* environment (code 4) -> VERSION (answered from `cniVersion` alone; the shim answers it
itself, identically, and tests compare the two) -> the plugin by the config's `type`
(ops/cni/plugins.py) -> network config (codes 1, 6, 7) -> device-info file -> the host seams
-> the plugin's lifecycle verbs (ops/cni/lifecycle.py). A config with a `resourceName` and no
deviceID gets its VF from kubelet's PodResources API inside ADD (ops/cni/vf/podres.py), through
the client built here on `$SRIOVKIT_KUBELET_DIR/pod-resources/kubelet.sock` (default
/var/lib/kubelet); building it imports no grpc, only asking does. This is the CNI adapter's one
error boundary: anything ops raises, expected or not, becomes the spec's error object here.

DEL is lenient on purpose: a runtime may hand DEL a config that no longer parses (an upgraded
plugin, a hand-edited file) and the attachment record alone says what to give back, so DEL does
not validate the config at all (it is only handed on to IPAM, as JSON) rather than leave a VF
stranded in a dead pod.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sriovkit.cni.log import log_invocation
from sriovkit.errors import InvalidInput, SriovkitError
from sriovkit.host.boot import cached_boot_id
from sriovkit.host.ipam import Ipam
from sriovkit.host.podresources import SOCKET as PODRESOURCES_SOCKET
from sriovkit.host.podresources import PodResources, default_kubelet_dir
from sriovkit.host.state import StateStore, default_state_dir
from sriovkit.model.cni import BadEnv, CniCommand, CniEnv, NetConf, parse_netconf
from sriovkit.model.cni_result import DecodeFailure, error_from, to_version, version_dict
from sriovkit.ops.cni import lifecycle
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.plugins import KINDS, PLUGINS, SRIOV, Plugin
from sriovkit.wiring import open_netlink, open_sysfs

ROOT_ENV = "SRIOVKIT_ROOT"
"""Treat this directory as `/` (a simulated host); unset means the real host."""

ERROR_EXIT = 1
"""Exit code of every failed invocation (the CNI code is in the error JSON on stdout)."""

IPAM_TIMEOUT = 10.0  # seconds one IPAM plugin call may take before it is killed
_DEVICE_INFO_MAX = 1 << 20  # a device-info file is a few hundred bytes

ContextFactory = Callable[[Mapping[str, str]], AbstractContextManager[AttachContext]]
"""Builds the seams for one invocation from its environment (the agent may pool them)."""

StillWanted = Callable[[], None]
"""Raises `Abandoned` when nobody waits for this invocation's answer any more (see
`AttachContext.still_wanted`); the agent passes one per request, the in-process path none."""


def root_of(env: Mapping[str, str]) -> Path:
    """The host root an invocation works on: `$SRIOVKIT_ROOT` (absolute) or `/`."""
    text = env.get(ROOT_ENV, "")
    if not text:
        return Path("/")
    if not text.startswith("/") or "\0" in text:
        raise BadEnv(ROOT_ENV, f"{text!r} is not an absolute path")
    return Path(text)


@contextmanager
def host_context(env: Mapping[str, str]) -> Iterator[AttachContext]:
    """The seams for the host `env` names; the netlink seam is closed on exit."""
    root = root_of(env)
    store = StateStore(default_state_dir(env))
    pod_devices = PodResources(default_kubelet_dir(env) / PODRESOURCES_SOCKET)
    ipam = Ipam([Path(p) for p in env.get("CNI_PATH", "").split(":") if p], IPAM_TIMEOUT)
    sysfs = open_sysfs(root)
    netlink = open_netlink(root)
    try:
        yield AttachContext(
            sysfs=sysfs,
            netlink=netlink,
            ipam=ipam,
            store=store,
            pod_devices=pod_devices,
            boot_id=cached_boot_id(),
        )
    finally:
        netlink.close()


def _sniff_version(stdin: bytes) -> str | None:
    """The config's cniVersion if stdin is a JSON object that has a string one (for errors)."""
    try:
        obj = json.loads(stdin)
    except (ValueError, RecursionError):
        return None
    version = obj.get("cniVersion") if isinstance(obj, dict) else None
    return version if isinstance(version, str) else None


def _plugin(raw: Mapping[str, Any] | None) -> Plugin | None:
    """The plugin the config's `type` names, None when it names none of ours."""
    kind = raw.get("type") if raw is not None else None
    return PLUGINS.get(kind) if isinstance(kind, str) else None


def _raw_conf(stdin: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(stdin)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def read_device_info(conf: NetConf, *, required: bool) -> NetConf:
    """`conf` with the VF from its device-info file when the config names no deviceID.

    Only ADD and CHECK need it (`required`); DEL works from the attachment record, and the
    device plugin may already have removed the file. A config that also has a `resourceName`
    does not need the file either: without it, ADD asks kubelet's PodResources API.
    """
    if conf.device_id is not None or not conf.device_info_file:
        return conf
    field = "runtimeConfig.CNIDeviceInfoFile"
    path = conf.device_info_file
    try:
        if not path.startswith("/") or "\0" in path:
            raise InvalidInput(field, f"{path!r} is not an absolute path")
        # O_NONBLOCK: a FIFO (or device) named here must not park an agent thread forever.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidInput(field, f"{path} is not a regular file")
            data = os.read(fd, _DEVICE_INFO_MAX + 1)
        finally:
            os.close(fd)
        if len(data) > _DEVICE_INFO_MAX:
            raise InvalidInput(field, f"{path} is larger than {_DEVICE_INFO_MAX} bytes")
        return conf.with_device_info(data)
    except OSError as exc:
        if not required:
            return conf
        raise InvalidInput(field, f"cannot read {path}: {exc.strerror}") from None
    except InvalidInput:
        if not required:
            return conf
        raise


def _run(
    env: Mapping[str, str],
    stdin: bytes,
    ctx_factory: ContextFactory,
    still_wanted: StillWanted | None,
) -> bytes:
    cni_env = CniEnv.from_env(env)
    command = cni_env.command
    if command is CniCommand.VERSION:
        return _dump(version_dict(_sniff_version(stdin)))
    raw = _raw_conf(stdin)
    plugin = _plugin(raw)
    conf: NetConf | None = None
    if command is not CniCommand.DEL:
        # DEL is not validated at all (see the module doc): the record says what to give back.
        # A config that names no plugin of ours still gets the usual errors for what is wrong
        # with it (not JSON, a bad cniVersion) before the one about its type.
        conf = (plugin or SRIOV).parse(stdin, cni_env)
        if plugin is None:
            raise InvalidInput(
                "type", f"{conf.type!r} is not a plugin sriovkit serves ({', '.join(PLUGINS)})"
            )
        wanted = command in {CniCommand.ADD, CniCommand.CHECK}
        conf = read_device_info(conf, required=wanted and conf.resource_name is None)
        if raw is None:
            # parse_netconf accepted it, so this cannot happen; say so rather than pass None on.
            raise DecodeFailure("failed to decode network config: not a JSON object")
    with ctx_factory(env) as seams:
        # Per request, so not the factory's business (it may hand out pooled seams).
        ctx = (
            seams if still_wanted is None else dataclasses.replace(seams, still_wanted=still_wanted)
        )
        if command is CniCommand.DEL:
            # The record says what to give back, whichever plugin's config (if any) came.
            lifecycle.delete(ctx, KINDS, cni_env, raw)
            return b""
        assert plugin is not None and conf is not None and raw is not None
        if command is CniCommand.ADD:
            result = plugin.add(ctx, cni_env, conf, raw)
            return _dump(to_version(result, conf.cni_version))
        if command is CniCommand.CHECK:
            plugin.check(ctx, cni_env, conf, raw)
        elif command is CniCommand.GC:
            plugin.gc(ctx, conf, raw)
        else:
            plugin.status(ctx, raw)
    return b""


def execute(
    env: Mapping[str, str],
    stdin: bytes,
    *,
    ctx_factory: ContextFactory = host_context,
    still_wanted: StillWanted | None = None,
) -> tuple[int, bytes]:
    """Run one CNI invocation: `(0, result)` or `(1, error object)`; never raises.

    `env` holds the CNI_* variables (and SRIOVKIT_ROOT / SRIOVKIT_STATE_DIR /
    SRIOVKIT_KUBELET_DIR); `stdin` is the
    network config. `still_wanted` is handed to ADD (it raises `Abandoned`, code 11, when the
    requester is gone). Only SystemExit and KeyboardInterrupt escape (the process is ending).
    """
    start = time.monotonic()
    try:
        answer = 0, _run(env, stdin, ctx_factory, still_wanted)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # the boundary: a runtime gets JSON, not a traceback
        try:
            answer = ERROR_EXIT, _dump(error_from(exc, _sniff_version(stdin)))
        except Exception:  # e.g. an exception whose __str__ fails
            answer = ERROR_EXIT, _dump(error_from(RuntimeError(type(exc).__name__)))
    with contextlib.suppress(Exception):  # logging must never change the answer
        log_invocation(_logged_conf(stdin), env, *answer, time.monotonic() - start)
    return answer


def _logged_conf(stdin: bytes) -> dict[str, Any] | None:
    """The config to log for, only if it validates: a rejected config names no file to write.

    A config that cannot name a `logFile` (not even as JSON escapes) is not parsed again.
    """
    if b"logFile" not in stdin and b"\\u" not in stdin:
        return None
    try:
        parse_netconf(stdin)
    except SriovkitError:
        return None
    return _raw_conf(stdin)


__all__ = [
    "ERROR_EXIT",
    "ROOT_ENV",
    "ContextFactory",
    "StillWanted",
    "execute",
    "host_context",
    "read_device_info",
    "root_of",
]
