"""What igb refuses of `ip link set PF vf N ...`, once, for every tier that has an igb.

The table is the lab's measurement (LAB-NOTES: QEMU's 82576 with the real igb driver). The
same body runs against the simulated igb (`sriovkit.sim.netlink.FakeNetlink`, unit tier:
tests/unit/test_igb_refusals.py) and against the real driver in the lab guest
(tests/lab/test_lab_vfconfig.py), so the fake cannot drift from the driver unnoticed.
Importable from both tiers as `contract.igb_refusals` (tests/ is on sys.path through its
conftest); not a test module itself.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import pytest

from sriovkit.errors import HostError
from sriovkit.host.netlink import Netlink
from sriovkit.model.vf import LinkState, VfSettings, VlanProto
from sriovkit.ops.vfconfig import apply_vf, read_vf


@dataclass(frozen=True, slots=True)
class Refusal:
    """One request igb refuses: the settings, the attribute named in the error, the errno."""

    settings: VfSettings
    attr: str
    code: int


# Refused whatever the PF's carrier or speed (max_tx_rate depends on both: not in here).
IGB_REFUSALS = {
    "link-state-disable": Refusal(
        VfSettings(link_state=LinkState.DISABLE), "link-state", errno.EOPNOTSUPP
    ),
    "link-state-enable": Refusal(
        VfSettings(link_state=LinkState.ENABLE), "link-state", errno.EOPNOTSUPP
    ),
    "min-tx-rate": Refusal(VfSettings(min_tx_rate=10, max_tx_rate=100), "rate", errno.EINVAL),
    "vlan-proto-8021ad": Refusal(
        VfSettings(vlan=10, proto=VlanProto.DOT1AD), "vlan", errno.EPROTONOSUPPORT
    ),
}


def refusal_params() -> list[object]:
    """`IGB_REFUSALS` as pytest parameters named by their keys."""
    return [pytest.param(r, id=name) for name, r in IGB_REFUSALS.items()]


def check_refusal(nl: Netlink, pf: str, index: int, refusal: Refusal) -> None:
    """The driver refuses `refusal` with its errno and keeps the VF as it was, and `apply_vf`
    names the refused attribute and leaves the VF unchanged."""
    before = read_vf(nl, pf, index)
    with pytest.raises(HostError) as raw:
        nl.set_vf(pf, index, refusal.settings)
    assert raw.value.errno == refusal.code
    assert read_vf(nl, pf, index) == before

    with pytest.raises(HostError) as err:
        apply_vf(nl, pf, index, refusal.settings)
    attr = refusal.attr
    assert err.value.errno == refusal.code
    assert str(err.value) == (
        f"failed to set VF {index} {attr} on {pf}: {os.strerror(refusal.code)} "
        f"(the driver refused {attr}; VF left unchanged)"
    )
    assert read_vf(nl, pf, index) == before
