"""What the bonding driver refuses at creation, once, for the simulated and the real driver.

Measured in the lab (kernel 6.12, `ip link add ... type bond` and the project's pyroute2 seam):
the errno each create request gets. Run against `FakeNetlink` (tests/unit/test_ops_bond.py) and
against the real kernel (tests/lab/test_lab_bond.py), so the simulated driver cannot drift.
`PORT` is replaced by the name of an existing link. Not a test module itself.
"""

from __future__ import annotations

import errno

import pytest

from sriovkit.errors import HostError
from sriovkit.host.netlink import Bonds
from sriovkit.model.bond import ArpValidate, BondMode, BondOptions, LacpRate

PORT = "<port>"

REFUSALS: list[tuple[str, BondMode, BondOptions, int]] = [
    # "option not supported in mode" (bond_opt_check_deps: unsuppmodes)
    ("primary in balance-rr", BondMode.BALANCE_RR, BondOptions(primary=PORT), errno.EACCES),
    ("lacp_rate in active-backup", BondMode.ACTIVE_BACKUP, BondOptions(lacp_rate=LacpRate.FAST),
     errno.EACCES),
    ("arp_interval in 802.3ad", BondMode.IEEE_802_3AD, BondOptions(arp_interval=100), errno.EACCES),
    ("packets_per_slave in active-backup", BondMode.ACTIVE_BACKUP,
     BondOptions(packets_per_slave=2), errno.EACCES),
    ("tlb_dynamic_lb in 802.3ad", BondMode.IEEE_802_3AD, BondOptions(tlb_dynamic_lb=False),
     errno.EACCES),
    # "ARP monitoring/validating cannot be used with MII monitoring"
    ("miimon with arp_interval", BondMode.ACTIVE_BACKUP, BondOptions(miimon=100, arp_interval=100),
     errno.EINVAL),
    ("miimon with arp_validate", BondMode.ACTIVE_BACKUP,
     BondOptions(miimon=100, arp_validate=ArpValidate.ALL), errno.EINVAL),
    # delays without the MII monitor (even 0)
    ("updelay without miimon", BondMode.ACTIVE_BACKUP, BondOptions(updelay=200), errno.EPERM),
    # active_slave needs ports; a multicast actor system is no system
    ("active_slave at creation", BondMode.ACTIVE_BACKUP, BondOptions(active_slave=PORT),
     errno.EINVAL),
    ("multicast ad_actor_system", BondMode.IEEE_802_3AD,
     BondOptions(ad_actor_system="01:00:5e:00:00:01"), errno.EINVAL),
]  # fmt: skip


def refusal_params() -> list[object]:
    """The table as pytest params, named."""
    return [pytest.param(mode, opts, code, id=name) for name, mode, opts, code in REFUSALS]


def check_refusal(nl: Bonds, port: str, mode: BondMode, options: BondOptions, code: int) -> None:
    """Creating bond `bp` with `options` is refused with `code`, and no bond is left."""
    given = {k: (port if v == PORT else v) for k, v in options.given()}
    with pytest.raises(HostError) as err:
        nl.create_bond("bp", mode, BondOptions(**given))
    assert err.value.errno == code, str(err.value)
    assert "bp" not in nl.bonds()
