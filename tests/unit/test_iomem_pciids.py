from __future__ import annotations

from pathlib import Path

import pytest

from sriovkit.host.pciids import PciIds, _find_device
from sriovkit.model.iomem import parse_iomem, ranges_by_device
from sriovkit.model.pci import PciAddress

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
c0000000-febfffff : PCI Bus 0000:00
  fb000000-fbffffff : PCI Bus 0000:01
    fb000000-fb01ffff : 0000:01:00.0
      fb000000-fb01ffff : igb
    fb020000-fb023fff : 0000:01:00.0
    fb040000-fb043fff : 0000:01:10.0
      fb040000-fb043fff : igbvf
fee00000-fee00fff : Local APIC
"""


def test_iomem_tree_and_device_ranges() -> None:
    roots = parse_iomem(IOMEM)
    assert [r.name for r in roots] == ["Reserved", "System RAM", "PCI Bus 0000:00", "Local APIC"]
    bus = roots[2].children[0]
    assert bus.name == "PCI Bus 0000:01" and len(bus.children) == 3
    by_dev = ranges_by_device(roots)
    pf = by_dev[PciAddress.parse("0000:01:00.0")]
    assert [(r.start, r.end, r.claimed_by) for r in pf] == [
        (0xFB000000, 0xFB01FFFF, "igb"),
        (0xFB020000, 0xFB023FFF, None),
    ]
    assert by_dev[PciAddress.parse("0000:01:10.0")][0].claimed_by == "igbvf"
    assert roots[2].children[0].children[0].size == 0x20000


PCI_IDS = """\
# comment
8086  Intel Corporation
\t10c9  82576 Gigabit Network Connection
\t\t8086 a03c  Gigabit ET Dual Port Server Adapter
\t10ca  82576 Virtual Function
8087  Intel Corp. (other)
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
"""


def test_pciids_lookup(tmp_path: Path) -> None:
    f = tmp_path / "pci.ids"
    f.write_text(PCI_IDS)
    ids = PciIds(f)
    assert ids.vendor(0x8086) == "Intel Corporation"
    assert ids.device(0x8086, 0x10CA) == "82576 Virtual Function"
    assert ids.device(0x8087, 0x10CA) is None
    assert ids.subsystem(0x8086, 0x10C9, 0x8086, 0xA03C) == "Gigabit ET Dual Port Server Adapter"
    assert ids.subsystem(0x8086, 0x10CA, 0x8086, 0xA03C) is None
    assert ids.class_name(0x020000) == "Ethernet controller"
    assert ids.class_name(0x038000) == "Display controller"  # no subclass entry: base name
    assert ids.vendor(0x1234) is None


def test_pciids_missing_has_a_clear_reason(tmp_path: Path) -> None:
    ids = PciIds(tmp_path / "absent.ids")
    assert not ids.available
    assert ids.vendor(0x8086) is None
    assert ids.missing_reason is not None and "absent.ids" in ids.missing_reason


def _device_ids(block: str) -> list[str]:
    return [line[1:5] for line in block.split("\n") if line[:1] == "\t" and line[1:2] != "\t"]


def test_device_search_finds_every_device_of_the_real_database() -> None:
    # The binary search must land exactly where a plain search does, for every device of
    # every vendor the system's pci.ids lists (and miss what it does not list).
    ids = PciIds()
    if not ids.available:
        pytest.skip("no pci.ids on this machine (Debian package pci.ids)")
    text = ids._load()
    checked = 0
    for vendor in ("8086", "15b3", "14e4", "10de", "1af4"):
        block = ids._block(f"{vendor}  ")
        assert block is not None
        for dev in _device_ids(block):
            assert _find_device(block, dev) == block.find(f"\n\t{dev}  "), (vendor, dev)
            checked += 1
        assert _find_device(block, "zzzz") == -1
    assert checked > 1000 and text


def test_device_search_still_finds_devices_of_an_unsorted_block() -> None:
    lines = [f"\t{i:04x}  Device {i}\n\t\t8086 {i:04x}  Sub {i}" for i in range(600, 0, -3)]
    block = "8086  Intel\n" + "\n".join(lines) + "\n"
    for dev in _device_ids(block):
        assert _find_device(block, dev) == block.find(f"\n\t{dev}  ")
    assert _find_device(block, "0001") == -1
