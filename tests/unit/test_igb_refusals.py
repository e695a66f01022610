"""The igb refusal contract (tests/contract/igb_refusals.py) against the simulated igb."""

from __future__ import annotations

import pytest

from contract.igb_refusals import Refusal, check_refusal, refusal_params
from sriovkit.sim.netlink import FakeNetlink

PF = "enp175s0f1"


@pytest.mark.parametrize("index", [0, 3])
@pytest.mark.parametrize("refusal", refusal_params())
def test_simulated_igb_refuses_like_the_driver(refusal: Refusal, index: int) -> None:
    nl = FakeNetlink()
    nl.add_link(PF, driver="igb", num_vfs=4, speed=1000)
    check_refusal(nl, PF, index, refusal)
