"""A bond's options read from sysfs `bonding/`: every bond the lab's kernel showed, and the seam."""

from __future__ import annotations

from pathlib import Path

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.bond import ArpValidate, BondMode, LacpRate, XmitHashPolicy
from sriovkit.model.bond_status import parse_bond_status
from sriovkit.model.bond_sysfs import parse_bonding_sysfs

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bonding"
CASES = sorted(p.name.removesuffix(".sysfs.txt") for p in FIXTURES.glob("*.sysfs.txt"))


def sysfs_files(case: str) -> dict[str, str]:
    """The bond's bonding/ files of a capture (`grep .` drops the empty ones)."""
    text = (FIXTURES / f"{case}.sysfs.txt").read_text()
    names = []
    in_ls = False
    files: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# ls /sys/class/net/bond0/bonding/"):
            in_ls = True
            continue
        if line.startswith("#"):
            in_ls = False
            continue
        if in_ls:
            names.append(line)
        elif line.startswith("/sys/class/net/bond0/bonding/"):
            key, _, value = line.removeprefix("/sys/class/net/bond0/bonding/").partition(":")
            files[key] = value
    return {n: files.get(n, "") for n in names}


@pytest.mark.parametrize("case", CASES)
def test_every_real_bond_reads_back_typed_and_agrees_with_proc(case: str) -> None:
    mode, options = parse_bonding_sysfs(sysfs_files(case))
    status = parse_bond_status((FIXTURES / f"{case}.proc.txt").read_text(), name="bond0")
    assert mode is status.mode
    assert options.miimon == status.miimon
    assert options.updelay == status.updelay and options.downdelay == status.downdelay
    assert options.arp_ip_target == (status.arp_ip_target if status.arp_interval else ())
    if status.primary is not None:
        assert options.primary == status.primary
    if status.xmit_hash_policy is not None:
        assert options.xmit_hash_policy is status.xmit_hash_policy
    if status.ad is not None:
        assert options.lacp_rate is status.ad.lacp_rate
        assert options.ad_select is status.ad.ad_select


def test_the_arp_case_in_every_detail() -> None:
    mode, options = parse_bonding_sysfs(sysfs_files("active-backup-arp"))
    assert mode is BondMode.ACTIVE_BACKUP
    assert options.arp_interval == 100
    assert options.arp_ip_target == ("192.0.2.1", "192.0.2.2", "198.51.100.7")
    assert options.arp_validate is ArpValidate.ALL
    assert options.arp_missed_max == 3
    assert options.lacp_active is True and options.use_carrier is True
    assert options.num_peer_notif == 1
    assert options.primary is None and options.ns_ip6_target is None


def test_802_3ad_options() -> None:
    mode, options = parse_bonding_sysfs(sysfs_files("802.3ad-fast-l34"))
    assert mode is BondMode.IEEE_802_3AD
    assert options.lacp_rate is LacpRate.FAST
    assert options.xmit_hash_policy is XmitHashPolicy.LAYER3_4


def test_not_a_bond_and_bad_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="has no mode file"):
        parse_bonding_sysfs({"miimon": "100"})
    with pytest.raises(InvalidInput, match="invalid sysfs bonding/miimon: 'x'"):
        parse_bonding_sysfs({"mode": "balance-rr 0", "miimon": "x"})


def test_the_seam_reads_a_bonding_directory(tmp_path: Path) -> None:
    bonding = tmp_path / "sys/class/net/bond0/bonding"
    bonding.mkdir(parents=True)
    for name, value in sysfs_files("active-backup").items():
        (bonding / name).write_text(value + "\n")
    sysfs = Sysfs(tmp_path)
    files = sysfs.bonding("bond0")
    assert files is not None
    assert parse_bonding_sysfs(files)[0] is BondMode.ACTIVE_BACKUP
    assert sysfs.bonding("eth0") is None
    assert sysfs.proc_bonding("bond0") is None
