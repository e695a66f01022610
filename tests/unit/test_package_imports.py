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


_GRPC_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {"grpc", "google"})))
"""


def test_cli_and_cni_shim_do_not_import_grpc() -> None:
    """grpc (and protobuf) belong to the device plugin: the CLI's other commands and the `sriov`
    CNI shim, which runs once per pod ADD, must not pay for loading them."""
    for module in ("sriovkit.cli", "sriovkit.cni.shim", "sriovkit.cni.dispatch"):
        proc = subprocess.run(
            [sys.executable, "-c", _GRPC_PROBE, module],
            capture_output=True, text=True, check=True, timeout=120,
        )
        assert json.loads(proc.stdout) == [], module
