"""Bonds of real igb VFs through sriovkit's ops and pyroute2 seam, on the guest's bonding driver.

Two VFs on different PFs (01:00.0 and 01:00.1) bonded by `ops.bond.create_bond`: every option
read back equal to what was asked and equal to what `ip -d -j link show` reports; failover when
the active port goes down; delete gives the VFs back exactly. The refusal table is shared with
the simulated driver (tests/contract/bond_refusals.py).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.bond_refusals import check_refusal, refusal_params
from sriovkit.errors import HostError
from sriovkit.host.netlink import LinkChange, Netlink
from sriovkit.model.bond import (
    AdSelect,
    BondMode,
    BondOptions,
    BondPort,
    BondSpec,
    FailOverMac,
    LacpRate,
    PortOptions,
    PrimaryReselect,
    XmitHashPolicy,
    option_word,
)
from sriovkit.model.bond_state import BondState, MiiStatus, proc_status
from sriovkit.model.bond_status import parse_bond_status
from sriovkit.model.bond_sysfs import parse_bonding_sysfs
from sriovkit.ops.bond import create_bond, delete_bond, vf_ports

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")
PFS = ("0000:01:00.0", "0000:01:00.1")


def _netdev(dev: Path) -> str:
    return sorted((dev / "net").iterdir())[0].name


@pytest.fixture
def vfs() -> Iterator[tuple[Netlink, str, str]]:
    """(seam, VF netdev on PF0, VF netdev on PF1), PFs up, bonding loaded."""
    if os.geteuid() != 0 or not all((PCI / pf / "sriov_totalvfs").exists() for pf in PFS):
        pytest.skip("needs root and the lab's two igb PFs (run inside the QEMU lab guest)")
    subprocess.run(["modprobe", "bonding"], check=True)
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415

    for pf in PFS:
        (PCI / pf / "sriov_numvfs").write_text("1")
    nl = Pyroute2Netlink()
    was_up = _pfs_up(nl)
    try:
        a, b = (_netdev(PCI / pf / "virtfn0") for pf in PFS)
        yield nl, a, b
    finally:
        for name in nl.bonds():
            nl.delete_link(name)
        _pfs_back(nl, was_up)
        nl.close()


def _pfs_up(nl: Netlink) -> dict[str, bool]:
    """Bring both PFs up (VFs have no link otherwise); their admin states before."""
    was = {}
    for pf in PFS:
        name = _netdev(PCI / pf)
        was[name] = nl.link(name).up
        nl.set_link(name, LinkChange(up=True))
    return was


def _pfs_back(nl: Netlink, was: dict[str, bool]) -> None:
    """The PFs' admin states as they were: later lab tests read the PF's carrier."""
    for name, up in was.items():
        nl.set_link(name, LinkChange(up=up))


def _snapshot(nl: Netlink, *names: str) -> list[tuple[str, str, int, bool, int | None]]:
    return [(i.name, i.mac, i.mtu, i.up, i.master) for i in map(nl.link, names)]


_IP_NAMES = {"peer_notif_delay": "peer_notify_delay", "lacp_rate": "ad_lacp_rate",
             "lacp_active": "ad_lacp_active"}  # fmt: skip


def _ip_view(value: object, option: str) -> object:
    """How iproute2's JSON writes one option value."""
    if option == "lacp_active":
        return "on" if value else "off"
    if option == "arp_validate" and option_word(value) == "none":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, tuple):
        return list(value)
    word = option_word(value)
    return int(word) if word.isdigit() and not isinstance(value, str) else word


