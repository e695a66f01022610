"""The lab guest itself: what the harness promises every later lab test (no project code needed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")


def _attr(address: str, name: str) -> str:
    return (PCI / address / name).read_text().strip()


def test_guest_has_both_82576_pfs_with_real_sriov(pfs: tuple[str, ...]) -> None:
    assert os.environ.get("SRIOVKIT_IN_LAB") == "1"
    for pf in pfs:
        assert (_attr(pf, "vendor"), _attr(pf, "device")) == ("0x8086", "0x10c9")
        assert (PCI / pf / "driver").resolve().name == "igb"
        # The device offers 8 VFs; the igb driver caps sriov_totalvfs at 7.
        assert _attr(pf, "sriov_totalvfs") == "7"
        assert _attr(pf, "sriov_numvfs") == "0"
        assert _attr(pf, "sriov_offset") == "128"
        assert _attr(pf, "sriov_stride") == "2"
        assert _attr(pf, "sriov_vf_device") == "10ca"
        assert (PCI / pf / "iommu_group").resolve().parent.name == "iommu_groups"
        assert [p.name for p in (PCI / pf / "net").iterdir()]


def test_lspci_runs_in_the_guest_and_sees_the_nic(pfs: tuple[str, ...]) -> None:
    out = subprocess.run(["lspci", "-nn", "-D"], capture_output=True, text=True, check=True).stdout
    for pf in pfs:
        assert re.search(rf"^{re.escape(pf)} Ethernet controller \[0200\]: .*\[8086:10c9\]", out,
                         re.MULTILINE)


def test_guest_kernel_modules_load(tmp_path: Path) -> None:
    # The guest's /lib/modules is the cached guest kernel's: modprobe works for later tiers.
    subprocess.run(["modprobe", "bonding"], check=True, capture_output=True)
    assert Path("/sys/class/net/bonding_masters").exists()
    # Writes land in the guest's tmpfs overlay, never on the host.
    (tmp_path / "probe").write_text("x")
    assert (tmp_path / "probe").read_text() == "x"
