from __future__ import annotations

import struct

import pytest

from sriovkit.model.configspace import parse_config


def _space() -> bytes:
    """A hand-made 82576-like PF config space: PM, MSI-X, PCIe caps; AER, ARI, SR-IOV ext caps."""
    b = bytearray(4096)
    struct.pack_into("<HHHH", b, 0, 0x8086, 0x10C9, 0x0406, 0x0010)  # caps-list bit in status
    struct.pack_into("<I", b, 8, 0x02000001)  # class 020000, rev 01
    b[0x0E] = 0x80  # multifunction
    struct.pack_into("<HH", b, 0x2C, 0x8086, 0xA03C)
    b[0x34] = 0x40
    b[0x3D] = 1
    b[0x40:0x42] = bytes([0x01, 0x50])  # PM -> 0x50
    b[0x50:0x52] = bytes([0x11, 0xA0])  # MSI-X -> 0xa0
    b[0xA0:0xA2] = bytes([0x10, 0x00])  # Express, end
    struct.pack_into("<H", b, 0xA2, 0x0002)  # v2 endpoint
    struct.pack_into("<I", b, 0xA0 + 0x0C, 0x00000041)  # link cap 2.5GT/s x4
    struct.pack_into("<H", b, 0xA0 + 0x12, 0x0041)  # link status 2.5GT/s x4

    def ext(off: int, cap_id: int, ver: int, nxt: int) -> None:
        struct.pack_into("<I", b, off, cap_id | ver << 16 | nxt << 20)

    ext(0x100, 0x0001, 1, 0x140)
    ext(0x140, 0x000E, 1, 0x160)
    ext(0x160, 0x0010, 1, 0)
    s = 0x160
    struct.pack_into("<H", b, s + 0x08, 0x0019)  # VF enable + MSE + ARI
    struct.pack_into("<HHH", b, s + 0x0C, 8, 8, 2)  # initial, total, num
    struct.pack_into("<HH", b, s + 0x14, 128, 2)
    struct.pack_into("<H", b, s + 0x1A, 0x10CA)
    struct.pack_into("<II", b, s + 0x1C, 0x553, 1)
    return bytes(b)


def test_header_and_capabilities() -> None:
    cfg = parse_config(_space())
    ids = (cfg.vendor_id, cfg.device_id, cfg.class_code, cfg.revision)
    assert ids == (0x8086, 0x10C9, 0x020000, 1)
    assert cfg.multifunction and cfg.header_type == 0
    assert (cfg.subsystem_vendor_id, cfg.subsystem_device_id) == (0x8086, 0xA03C)
    labels = [c.label for c in cfg.capabilities]
    assert labels == [
        "[40] Power Management",
        "[50] MSI-X",
        "[a0] Express",
        "[100 v1] Advanced Error Reporting",
        "[140 v1] Alternative Routing-ID Interpretation (ARI)",
        "[160 v1] Single Root I/O Virtualization (SR-IOV)",
    ]
    assert cfg.pcie is not None
    link = (cfg.pcie.port_type, cfg.pcie.max_speed, cfg.pcie.max_width)
    assert link == ("Endpoint", "2.5GT/s", 4)


def test_sriov_block_in_full() -> None:
    s = parse_config(_space()).sriov
    assert s is not None
    assert s.offset == 0x160
    assert (s.initial_vfs, s.total_vfs, s.num_vfs) == (8, 8, 2)
    assert (s.first_vf_offset, s.vf_stride, s.vf_device_id) == (128, 2, 0x10CA)
    assert s.vf_enable and s.vf_mse and s.ari_hierarchy
    assert s.supported_page_sizes == 0x553


def test_non_root_64_bytes_has_header_only() -> None:
    cfg = parse_config(_space()[:64])
    assert cfg.capabilities == () and cfg.sriov is None and cfg.vendor_id == 0x8086


def test_looping_capability_list_terminates() -> None:
    b = bytearray(_space())
    b[0x51] = 0x40  # MSI-X points back to PM
    cfg = parse_config(bytes(b))
    assert [c.offset for c in cfg.capabilities if not c.extended] == [0x40, 0x50]


def test_short_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="64"):
        parse_config(b"\x00" * 10)
