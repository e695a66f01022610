"""The lab tier: tests marked `lab` run inside a QEMU guest with a real dual-port 82576 (igb).

On the host, the selected lab tests are handed to ONE guest session (see
`labbridge` beside this file) and each reports its outcome from the guest's junit XML. Inside the
guest (`SRIOVKIT_IN_LAB=1`) the fixtures below run for real against the guest's sysfs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Beside this file (pytest puts this directory on sys.path): the pytest side of the lab lives
# with the tests, so the shipped package never imports pytest.
from labbridge import in_lab, replace_lab_items

# The guest's NIC (QEMU's `igb` on a PCIe root port; see sriovkit.lab.runner).
PF_ADDRESSES = ("0000:01:00.0", "0000:01:00.1")
PCI = Path("/sys/bus/pci/devices")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # trylast: run after `-m`/`-k` deselection, so the guest gets exactly the selected lab tests.
    replace_lab_items(config, items)


def _reset_vfs() -> None:
    # Cleanup between tests sharing one guest; a plain sysfs write, not the code under test.
    for pf in PF_ADDRESSES:
        numvfs = PCI / pf / "sriov_numvfs"
        if numvfs.exists() and numvfs.read_text().strip() != "0":
            numvfs.write_text("0")


@pytest.fixture(autouse=True)
def _lab_clean_vfs(request: pytest.FixtureRequest) -> Iterator[None]:
    """In the guest: every lab test starts and ends with no VFs."""
    if not (in_lab() and request.node.get_closest_marker("lab")):
        yield
        return
    _reset_vfs()
    yield
    _reset_vfs()


@pytest.fixture
def pfs() -> tuple[str, ...]:
    """The guest's two 82576 PF addresses."""
    return PF_ADDRESSES


def _sriovkit_argv() -> list[str]:
    script = Path(sys.executable).parent / "sriovkit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from sriovkit.cli import main; sys.exit(main())"]


@pytest.fixture
def sriovkit() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the project's CLI (`sriovkit ARGS...`) as a process; a non-zero exit fails the test."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*_sriovkit_argv(), *args], capture_output=True, text=True, timeout=300, check=False
        )
        if check and proc.returncode != 0:
            pytest.fail(f"sriovkit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def inventory(
    sriovkit: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[[], dict[str, dict[str, Any]]]:
    """`sriovkit inventory --json`, as {address: device}."""

    def read() -> dict[str, dict[str, Any]]:
        doc = json.loads(sriovkit("inventory", "--json").stdout)
        return {dev["address"]: dev for dev in doc["devices"]}

    return read
