"""pciutils' own reader sees the simulated hardware: ids, tree, SR-IOV capability."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sriovkit.sim import PROFILES, create_host, profile_names

LSPCI = shutil.which("lspci")
pytestmark = pytest.mark.skipif(LSPCI is None, reason="lspci (pciutils) is not installed")


def _lspci(root: Path, *args: str) -> str:
    assert LSPCI is not None
    out = subprocess.run(
        [LSPCI, "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    return create_host(tmp_path_factory.mktemp("l") / "root", profile_names(), vfs=2)


def test_lspci_lists_every_function_with_its_ids(host) -> None:
    out = _lspci(host.root, "-nn", "-D")
    listed = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+) .*\[([0-9a-f]{4}):([0-9a-f]{4})\]", line)
        assert m, line
        listed[m[1]] = (int(m[2], 16), int(m[3], 16))
    assert sorted(listed) == host.devices
    for addr in host.devices:
        vendor = int((host.root / "sys/bus/pci/devices" / addr / "vendor").read_text(), 16)
        device = int((host.root / "sys/bus/pci/devices" / addr / "device").read_text(), 16)
        assert listed[addr] == (vendor, device)


@pytest.mark.parametrize("name", profile_names())
def test_lspci_shows_the_sriov_capability(host, name: str) -> None:
    prof = PROFILES[name]
    for pf in (p for p in host.pfs if p.profile == name):
        out = _lspci(host.root, "-vvv", "-s", pf.address)
        assert "Single Root I/O Virtualization (SR-IOV)" in out
        totals = re.search(r"Initial VFs: (\d+), Total VFs: (\d+), Number of VFs: (\d+)", out)
        assert totals is not None
        assert int(totals[2]) == prof.device_total_vfs
        assert int(totals[3]) == pf.num_vfs == 2
        geo = re.search(r"VF offset: (\d+), stride: (\d+), Device ID: ([0-9a-f]+)", out)
        assert geo is not None
        sysfs = host.root / "sys/bus/pci/devices" / pf.address
        assert int(geo[1]) == int((sysfs / "sriov_offset").read_text())
        assert int(geo[2]) == prof.vf_stride
        assert int(geo[3], 16) == prof.vf_device
        assert f"Kernel driver in use: {prof.driver}" in out
        assert "Enable+" in out.split("IOVCtl:")[1].splitlines()[0]


def test_lspci_vf_shows_virtual_bars_and_express(host) -> None:
    pf = host.pfs[0]
    vf = host.vfs(pf.address)[0]
    out = _lspci(host.root, "-vvv", "-s", vf)
    assert "[virtual]" in out
    assert "Express (v2) Endpoint" in out
    assert "MSI-X:" in out


def test_lspci_tree_puts_cards_behind_root_ports(host) -> None:
    out = _lspci(host.root, "-t")
    assert re.search(r"\[0000:3a\]-\+-00\.0-\[3b\]", out), out
