from __future__ import annotations

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.device import PciDevice
from sriovkit.model.modalias import format_modalias, parse_modalias
from sriovkit.model.pci import PciAddress, vf_address


def test_parse_and_format_roundtrip() -> None:
    a = PciAddress.parse("0000:3b:00.1")
    assert (a.domain, a.bus, a.slot, a.function) == (0, 0x3B, 0, 1)
    assert str(a) == "0000:3b:00.1"
    assert a.short == "3b:00.1"
    assert PciAddress.parse("3b:02.7") == PciAddress(0, 0x3B, 2, 7)


@pytest.mark.parametrize(
    "bad", ["", "0000:3b:00", "0000:3b:00.8", "zz:00.0", "0000:3b:20.0", "../x"]
)
def test_parse_rejects_with_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        PciAddress.parse(bad, field="deviceID")
    assert err.value.field == "deviceID"


def test_try_parse_needs_domain_and_returns_none() -> None:
    assert PciAddress.try_parse("virtio2") is None
    assert PciAddress.try_parse("3b:00.0") is None
    assert PciAddress.try_parse("0000:3b:00.0") == PciAddress(0, 0x3B, 0, 0)


def test_vf_address_follows_offset_and_stride_across_buses() -> None:
    pf = PciAddress.parse("0000:01:00.0")
    # 82576 in the lab: offset 128, stride 2 -> VF0 at 01:10.0, VF1 at 01:10.2
    assert str(vf_address(pf, 128, 2, 0)) == "0000:01:10.0"
    assert str(vf_address(pf, 128, 2, 1)) == "0000:01:10.2"
    pf1 = PciAddress.parse("0000:01:00.1")
    assert str(vf_address(pf1, 128, 2, 0)) == "0000:01:10.1"
    # 256 VFs with stride 1 spill onto the next bus
    assert str(vf_address(PciAddress.parse("0000:3b:00.0"), 8, 1, 255)) == "0000:3c:00.7"


def test_vf_address_beyond_last_bus_is_an_error() -> None:
    with pytest.raises(InvalidInput):
        vf_address(PciAddress.parse("0000:ff:00.0"), 0x100, 1, 0)


def test_modalias_roundtrip() -> None:
    text = "pci:v00008086d000010CAsv00001AF4sd00001100bc02sc00i00"
    m = parse_modalias(text)
    assert (m.vendor_id, m.device_id, m.subsystem_vendor_id, m.subsystem_device_id) == (
        0x8086, 0x10CA, 0x1AF4, 0x1100,
    )
    assert m.class_code == 0x020000
    assert str(m) == text == format_modalias(0x8086, 0x10CA, 0x1AF4, 0x1100, 0x020000)
    with pytest.raises(InvalidInput):
        parse_modalias("usb:v1234")


@pytest.mark.parametrize(
    ("args", "what"),
    [((0x10000, 0, 0, 0), "domain/bus"), ((0, 0x100, 0, 0), "domain/bus"),
     ((0, 0, 0x20, 0), "slot/function"), ((0, 0, 0, 8), "slot/function"),
     ((0, -1, 0, 0), "domain/bus")],
)  # fmt: skip
def test_address_out_of_range_is_refused(args: tuple[int, int, int, int], what: str) -> None:
    with pytest.raises(InvalidInput) as err:
        PciAddress(*args)
    assert what in str(err.value)
    with pytest.raises(InvalidInput):
        PciAddress.from_routing_id(0x10000, 0)


def test_address_orders_and_hashes_as_its_numbers() -> None:
    a, b = PciAddress.parse("0000:3b:00.1"), PciAddress.parse("0000:3b:10.0")
    assert a < b and sorted([b, a]) == [a, b]
    assert {a: 1}[PciAddress(0, 0x3B, 0, 1)] == 1
    assert PciAddress.from_routing_id(0, 0x3B01) == a
    assert repr(a) == "PciAddress(domain=0, bus=59, slot=0, function=1)"


def test_device_field_ranges_the_inventory_slices() -> None:
    # pciwalk and discover take these ranges by position (see PciDevice's docstring).
    ids = ("vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "class_code")
    assert PciDevice._fields[1:6] == ids
    assert PciDevice._fields[1:10] == (*ids, "revision", "driver", "modalias", "numa_node")


def test_replace_checks_like_a_new_address() -> None:
    a = PciAddress.parse("0000:3b:00.1")
    assert a._replace(function=7) == PciAddress(0, 0x3B, 0, 7)
    with pytest.raises(InvalidInput):
        a._replace(bus=0x1FF)
