"""The plugin's `logFile`/`logLevel`: one line per invocation, never on stdout, never fatal."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from sriovkit.cni.dispatch import execute
from sriovkit.cni.log import log_invocation

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "net1",
    "CNI_PATH": "/usr/lib/cni",
}


def _conf(log: Path, **extra: object) -> dict[str, object]:
    return {"cniVersion": "1.0.0", "name": "n", "type": "sriov", "deviceID": "0000:3b:10.0",
            "logFile": str(log), **extra}  # fmt: skip


def test_a_refused_add_is_logged_as_error_and_stdout_is_only_the_error(tmp_path: Path) -> None:
    log = tmp_path / "sriov.log"
    code, out = execute(ENV, json.dumps(_conf(log, vlan=5000)).encode())
    assert code == 1 and json.loads(out)["code"] == 7
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["command"] == "ADD"
    assert "vlan" in entry["error"] and entry["deviceID"] == "0000:3b:10.0"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_levels_filter_and_debug_adds_the_config(tmp_path: Path) -> None:
    log = tmp_path / "l.log"
    log_invocation(_conf(log, logLevel="error"), ENV, 0, b"{}", 0.01)
    assert not log.exists(), "success is info, below error"
    log_invocation(_conf(log, logLevel="info"), ENV, 0, b"{}", 0.01)
    log_invocation(_conf(log, logLevel="debug"), ENV, 0, b'{"ips": []}', 0.01)
    first, second = (json.loads(x) for x in log.read_text().splitlines())
    assert first["level"] == "info" and "config" not in first
    assert second["config"]["logLevel"] == "debug" and second["stdout"] == '{"ips": []}'
    log_invocation(_conf(log, logLevel="panic"), ENV, 1, b"{}", 0.01)
    assert len(log.read_text().splitlines()) == 2


def test_an_unwritable_or_symlinked_log_is_ignored(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "link.log"
    os.symlink(target, link)
    log_invocation(_conf(link), ENV, 0, b"{}", 0.01)  # O_NOFOLLOW: refused, silently
    assert not target.exists()
    log_invocation(_conf(tmp_path / "missing-dir" / "x.log"), ENV, 0, b"{}", 0.01)
    log_invocation(_conf(Path("relative.log")), ENV, 0, b"{}", 0.01)
    assert not Path("relative.log").exists()
