"""The shipped package never imports pytest: every module under src/sriovkit, imported in a fresh
interpreter, leaves `pytest` (and `_pytest`) out of sys.modules. The lab's pytest bridge lives in
tests/lab/labbridge.py for that reason."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import sriovkit

_PROBE = """
import importlib, json, pkgutil, sys
import sriovkit
names = sorted(m.name for m in pkgutil.walk_packages(sriovkit.__path__, "sriovkit."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_no_shipped_module_imports_pytest() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(proc.stdout)
    expected = {m.name for m in pkgutil.walk_packages(sriovkit.__path__, "sriovkit.")}
    assert set(report["modules"]) == expected and "sriovkit.cli" in expected
    leaked = [m for m in report["loaded"] if m.split(".")[0] in {"pytest", "_pytest"}]
    assert leaked == []
