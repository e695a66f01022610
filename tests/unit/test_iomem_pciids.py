from __future__ import annotations

from pathlib import Path

import pytest

from sriovkit.host.pciids import PciIds, _find_device, _find_sorted
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


def _device_ids(block: bytes) -> list[str]:
    lines = block.split(b"\n")
    return [line[1:5].decode() for line in lines if line[:1] == b"\t" and line[1:2] != b"\t"]


def _vendor_lines(data: bytes) -> dict[str, int]:
    """Offset of each vendor line's leading newline, by id, from a plain pass over the lines."""
    out: dict[str, int] = {}
    at = 0
    for line in data[1:].split(b"\n"):
        vid = line[:4]
        if line[4:6] == b"  " and len(vid) == 4 and all(c in b"0123456789abcdef" for c in vid):
            out.setdefault(vid.decode(), at)
        at += len(line) + 1
    return out


def test_device_search_finds_every_device_of_the_real_database() -> None:
    # The binary search must land exactly where a plain search does, for every device of
    # every vendor the system's pci.ids lists (and miss what it does not list).
    ids = PciIds()
    if not ids.available:
        pytest.skip("no pci.ids on this machine (Debian package pci.ids)")
    data = ids._load()
    checked = 0
    for vendor in ("8086", "15b3", "14e4", "10de", "1af4"):
        block = ids._block(f"{vendor}  ")
        assert block is not None
        for dev in _device_ids(block):
            assert _find_device(block, dev) == block.find(f"\n\t{dev}  ".encode()), (vendor, dev)
            checked += 1
        assert _find_device(block, "zzzz") == -1
    assert checked > 1000 and data


def test_vendor_search_finds_every_vendor_of_the_real_database() -> None:
    ids = PciIds()
    if not ids.available:
        pytest.skip("no pci.ids on this machine (Debian package pci.ids)")
    data = ids._load()
    vendors = _vendor_lines(data)
    assert len(vendors) > 2000
    for vendor, at in vendors.items():
        assert _find_sorted(data, f"\n{vendor}  ".encode(), 0) == at, vendor
    for absent in ("0000", "fff0", "abcz"):
        assert absent not in vendors
        assert _find_sorted(data, f"\n{absent}  ".encode(), 0) == -1


def test_device_search_still_finds_devices_of_an_unsorted_block() -> None:
    lines = [f"\t{i:04x}  Device {i}\n\t\t8086 {i:04x}  Sub {i}" for i in range(600, 0, -3)]
    block = ("8086  Intel\n" + "\n".join(lines) + "\n").encode()
    for dev in _device_ids(block):
        assert _find_device(block, dev) == block.find(f"\n\t{dev}  ".encode())
    assert _find_device(block, "0001") == -1


def test_vendor_search_still_finds_vendors_of_an_unsorted_file(tmp_path: Path) -> None:
    lines = [f"{i:04x}  Vendor {i}\n\t0001  Device of {i}" for i in range(3000, 0, -7)]
    f = tmp_path / "pci.ids"
    f.write_text("# unsorted\n" + "\n".join(lines) + "\nC 02  Network controller\n")
    ids = PciIds(f)
    for i in range(3000, 0, -7):
        assert ids.vendor(i) == f"Vendor {i}"
        assert ids.device(i, 1) == f"Device of {i}"
    assert ids.vendor(2) is None


def test_names_are_decoded_from_utf8(tmp_path: Path) -> None:
    f = tmp_path / "pci.ids"
    f.write_bytes("1234  Gr\u00fcn AG\n\t5678  Kr\u00e4he \u2013 NIC\n".encode())
    ids = PciIds(f)
    assert ids.vendor(0x1234) == "Gr\u00fcn AG"
    assert ids.device(0x1234, 0x5678) == "Kr\u00e4he \u2013 NIC"


def test_a_vendor_on_the_first_line_is_found(tmp_path: Path) -> None:
    f = tmp_path / "pci.ids"
    f.write_text("0001  First\n\t0002  Its device\n0003  Next\nC 02  Network controller\n")
    ids = PciIds(f)
    assert (ids.vendor(1), ids.device(1, 2), ids.vendor(3)) == ("First", "Its device", "Next")
    assert ids.class_name(0x020000) == "Network controller"
