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


def test_a_failed_add_is_logged_as_error_and_stdout_is_only_the_error(tmp_path: Path) -> None:
    log = tmp_path / "sriov.log"
    env = {**ENV, "SRIOVKIT_ROOT": str(tmp_path / "empty-host"),
           "SRIOVKIT_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    (tmp_path / "empty-host").mkdir()
    code, out = execute(env, json.dumps(_conf(log)).encode())
    assert code == 1 and "0000:3b:10.0" in json.loads(out)["msg"]
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["command"] == "ADD"
    assert "0000:3b:10.0" in entry["error"] and entry["deviceID"] == "0000:3b:10.0"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_rejected_config_writes_no_log_anywhere(tmp_path: Path) -> None:
    log = tmp_path / "never.log"
    code, out = execute(ENV, json.dumps(_conf(log, vlan=5000)).encode())
    assert code == 1 and json.loads(out)["code"] == 7
    assert not log.exists(), "a config that failed validation must not choose files to write"


def test_deeply_nested_config_is_a_decode_error(tmp_path: Path) -> None:
    nested = b"[" * 100000 + b"]" * 100000
    code, out = execute(ENV, b'{"cniVersion": "1.0.0", "x": ' + nested + b"}")
    assert code == 1 and json.loads(out)["code"] == 6


def test_device_info_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "info.fifo"
    os.mkfifo(fifo)
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "sriov",
            "runtimeConfig": {"CNIDeviceInfoFile": str(fifo)}}  # fmt: skip
    code, out = execute(ENV, json.dumps(conf).encode())
    err = json.loads(out)
    assert code == 1 and err["code"] == 7 and "regular file" in err["msg"]


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
