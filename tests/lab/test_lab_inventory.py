"""`sriovkit inventory --json` on the (emulated) 82576 agrees with the kernel and lspci."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")
Inventory = Callable[[], dict[str, dict[str, Any]]]


def _lspci(*args: str) -> str:
    return subprocess.run(["lspci", *args], capture_output=True, text=True, check=True).stdout


def _lspci_sriov(address: str) -> dict[str, Any]:
    """The SR-IOV capability as lspci decodes it from config space."""
    out = _lspci("-vvv", "-s", address)
    cap = re.search(r"Capabilities: \[([0-9a-f]+) v\d\] Single Root I/O Virtualization", out)
    totals = re.search(r"Total VFs: (\d+), Number of VFs: (\d+)", out)
    layout = re.search(r"VF offset: (\d+), stride: (\d+), Device ID: ([0-9a-f]{4})", out)
    driver = re.search(r"Kernel driver in use: (\S+)", out)
    assert cap and totals and layout and driver, out
    return {
        "cap_offset": int(cap.group(1), 16),
        "device_total_vfs": int(totals.group(1)),
        "num_vfs": int(totals.group(2)),
        "offset": int(layout.group(1)),
        "stride": int(layout.group(2)),
        "vf_device_id": layout.group(3),
        "driver": driver.group(1),
    }


def test_inventory_shows_both_pfs_with_real_sriov_figures(
    pfs: tuple[str, ...], inventory: Inventory
) -> None:
    inv = inventory()
    for pf in pfs:
        dev = inv[pf]
        assert (dev["vendor_id"], dev["device_id"], dev["class"]) == ("8086", "10c9", "0x020000")
        assert dev["driver"] == "igb"
        assert dev["physfn"] is None and dev["vf_index"] is None
        assert dev["netdevs"] == sorted(p.name for p in (PCI / pf / "net").iterdir())
        assert dev["iommu_group"] == int((PCI / pf / "iommu_group").resolve().name)
        assert dev["modalias"] == (PCI / pf / "modalias").read_text().strip()
        # QEMU's igb carries Red Hat's subsystem ids.
        assert (dev["subsystem_vendor_id"], dev["subsystem_device_id"]) == ("1af4", "1100")
        sriov = dev["sriov"]
        assert sriov is not None
        # total 7: the device's config space says 8, the igb driver caps sriov_totalvfs at 7.
        assert (sriov["total_vfs"], sriov["num_vfs"]) == (7, 0)
        assert (sriov["offset"], sriov["stride"], sriov["vf_device_id"]) == (128, 2, "10ca")

        decoded = _lspci_sriov(pf)
        assert sriov["cap_offset"] == decoded["cap_offset"]
        assert (sriov["offset"], sriov["stride"], sriov["vf_device_id"]) == (
            decoded["offset"],
            decoded["stride"],
            decoded["vf_device_id"],
        )
        assert decoded["device_total_vfs"] == 8
        assert sriov["num_vfs"] == decoded["num_vfs"]
        assert dev["driver"] == decoded["driver"]


def test_inventory_lists_exactly_what_lspci_lists(inventory: Inventory) -> None:
    inv = inventory()
    listed = {}
    for line in _lspci("-nn", "-D").splitlines():
        m = re.match(r"(\S+) .*\[([0-9a-f]{4})\]: .*\[([0-9a-f]{4}):([0-9a-f]{4})\]", line)
        assert m, line
        listed[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    assert sorted(inv) == sorted(listed)
    for address, (cls, vendor, device) in listed.items():
        dev = inv[address]
        assert (dev["vendor_id"], dev["device_id"]) == (vendor, device)
        assert dev["class"].removeprefix("0x")[:4] == cls


def _uevent(address: str) -> dict[str, str]:
    lines = (PCI / address / "uevent").read_text().splitlines()
    return dict(line.partition("=")[::2] for line in lines)


def test_every_vf_matches_its_own_uevent_links_and_netdevs(
    pfs: tuple[str, ...], inventory: Inventory
) -> None:
    # The inventory reads a PF's first VF in full and gives its siblings the same ids, class,
    # subsystem and modalias (the kernel reads those once, from VF 0). On the real kernel each
    # VF must still come out exactly as its own uevent, links and net/ directory say - one of
    # them bound to vfio-pci, so it differs from the VF it was copied from.
    from sriovkit.host.sysfs import Sysfs  # noqa: PLC0415
    from sriovkit.model.pci import PciAddress  # noqa: PLC0415
    from sriovkit.ops.vf import bind_driver, set_num_vfs  # noqa: PLC0415

    sysfs = Sysfs(Path("/"))
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    first = set_num_vfs(sysfs, PciAddress.parse(pfs[0]), 7)
    set_num_vfs(sysfs, PciAddress.parse(pfs[1]), 3)
    rebound = str(first[3].address)
    assert bind_driver(sysfs, first[3].address, "vfio-pci") == "vfio-pci"

    inv = inventory()
    vfs = sorted(a for a, d in inv.items() if d["physfn"] is not None)
    assert len(vfs) == 10
    for address in vfs:
        dev, ev = inv[address], _uevent(address)
        vendor, device = ev["PCI_ID"].lower().split(":")
        sub_vendor, sub_device = ev["PCI_SUBSYS_ID"].lower().split(":")
        assert (dev["vendor_id"], dev["device_id"]) == (vendor.zfill(4), device.zfill(4))
        assert (dev["subsystem_vendor_id"], dev["subsystem_device_id"]) == (
            sub_vendor.zfill(4), sub_device.zfill(4)
        )  # fmt: skip
        assert dev["class"] == f"0x{int(ev['PCI_CLASS'], 16):06x}"
        assert dev["modalias"] == ev["MODALIAS"]
        assert dev["driver"] == ev.get("DRIVER")
        assert dev["iommu_group"] == int((PCI / address / "iommu_group").resolve().name)
        net = PCI / address / "net"
        assert dev["netdevs"] == (sorted(p.name for p in net.iterdir()) if net.is_dir() else [])
    assert inv[rebound]["driver"] == "vfio-pci" and inv[rebound]["netdevs"] == []
    assert {inv[a]["driver"] for a in vfs if a != rebound} == {"igbvf"}