def _assert_same_as_ip(state: BondState, asked: BondOptions) -> None:
    out = subprocess.run(["ip", "-d", "-j", "link", "show", state.name], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    data: dict[str, Any] = json.loads(out)[0]["linkinfo"]["info_data"]
    assert data["mode"] == state.mode.label
    for option, value in asked.given():
        if option == "coupled_control":
            continue  # not printed by this iproute2
        key = _IP_NAMES.get(option, option)
        assert data.get(key) == _ip_view(getattr(state.options, option), option), option
        assert getattr(state.options, option) == value, option
    if state.ad_info is not None:
        ad = data["ad_info"]
        assert (ad["aggregator"], ad["num_ports"], ad["actor_key"], ad["partner_key"],
                ad["partner_mac"]) == (state.ad_info.aggregator, state.ad_info.num_ports,
                                       state.ad_info.actor_key, state.ad_info.partner_key,
                                       state.ad_info.partner_mac)  # fmt: skip


def _wait(nl: Netlink, name: str, ok: Any, timeout: float = 10.0) -> BondState:
    deadline = time.monotonic() + timeout
    while True:
        state = nl.bond(name)
        if ok(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def _assert_proc_agrees(state: BondState, text: str) -> None:
    """The kernel's /proc text equals what `proc_status` derives from the netlink read-back
    (the simulated driver prints its text that way), apart from what netlink does not carry:
    port speed and duplex."""
    real = parse_bond_status(text, name=state.name)
    real = dataclasses.replace(
        real, slaves=tuple(dataclasses.replace(s, speed=None, duplex=None) for s in real.slaves)
    )
    assert proc_status(state, real.driver_version or "") == real


def _assert_sysfs_agrees(state: BondState) -> None:
    """Every option sysfs `bonding/` shows equals the netlink read-back's."""
    files = _sysfs().bonding(state.name)
    assert files is not None
    mode, options = parse_bonding_sysfs(files)
    assert mode is state.mode
    for name, value in options.given():
        assert getattr(state.options, name) == value, name


def test_active_backup_of_two_vfs(vfs: tuple[Netlink, str, str]) -> None:
    nl, a, b = vfs
    before = _snapshot(nl, a, b)
    asked = BondOptions(
        miimon=100, updelay=200, downdelay=100, peer_notif_delay=200, primary=a,
        primary_reselect=PrimaryReselect.FAILURE, num_peer_notif=2, resend_igmp=3,
        all_slaves_active=False, use_carrier=True,
    )  # fmt: skip
    spec = BondSpec("bond0", BondMode.ACTIVE_BACKUP, asked,
                    (BondPort(a, PortOptions(queue_id=1)), BondPort(b)))  # fmt: skip
    result = create_bond(nl, spec, mtu=1500)
    assert isinstance(result, tuple)
    state, plan = result
    _assert_same_as_ip(state, asked)
    assert state.port_names == (a, b)
    port_a = state.port(a)
    assert port_a is not None and port_a.queue_id == 1
    assert set(vf_ports(_sysfs(), state)) == {a, b}

    state = _wait(nl, "bond0", lambda s: s.active_port == a)
    assert state.active_port == a  # the primary
    subprocess.run(["ip", "link", "set", a, "down"], check=True)
    state = _wait(nl, "bond0", lambda s: s.active_port == b)
    assert state.active_port == b
    down = state.port(a)
    assert down is not None and down.mii_status is not MiiStatus.UP
    text = Path("/proc/net/bonding/bond0").read_text()
    assert f"Currently Active Slave: {b}" in text
    _assert_proc_agrees(nl.bond("bond0"), text)
    _assert_sysfs_agrees(nl.bond("bond0"))

    delete_bond(nl, "bond0", plan.originals)
    assert _snapshot(nl, a, b) == before
    assert "bond0" not in nl.bonds()


def test_802_3ad_of_two_vfs(vfs: tuple[Netlink, str, str]) -> None:
    nl, a, b = vfs
    before = _snapshot(nl, a, b)
    asked = BondOptions(
        miimon=100, lacp_rate=LacpRate.FAST, lacp_active=True, ad_select=AdSelect.BANDWIDTH,
        xmit_hash_policy=XmitHashPolicy.LAYER3_4, ad_actor_sys_prio=100, ad_user_port_key=5,
        ad_actor_system="02:00:00:00:00:42", min_links=1, coupled_control=True,
    )  # fmt: skip
    spec = BondSpec("bond1", BondMode.IEEE_802_3AD, asked, (BondPort(a), BondPort(b)))
    result = create_bond(nl, spec)
    assert isinstance(result, tuple)
    state, plan = result
    # The actor key is user key << 6 (320) until the port's speed and duplex are known, then
    # gains them (329 at 1000 Mb/s full duplex): wait for that before comparing with ip.
    state = _wait(nl, "bond1", lambda s: s.ad_info is not None and s.ad_info.actor_key & 1 == 1)
    _assert_same_as_ip(state, asked)
    assert state.ad_info is not None and state.ad_info.partner_mac == "00:00:00:00:00:00"
    assert all(p.ad_aggregator_id is not None for p in state.ports)
    assert "802.3ad info" in Path("/proc/net/bonding/bond1").read_text()
    _assert_sysfs_agrees(nl.bond("bond1"))
    delete_bond(nl, "bond1", plan.originals)
    assert _snapshot(nl, a, b) == before


def test_second_port_refusing_rolls_back(vfs: tuple[Netlink, str, str]) -> None:
    nl, a, b = vfs
    before = _snapshot(nl, a, b)

    class Refusing(type(nl)):  # type: ignore[misc]
        def enslave(self, port: str, bond: str, options: PortOptions | None = None) -> None:
            if port == b:
                raise HostError(f"failed to enslave {port}: injected", errno.EINVAL)
            super().enslave(port, bond, options)

    seam = Refusing()
    try:
        spec = BondSpec("bond2", BondMode.ACTIVE_BACKUP, BondOptions(miimon=100),
                        (BondPort(a), BondPort(b)))  # fmt: skip
        with pytest.raises(HostError, match="injected"):
            create_bond(seam, spec, mtu=1400)
    finally:
        seam.close()
    assert _snapshot(nl, a, b) == before
    assert "bond2" not in nl.bonds()


def test_kernel_facts_of_ports(vfs: tuple[Netlink, str, str]) -> None:
    nl, a, b = vfs
    nl.set_link(a, LinkChange(mtu=1400, up=False))
    nl.create_bond("bp", BondMode.ACTIVE_BACKUP, BondOptions(miimon=100))
    nl.enslave(a, "bp")
    port = nl.link(a)
    assert port.up and port.mtu == 1500  # up, the bond's MTU
    with pytest.raises(HostError) as err:
        nl.set_port(b, PortOptions(queue_id=1))  # not a port
    assert err.value.errno == errno.EOPNOTSUPP
    with pytest.raises(HostError) as err:
        nl.enslave("bp", "bp")
    assert err.value.errno == errno.EPERM
    with pytest.raises(HostError) as err:
        nl.set_bond("bp", BondOptions(), mode=BondMode.IEEE_802_3AD)
    assert err.value.errno == errno.ENOTEMPTY
    nl.release(a)
    port = nl.link(a)
    assert (port.up, port.mtu, port.master) == (False, 1400, None)  # released: down, MTU back


@pytest.mark.parametrize(("mode", "options", "code"), refusal_params())
def test_kernel_refusals(
    vfs: tuple[Netlink, str, str], mode: BondMode, options: BondOptions, code: int
) -> None:
    nl, a, _ = vfs
    check_refusal(nl, a, mode, options, code)


def _sysfs() -> Any:
    from sriovkit.host.sysfs import SysfsReader  # noqa: PLC0415

    return SysfsReader(Path("/"))


def test_traffic_flows_through_the_bond_before_and_after_failover() -> None:
    """A bond of a VF on each PF talks to a peer VF in a netns; the active port goes down,
    the other takes over, and the peer is still reachable (the PFs are cabled through a hub)."""
    if os.geteuid() != 0 or not all((PCI / pf / "sriov_totalvfs").exists() for pf in PFS):
        pytest.skip("needs root and the lab's two igb PFs (run inside the QEMU lab guest)")
    subprocess.run(["modprobe", "bonding"], check=True)
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415

    (PCI / PFS[0] / "sriov_numvfs").write_text("2")
    (PCI / PFS[1] / "sriov_numvfs").write_text("1")
    nl = Pyroute2Netlink()
    ns = "sk-bond-peer"
    was_up = _pfs_up(nl)
    try:
        a = _netdev(PCI / PFS[0] / "virtfn0")
        b = _netdev(PCI / PFS[1] / "virtfn0")
        peer = _netdev(PCI / PFS[0] / "virtfn1")
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "link", "set", peer, "netns", ns], check=True)
        for cmd in (["addr", "add", "10.77.0.2/24", "dev", peer], ["link", "set", peer, "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        # fail_over_mac active: each VF keeps its own MAC and the bond takes the active one's.
        # With the default (none) both ports carry one MAC, and the peer's replies to it are
        # switched inside PF0 to its local VF a, the backup port, which drops them.
        options = BondOptions(miimon=100, primary=b, fail_over_mac=FailOverMac.ACTIVE)
        spec = BondSpec("bond2", BondMode.ACTIVE_BACKUP, options, (BondPort(a), BondPort(b)))
        result = create_bond(nl, spec)
        assert isinstance(result, tuple)
        subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", "bond2"], check=True)
        state = _wait(nl, "bond2", lambda s: s.active_port == b and s.carrier)
        assert state.active_port == b  # PF1's VF: the frames cross the hub to PF0's VF

        def ping() -> subprocess.CompletedProcess[str]:
            return subprocess.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"],
                                  capture_output=True, text=True, check=False)  # fmt: skip

        before = ping()
        assert before.returncode == 0, before.stdout + before.stderr
        subprocess.run(["ip", "link", "set", b, "down"], check=True)
        state = _wait(nl, "bond2", lambda s: s.active_port == a)
        assert state.active_port == a
        after = ping()
        assert after.returncode == 0, after.stdout + after.stderr
        delete_bond(nl, "bond2", result[1].originals)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        for name in nl.bonds():
            nl.delete_link(name)
        _pfs_back(nl, was_up)
        nl.close()
