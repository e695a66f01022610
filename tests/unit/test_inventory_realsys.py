"""On this machine's real /sys, `sriovkit inventory --all` prints what `lspci -nn -D` prints."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sriovkit.cli import cli

pytestmark = pytest.mark.skipif(
    shutil.which("lspci") is None or not Path("/sys/bus/pci/devices").is_dir(),
    reason="needs pciutils' lspci and a PCI bus in /sys",
)


def test_inventory_all_matches_lspci_nn_on_real_sys() -> None:
    ours = CliRunner().invoke(cli, ["--root", "/", "inventory", "--all"])
    assert ours.exit_code == 0, ours.output
    theirs = subprocess.run(["lspci", "-nn", "-D"], capture_output=True, text=True, check=True)
    assert ours.output.splitlines() == theirs.stdout.splitlines()


def test_inventory_json_addresses_match_lspci_on_real_sys() -> None:
    ours = CliRunner().invoke(cli, ["--root", "/", "inventory", "--json"])
    assert ours.exit_code == 0, ours.output
    doc = json.loads(ours.output)
    theirs = subprocess.run(["lspci", "-n", "-D"], capture_output=True, text=True, check=True)
    expected = {
        line.split()[0]: line.split()[2] for line in theirs.stdout.splitlines() if line.strip()
    }
    assert {d["address"]: f"{d['vendor_id']}:{d['device_id']}" for d in doc["devices"]} == expected
