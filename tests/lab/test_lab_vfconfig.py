"""VF attributes on the real igb driver (QEMU's emulated 82576) through sriovkit's own code.

Runs inside the lab guest: finds an igb PF, creates 2 VFs with `ops.vf.set_num_vfs`, and checks
that what igb accepts is applied, what it refuses is refused with the errno LAB-NOTES measured,
and that a partly applied request is rolled back. The lab conftest resets every PF to 0 VFs around
each test, so each test creates its own VFs.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.igb_refusals import Refusal, check_refusal, refusal_params
from sriovkit.errors import HostError
from sriovkit.host.netlink import LinkChange, Netlink
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import LinkState, VfSettings, VlanProto
from sriovkit.ops.vfconfig import apply_vf, read_vf, reset_vf

pytestmark = pytest.mark.lab

IGB = Path("/sys/bus/pci/drivers/igb")


def _igb_pf() -> tuple[PciAddress, str] | None:
    if os.geteuid() != 0 or not IGB.is_dir():
        return None
    for dev in sorted(IGB.iterdir()):
        nets = sorted((dev / "net").iterdir()) if (dev / "net").is_dir() else []
        if (dev / "sriov_totalvfs").exists() and nets:
            return PciAddress.parse(dev.name), nets[0].name
    return None


@pytest.fixture
def lab() -> Iterator[tuple[Netlink, str]]:
    found = _igb_pf()
    if found is None:
        pytest.skip("needs root and an igb SR-IOV PF (run inside the QEMU lab guest)")
    try:
        from sriovkit.ops.vf import set_num_vfs  # noqa: PLC0415
    except ImportError:
        pytest.skip("sriovkit.ops.vf.set_num_vfs is not available yet")
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415
    from sriovkit.host.sysfs import Sysfs  # noqa: PLC0415

    addr, pf = found
    sysfs = Sysfs(Path("/"))
    set_num_vfs(sysfs, addr, 2)
    nl = Pyroute2Netlink()
    try:
        nl.set_link(pf, LinkChange(up=True))
        yield nl, pf
    finally:
        nl.close()
        set_num_vfs(sysfs, addr, 0)


def test_igb_applies_what_it_supports(lab: tuple[Netlink, str]) -> None:
    nl, pf = lab
    wanted = VfSettings(mac="02:5a:00:00:00:01", vlan=100, qos=3, spoofchk=False, trust=True)
    change = apply_vf(nl, pf, 1, wanted)
    got = read_vf(nl, pf, 1)
    assert got == change.after
    assert (got.mac, got.vlan, got.qos, got.proto) == ("02:5a:00:00:00:01", 100, 3, VlanProto.DOT1Q)
    assert (got.spoofchk, got.trust) == (False, True)
    reset_vf(nl, pf, 1)
    back = read_vf(nl, pf, 1)
    assert (back.mac, back.vlan, back.qos, back.spoofchk, back.trust) == (
        "00:00:00:00:00:00", 0, 0, True, False
    )  # fmt: skip


@pytest.mark.parametrize("refusal", refusal_params())
def test_igb_refusals(lab: tuple[Netlink, str], refusal: Refusal) -> None:
    # The table and the body are shared with the simulated igb (tests/contract/igb_refusals.py).
    nl, pf = lab
    check_refusal(nl, pf, 0, refusal)


def test_partial_application_is_rolled_back(lab: tuple[Netlink, str]) -> None:
    nl, pf = lab
    before = read_vf(nl, pf, 0)
    wanted = VfSettings(mac="02:5a:00:00:00:09", vlan=42, link_state=LinkState.ENABLE, trust=True)
    with pytest.raises(HostError, match=r"link-state.*VF left unchanged"):
        apply_vf(nl, pf, 0, wanted)
    assert read_vf(nl, pf, 0) == before


def test_max_rate_follows_carrier(lab: tuple[Netlink, str]) -> None:
    nl, pf = lab
    carrier = nl.link(pf).carrier
    if carrier:
        apply_vf(nl, pf, 0, VfSettings(max_tx_rate=100))
        assert read_vf(nl, pf, 0).max_tx_rate == 100
        with pytest.raises(HostError) as err:
            apply_vf(nl, pf, 0, VfSettings(max_tx_rate=100000))
        assert err.value.errno == errno.EINVAL
        reset_vf(nl, pf, 0)
        assert read_vf(nl, pf, 0).max_tx_rate == 0
    else:
        with pytest.raises(HostError) as err:
            apply_vf(nl, pf, 0, VfSettings(max_tx_rate=100))
        assert err.value.errno == errno.EINVAL


def test_vf_index_out_of_range(lab: tuple[Netlink, str]) -> None:
    nl, pf = lab
    with pytest.raises(HostError) as err:
        nl.set_vf(pf, 5, VfSettings(trust=True))
    assert err.value.errno == errno.EINVAL
