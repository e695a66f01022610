"""Tier gating shared by every test: `root` tests need root, network namespaces and veth."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from sriovkit.sim.veth import VETH_MARKER

# Under CI, an integration/runtime module that skips itself at import fails the run instead.
pytest_plugins = ("ci_guard",)


@cache
def root_tier_missing() -> str | None:
    """Why the integration tier cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "integration tier needs root (network namespaces and veth)"
    if shutil.which("ip") is None:
        return "integration tier needs iproute2's `ip`"
    name = f"sriovkit-probe-{os.getpid()}"
    probe = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


@cache
def runtime_tier_missing() -> str | None:
    """Why the runtime tier (podman 4 + runc executing our CNI plugin) cannot run, or None."""
    reason = root_tier_missing()
    if reason is not None:
        return reason.replace("integration tier", "runtime tier")
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("conmon", "conmon")):
        if shutil.which(tool) is None:
            return f"runtime tier needs `{tool}` (Debian package {package}; make bootstrap)"
    if not Path("/usr/lib/cni/host-local").is_file():
        return "runtime tier needs /usr/lib/cni/host-local (Debian's containernetworking-plugins)"
    if not Path("/bin/busybox").is_file():
        return "runtime tier needs /bin/busybox for its image (Debian's busybox-static)"
    proc = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=False)
    version = proc.stdout.split()[-1] if proc.returncode == 0 and proc.stdout.split() else "?"
    if not version.split(".")[0].isdigit():
        return f"runtime tier: `podman --version` said {proc.stdout or proc.stderr!r}"
    if int(version.split(".")[0]) != 4:
        return f"runtime tier needs podman 4 (its CNI network backend); this is podman {version}"
    return None


@cache
def image_tier_missing() -> str | None:
    """Why the image tier (build the agent image with podman, run it) cannot run, or None."""
    reason = runtime_tier_missing()
    if reason is not None:
        return reason.replace("runtime tier", "image tier")
    cached_base = Path("/var/cache/sriovkit-image/base.tar").is_file()
    if shutil.which("debootstrap") is None and not cached_base:
        return "image tier needs `debootstrap` for the image's base (make bootstrap)"
    return None


@cache
def node_tier_missing() -> str | None:
    """Why the node tier (a real kubelet + containerd) cannot run here, or None."""
    reason = root_tier_missing()
    if reason is not None:
        return reason.replace("integration tier", "node tier")
    from sriovkit.errors import NodeUnavailable  # noqa: PLC0415
    from sriovkit.node.setup import default_cache, ensure_node  # noqa: PLC0415

    try:
        ensure_node(default_cache(), install=False)
    except NodeUnavailable as exc:
        return f"node tier: {exc} (make node-setup)"
    for tool in ("containerd", "ctr", "strace", "nsenter"):
        if shutil.which(tool) is None:
            return f"node tier needs `{tool}` (make node-setup)"
    for plugin in ("host-local", "loopback"):
        if not Path("/usr/lib/cni", plugin).is_file():
            return f"node tier needs /usr/lib/cni/{plugin} (Debian's containernetworking-plugins)"
    if not Path("/bin/busybox").is_file():
        return "node tier needs /bin/busybox for its pod image (Debian's busybox-static)"
    # kubelet's device-plugins directory is a constant (/var/lib/kubelet/device-plugins): one
    # kubelet per machine.
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "kubelet":
                return f"node tier: another kubelet (pid {proc.name}) runs on this machine"
    return None


def _gate_tier(items: list[pytest.Item], marker: str, missing: Callable[[], str | None]) -> None:
    """Skip `marker` tests with the reason where the tier cannot run; in CI, fail."""
    marked = [item for item in items if item.get_closest_marker(marker) is not None]
    if not marked:
        return
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the {marker} tier, but {reason}")
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `root` tests with the reason where the tier cannot run; in CI that is a failure."""
    _gate_tier(items, "runtime", runtime_tier_missing)
    _gate_tier(items, "image", image_tier_missing)
    _gate_tier(items, "node", node_tier_missing)
    if not any("root" in item.keywords for item in items):
        return
    reason = root_tier_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(f"CI must run the integration tier, but {reason}")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def _veth_tokens(base: Path) -> set[str]:
    """Tokens of the veth-mode hosts this session made under its temporary directory."""
    tokens: set[str] = set()
    for depth in ("*", "*/*", "*/*/*"):
        for marker in base.glob(f"{depth}/{VETH_MARKER}"):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                tokens.add(json.loads(marker.read_text()).get("token", ""))
    return tokens - {""}


def _tagged_links(tokens: set[str]) -> list[str]:
    proc = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []
    out = []
    for link in json.loads(proc.stdout or "[]"):
        kind, _, token = str(link.get("ifalias", "")).partition(" ")
        if kind == "sriovkit-veth" and token in tokens:
            out.append(str(link["ifname"]))
    return out


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left veth pairs of its simulated hosts in the host netns.

    Only links tagged with the token of a host made under this session's own temporary
    directory count, so another session (or a benchmark) running meanwhile is never blamed.
    The leftovers are deleted, so one faulty test cannot pile pairs up run after run.
    """
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    if base is None or os.geteuid() != 0 or shutil.which("ip") is None:
        return
    leaked = _tagged_links(_veth_tokens(Path(base)))
    if not leaked:
        return
    for name in leaked:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = f"tests left {len(leaked)} veth link(s) of simulated hosts behind: {', '.join(leaked)}"
    if reporter is not None:
        reporter.write_line(f"ERROR: {text} (deleted now)", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
