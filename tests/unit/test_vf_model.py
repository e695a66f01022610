"""VfSettings validation, diff and the kernel-order helpers (pure model)."""

from __future__ import annotations

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.vf import (
    DEFAULT_SETTINGS,
    KERNEL_ORDER,
    LinkState,
    VfAttr,
    VfInfo,
    VfSettings,
    VlanProto,
    complete_request,
    diff,
    not_applied,
)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mac": "02:00:00:00:00"}, "mac"),
        ({"mac": "zz:00:00:00:00:01"}, "mac"),
        ({"mac": "01:00:5e:00:00:01"}, "mac"),  # multicast
        ({"mac": "ff:ff:ff:ff:ff:ff"}, "mac"),  # broadcast
        ({"vlan": -1}, "vlan"),
        ({"vlan": 4095}, "vlan"),
        ({"vlan": 10, "qos": 8}, "qos"),
        ({"vlan": 10, "qos": -1}, "qos"),
        ({"qos": 3}, "qos"),  # qos without a vlan
        ({"vlan": 0, "qos": 3}, "qos"),
        ({"proto": VlanProto.DOT1AD}, "proto"),
        ({"vlan": 0, "proto": VlanProto.DOT1AD}, "proto"),
        ({"min_tx_rate": -1}, "min-tx-rate"),
        ({"max_tx_rate": -5}, "max-tx-rate"),
        ({"min_tx_rate": 200, "max_tx_rate": 100}, "min-rate"),
    ],
)
def test_invalid_settings_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        VfSettings(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_valid_settings_are_normalised() -> None:
    s = VfSettings(mac="02:AB:CD:00:00:01", vlan=4094, qos=7, proto=VlanProto.DOT1AD)
    assert s.mac == "02:ab:cd:00:00:01"
    assert VfSettings(mac="00:00:00:00:00:00").mac == "00:00:00:00:00:00"  # clears the admin MAC
    assert VfSettings(min_tx_rate=500, max_tx_rate=0).min_tx_rate == 500  # max 0 = unlimited


def test_parsers() -> None:
    assert VlanProto.parse("802.1ad") is VlanProto.DOT1AD
    assert VlanProto.parse("802.1Q") is VlanProto.DOT1Q
    assert LinkState.parse("Disable") is LinkState.DISABLE
    assert int(LinkState.ENABLE) == 1
    with pytest.raises(InvalidInput):
        VlanProto.parse("qinq")
    with pytest.raises(InvalidInput):
        LinkState.parse("up")


def test_attrs_follow_kernel_order() -> None:
    s = VfSettings(trust=True, mac="02:00:00:00:00:01", link_state=LinkState.AUTO, max_tx_rate=5)
    assert s.attrs() == (VfAttr.MAC, VfAttr.RATE, VfAttr.LINK_STATE, VfAttr.TRUST)
    assert KERNEL_ORDER[0] is VfAttr.MAC
    assert KERNEL_ORDER[-1] is VfAttr.TRUST


def test_diff_only_changed_and_whole_attributes() -> None:
    cur = VfInfo(index=0, vlan=10, qos=2, max_tx_rate=100)
    d = diff(cur, VfSettings(vlan=10, qos=5, spoofchk=True, min_tx_rate=0, max_tx_rate=200))
    assert [c.field for c in d.changes] == ["qos", "max_tx_rate"]
    # qos travels with vlan and proto; max rate with min rate
    assert d.request == VfSettings(
        vlan=10, qos=5, proto=VlanProto.DOT1Q, min_tx_rate=0, max_tx_rate=200
    )
    assert d.attrs == (VfAttr.VLAN, VfAttr.RATE)


def test_diff_nothing_to_do() -> None:
    cur = VfInfo(index=1)
    d = diff(cur, DEFAULT_SETTINGS)
    assert d.changes == ()
    assert d.request.empty


def test_diff_clearing_vlan_clears_qos_and_proto() -> None:
    cur = VfInfo(index=0, vlan=10, qos=3, proto=VlanProto.DOT1AD)
    d = diff(cur, VfSettings(vlan=0))
    assert d.request.vlan == 0
    assert d.request.qos == 0
    assert d.request.proto is VlanProto.DOT1Q


def test_diff_checks_rates_against_current() -> None:
    with pytest.raises(InvalidInput) as err:
        diff(VfInfo(index=0, max_tx_rate=100), VfSettings(min_tx_rate=500))
    assert err.value.field == "min-rate"


def test_complete_request_uses_ip_link_semantics() -> None:
    cur = VfInfo(index=0, vlan=5, qos=4, min_tx_rate=10, max_tx_rate=300)
    full = complete_request(cur, VfSettings(vlan=7, max_tx_rate=400))
    assert (full.qos, full.proto) == (0, VlanProto.DOT1Q)
    assert (full.min_tx_rate, full.max_tx_rate) == (10, 400)


def test_not_applied_reports_first_refused_in_order() -> None:
    req = VfSettings(mac="02:00:00:00:00:09", link_state=LinkState.DISABLE, trust=True)
    read_back = VfInfo(index=0, mac="02:00:00:00:00:09")
    assert not_applied(read_back, req) == (VfAttr.LINK_STATE, VfAttr.TRUST)
    # a field the driver does not report cannot be verified
    assert not_applied(VfInfo(index=0, trust=None), VfSettings(trust=True)) == ()


def test_as_settings_round_trip() -> None:
    info = VfInfo(index=2, mac="02:00:00:00:00:02", vlan=9, qos=1, trust=True, max_tx_rate=50)
    assert info.with_settings(info.as_settings()) == info
    assert diff(info, info.as_settings()).changes == ()
