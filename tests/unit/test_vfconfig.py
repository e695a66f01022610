"""apply_vf / reset_vf on the fake: every attribute, validation, partial failure, restore."""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest

from sriovkit.errors import HostError, InvalidInput, NotFound
from sriovkit.model.vf import LinkState, VfInfo, VfSettings, VlanProto
from sriovkit.ops.vfconfig import apply_vf, read_vf, reset_vf
from sriovkit.sim.netlink import FakeNetlink


def fake(driver: str = "igb", num_vfs: int = 4) -> FakeNetlink:
    nl = FakeNetlink()
    nl.add_link("enp175s0f1", driver=driver, num_vfs=num_vfs, speed=1000)
    return nl


PF = "enp175s0f1"


@pytest.mark.parametrize(
    ("settings", "field", "value"),
    [
        (VfSettings(mac="02:00:00:aa:bb:cc"), "mac", "02:00:00:aa:bb:cc"),
        (VfSettings(vlan=4094), "vlan", 4094),
        (VfSettings(vlan=10, qos=7), "qos", 7),
        (VfSettings(spoofchk=False), "spoofchk", False),
        (VfSettings(trust=True), "trust", True),
        (VfSettings(max_tx_rate=1000), "max_tx_rate", 1000),
    ],
)
def test_each_attribute_igb_accepts(settings: VfSettings, field: str, value: object) -> None:
    nl = fake()
    change = apply_vf(nl, PF, 3, settings)
    assert getattr(change.after, field) == value
    assert getattr(read_vf(nl, PF, 3), field) == value
    assert nl.requests == 1


@pytest.mark.parametrize(
    ("settings", "field", "value"),
    [
        (VfSettings(vlan=10, proto=VlanProto.DOT1AD), "proto", VlanProto.DOT1AD),
        (VfSettings(link_state=LinkState.DISABLE), "link_state", LinkState.DISABLE),
        (VfSettings(link_state=LinkState.ENABLE), "link_state", LinkState.ENABLE),
        (VfSettings(min_tx_rate=100, max_tx_rate=400), "min_tx_rate", 100),
    ],
)
def test_attributes_igb_refuses_work_on_a_driver_that_has_them(
    settings: VfSettings, field: str, value: object
) -> None:
    nl = fake("ice")
    apply_vf(nl, PF, 0, settings)
    assert getattr(read_vf(nl, PF, 0), field) == value


# What igb refuses, with the error naming the attribute and the VF left unchanged:
# tests/contract/igb_refusals.py, run on this fake by tests/unit/test_igb_refusals.py.


def test_partial_failure_is_restored_to_previous_state() -> None:
    nl = fake()
    apply_vf(nl, PF, 1, VfSettings(mac="02:00:00:00:00:01", vlan=20, qos=1, trust=True))
    before = read_vf(nl, PF, 1)
    wanted = VfSettings(
        mac="02:00:00:00:00:99", vlan=30, spoofchk=False, link_state=LinkState.ENABLE, trust=False
    )
    with pytest.raises(HostError, match=r"VF 1 link-state .*VF left unchanged"):
        apply_vf(nl, PF, 1, wanted)
    assert read_vf(nl, PF, 1) == before  # mac, vlan and spoofchk had been applied: put back


def test_validation_errors_touch_nothing() -> None:
    nl = fake("ice")
    apply_vf(nl, PF, 0, VfSettings(max_tx_rate=100))
    with pytest.raises(InvalidInput) as err:
        apply_vf(nl, PF, 0, VfSettings(min_tx_rate=500))  # above the current max
    assert err.value.field == "min-rate"
    assert nl.requests == 1


def test_missing_vf_and_pf() -> None:
    nl = fake(num_vfs=2)
    with pytest.raises(NotFound, match="VF 5 not found on enp175s0f1"):
        apply_vf(nl, PF, 5, VfSettings(trust=True))
    with pytest.raises(NotFound):
        apply_vf(nl, "eth9", 0, VfSettings(trust=True))


def test_nothing_to_do_sends_nothing() -> None:
    nl = fake()
    change = apply_vf(nl, PF, 0, VfSettings(vlan=0, spoofchk=True, trust=False))
    assert not change.changed
    assert nl.requests == 0


def test_dry_run_reports_and_sends_nothing() -> None:
    nl = fake()
    change = apply_vf(nl, PF, 0, VfSettings(vlan=7, qos=2, trust=True), dry_run=True)
    assert [c.field for c in change.changes] == ["vlan", "qos", "trust"]
    assert change.dry_run
    assert nl.requests == 0
    assert read_vf(nl, PF, 0).vlan == 0


def test_all_changes_go_in_one_request() -> None:
    nl = fake()
    apply_vf(
        nl,
        PF,
        2,
        VfSettings(mac="02:00:00:00:00:02", vlan=3, qos=3, spoofchk=False, trust=True),
    )
    assert nl.requests == 1


class SilentDriver(FakeNetlink):
    """Accepts a trust change without error but does not apply it (a buggy driver)."""

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        if settings.trust:
            settings = replace(settings, trust=None)
            if settings.empty:
                self.requests += 1
                return
        super().set_vf(pf, index, settings)


def test_accepted_but_not_applied_is_detected_and_restored() -> None:
    nl = SilentDriver()
    nl.add_link(PF, driver="igb", num_vfs=1)
    with pytest.raises(HostError) as err:
        apply_vf(nl, PF, 0, VfSettings(mac="02:00:00:00:00:05", trust=True))
    assert "the driver accepted the request but reports trust off" in str(err.value)
    assert read_vf(nl, PF, 0).mac == "00:00:00:00:00:00"


class NoRestore(FakeNetlink):
    """Refuses every request after the first (the restore)."""

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        if self.requests:
            self.requests += 1
            raise HostError("refused", errno=errno.EBUSY)
        super().set_vf(pf, index, settings)


def test_failed_restore_says_the_vf_may_be_partially_configured() -> None:
    nl = NoRestore()
    nl.add_link(PF, driver="igb", num_vfs=1)
    with pytest.raises(HostError) as err:
        apply_vf(nl, PF, 0, VfSettings(vlan=4, link_state=LinkState.DISABLE))
    assert "restoring the VF failed" in str(err.value)
    assert "partially configured" in str(err.value)
    assert err.value.errno == errno.EOPNOTSUPP


def test_reset_returns_to_defaults_and_is_idempotent() -> None:
    nl = fake()
    apply_vf(
        nl,
        PF,
        0,
        VfSettings(mac="02:00:00:00:00:0a", vlan=11, qos=4, spoofchk=False, trust=True),
    )
    apply_vf(nl, PF, 0, VfSettings(max_tx_rate=300))
    reset_vf(nl, PF, 0)
    got = read_vf(nl, PF, 0)
    assert got == VfInfo(index=0, stats=got.stats)
    sent = nl.requests
    assert not reset_vf(nl, PF, 0).changed
    assert nl.requests == sent


def test_restore_reports_igb_rate_refusal_without_carrier() -> None:
    nl = fake()
    apply_vf(nl, PF, 0, VfSettings(max_tx_rate=100))
    nl.set_carrier(PF, False)
    with pytest.raises(HostError, match="VF 0 rate on enp175s0f1: Invalid argument"):
        reset_vf(nl, PF, 0)
    assert read_vf(nl, PF, 0).max_tx_rate == 100
