"""IPAM delegation: run the IPAM plugin a network config names (`ipam.type`) the CNI way.

Per the CNI spec the IPAM plugin is an executable found in CNI_PATH; it gets the *whole* network
config on stdin and the same CNI_* environment as the calling plugin, and answers on stdout with a
result (success) or an error object `{"code", "msg", "details"}` (non-zero exit).

The plugin is exec'd directly with `subprocess` (never a forked Python child: the node agent runs
grpc, and fork and grpc do not mix), in a new session so a plugin that hangs can be killed with
everything it started, with a minimal environment (CNI_* + PATH) and never our own stdin.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sriovkit.errors import HostError, InvalidInput, IpamError, NotFound, SriovkitError, Timeout
from sriovkit.model.cni import check_plugin_name

# A plugin type is a file name in CNI_PATH, never a path: `../x` or `/usr/bin/x` would let a
# network config run any binary on the node.
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_STDERR_TAIL = 400


# IPAM plugins that allocate from their own store and never look at the pod: they may run while
# the VF is still on its way into (or out of) the pod's netns. `dhcp` runs its client on
# CNI_IFNAME inside CNI_NETNS, and a plugin we do not know may do the same, so those wait.
POD_INDEPENDENT = frozenset({"host-local", "static", "whereabouts"})


def pod_independent(netconf: Mapping[str, Any]) -> bool:
    """True when the config's IPAM plugin is known not to touch the pod's netns or interface."""
    ipam = netconf.get("ipam")
    return isinstance(ipam, Mapping) and ipam.get("type") in POD_INDEPENDENT


def ipam_type(netconf: Mapping[str, Any]) -> str:
    """The validated `ipam.type` of a network config."""
    ipam = netconf.get("ipam")
    if not isinstance(ipam, Mapping):
        raise InvalidInput("ipam", "the network config has no `ipam` object")
    return check_plugin_name(ipam.get("type"))


class Ipam:
    """Runs IPAM plugins from `cni_path` (searched in order), each call bounded by `timeout` s."""

    def __init__(self, cni_path: Sequence[Path], timeout: float = 10.0) -> None:
        self.cni_path = [Path(p) for p in cni_path]
        self.timeout = timeout

    def find(self, kind: str) -> Path:
        """The executable for plugin `kind` in CNI_PATH; NotFound names every searched dir."""
        for directory in self.cni_path:
            candidate = directory / kind
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        dirs = ", ".join(str(d) for d in self.cni_path) or "(CNI_PATH is empty)"
        raise NotFound(f"IPAM plugin {kind!r} not found in CNI_PATH: {dirs}")

    def add(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """CNI ADD: allocate; returns the plugin's result (`ips`, `routes`, `dns`, ...)."""
        result = self._exec("ADD", netconf, env)
        if result is None:
            kind = ipam_type(netconf)
            raise IpamError(kind, 999, "ADD returned no result")
        return result

    def delete(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        """CNI DEL: release. Plugins treat an unknown container as released (idempotent DEL)."""
        self._exec("DEL", netconf, env)

    def check(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        """CNI CHECK: the plugin verifies its allocation (needs `prevResult` in the config)."""
        self._exec("CHECK", netconf, env)

    def gc(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> bool:
        """CNI GC (spec 1.1.0): the plugin drops what `cni.dev/valid-attachments` omits.

        Returns False, sending nothing, when the plugin's VERSION answer lacks 1.1.0: a plugin
        that predates GC has nothing to collect and answers GC with assorted errors.
        """
        if "1.1.0" not in self.supported_versions(ipam_type(netconf)):
            return False
        self._exec_once("GC", netconf, env)
        return True

    def status(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> bool:
        """CNI STATUS (spec 1.1.0) of the plugin; False, asking nothing, if it predates STATUS.

        A plugin that is not ready answers with an error, raised as IpamError with its code
        (50/51), which the caller passes on as its own STATUS answer.
        """
        if "1.1.0" not in self.supported_versions(ipam_type(netconf)):
            return False
        self._exec_once("STATUS", netconf, env)
        return True

    def supported_versions(self, kind: str) -> tuple[str, ...]:
        """The spec versions plugin `kind` says it speaks (CNI VERSION); () if it will not say."""
        try:
            answer = self._exec_once("VERSION", {"cniVersion": "1.0.0", "ipam": {"type": kind}}, {})
        except SriovkitError:
            return ()
        versions = (answer or {}).get("supportedVersions")
        if not isinstance(versions, list):
            return ()
        return tuple(v for v in versions if isinstance(v, str))

    def _env(self, command: str, env: Mapping[str, str]) -> dict[str, str]:
        clean = {k: str(v) for k, v in env.items() if k.startswith("CNI_")}
        clean["CNI_COMMAND"] = command
        clean.setdefault("CNI_PATH", os.pathsep.join(str(p) for p in self.cni_path))
        # PATH lets plugins that shell out (or dhcp's client socket helpers) work; nothing else
        # of ours (proxies, PYTHON*, our secrets) leaks into the plugin.
        clean["PATH"] = os.environ.get("PATH") or _DEFAULT_PATH
        return clean

    def _exec(
        self, command: str, netconf: Mapping[str, Any], env: Mapping[str, str]
    ) -> dict[str, Any] | None:
        """Run the plugin; a 1.1.0 config refused as an unknown version is asked again as 1.0.0.

        IPAM plugins built before spec 1.1.0 (Debian 12's host-local and static know up to
        1.0.0) refuse a 1.1.0 config outright (code 1), yet ADD, DEL and CHECK mean the same in
        both versions and a 1.0.0 result converts up losslessly. GC configs are always 1.1.0.
        """
        try:
            return self._exec_once(command, netconf, env)
        except IpamError as exc:
            if exc.code != 1 or netconf.get("cniVersion") != "1.1.0":
                raise
            return self._exec_once(command, {**netconf, "cniVersion": "1.0.0"}, env)

    def _exec_once(
        self, command: str, netconf: Mapping[str, Any], env: Mapping[str, str]
    ) -> dict[str, Any] | None:
        kind = ipam_type(netconf)
        binary = self.find(kind)
        stdin = json.dumps(netconf).encode()
        try:
            proc = subprocess.Popen(
                [str(binary)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env(command, env),
                cwd="/",
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise HostError(
                f"cannot run IPAM plugin {kind} ({binary}): {os.strerror(code)}", errno=code
            ) from exc
        try:
            out, err = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_session(proc)
            raise Timeout(
                f"IPAM plugin {kind} did not answer {command} within {self.timeout:g} s"
            ) from None
        return _answer(kind, command, proc.returncode, out, err)


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """Kill the plugin and whatever it started (they share its session), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        # The pipes close once every process holding them is dead...
        proc.communicate(timeout=1.0)
    except subprocess.TimeoutExpired:
        # ...unless something escaped the session (setsid) still holding them: stop reading.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def _answer(
    kind: str, command: str, returncode: int, out: bytes, err: bytes
) -> dict[str, Any] | None:
    text = out.decode(errors="replace").strip()
    data: Any = None
    if text:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if returncode != 0:
        if isinstance(data, dict) and "code" in data:
            code = data["code"]
            number = code if isinstance(code, int) and not isinstance(code, bool) else 999
            msg, details = data.get("msg") or "no message", data.get("details") or ""
            raise IpamError(kind, number, str(msg), str(details))
        why = err.decode(errors="replace").strip()[-_STDERR_TAIL:] or text[-_STDERR_TAIL:]
        what = f"{command} exited with status {returncode}"
        if returncode < 0:
            what = f"{command} was killed by signal {-returncode}"
        raise IpamError(kind, 999, what, why)
    if not text:
        return None  # DEL and CHECK answer with nothing on success
    if not isinstance(data, dict):
        raise IpamError(kind, 999, f"{command} printed something that is not a JSON object")
    return data


__all__ = ["POD_INDEPENDENT", "Ipam", "IpamError", "ipam_type", "pod_independent"]
