"""The plugin's own log, as the network config asks (`logFile`, `logLevel`).

Runtimes read only stdout, so the log is the one place a failed or slow ADD leaves a trace.
One line per invocation, appended; logging never changes the plugin's answer and never writes
to stdout or stderr. Levels are sriov-cni's (panic < error < warning < info < debug); with a
`logFile` and no `logLevel`, info.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

_LEVELS = {"panic": 0, "error": 1, "warning": 2, "info": 3, "debug": 4}
_MAX_LINE = 64 * 1024


def log_invocation(
    raw_conf: Mapping[str, Any] | None,
    env: Mapping[str, str],
    code: int,
    out: bytes,
    elapsed: float,
) -> None:
    """Append one line about this invocation to the config's `logFile`, if it names one."""
    if raw_conf is None:
        return
    path = raw_conf.get("logFile")
    level_name = raw_conf.get("logLevel") or "info"
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return
    level = _LEVELS.get(str(level_name).lower())
    if level is None or level < (_LEVELS["error"] if code else _LEVELS["info"]):
        return
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "level": "error" if code else "info",
        "command": env.get("CNI_COMMAND"),
        "containerID": env.get("CNI_CONTAINERID"),
        "ifname": env.get("CNI_IFNAME"),
        "netns": env.get("CNI_NETNS"),
        "deviceID": raw_conf.get("deviceID"),
        "ms": round(elapsed * 1000, 1),
    }
    if code:
        entry["error"] = out.decode("utf-8", "replace").strip()
    if level >= _LEVELS["debug"]:
        entry["config"] = raw_conf
        entry["stdout"] = out.decode("utf-8", "replace").strip()
    line = json.dumps(entry, default=str)[:_MAX_LINE] + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)  # fmt: skip
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        return  # a log that cannot be written must not fail the attachment
