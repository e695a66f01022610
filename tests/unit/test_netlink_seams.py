"""The netlink seams by concern: the link change, and whose netdevs die with their netns."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sriovkit.host._pyroute2 import Pyroute2Netlink
from sriovkit.host.netlink import Addresses, LinkChange, Links, Netlink, VfAttrs
from sriovkit.model.pci import PciAddress
from sriovkit.ops.cni.vf.device import on_its_way_back
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.sim.netlink import FakeNetlink
from sriovkit.sim.veth_netlink import SplitNetlink


def test_link_change_empty_only_when_nothing_is_set() -> None:
    assert LinkChange().empty
    assert not LinkChange(up=False).empty
    assert not LinkChange(new_name="net1").empty


def test_fake_provides_every_narrow_seam() -> None:
    nl = FakeNetlink()
    for seam in (Links, VfAttrs, Addresses, Netlink):
        assert isinstance(nl, seam)


def test_only_the_veth_mode_seam_has_netdevs_that_die_with_their_netns() -> None:
    fake = FakeNetlink()
    assert fake.netdevs_die_with_netns is False
    assert Pyroute2Netlink.netdevs_die_with_netns is False
    assert SplitNetlink(fake, fake, frozenset()).netdevs_die_with_netns is True


def test_a_stand_in_is_never_on_its_way_back(tmp_path: Path) -> None:
    # A VF bound to its kernel driver with no netdev in the host netns: on a real host it is on
    # its way back from a dying netns; a veth-mode stand-in died with it and never comes back.
    sim = create_host(tmp_path / "host", ["82576"], vfs=1, extras=False)
    sysfs = SimSysfs(tmp_path / "host")
    pci = PciAddress.parse(sim.vfs(sim.pfs[0].address)[0])
    (netdev,) = sysfs.netdev_map()[pci]
    (tmp_path / "host" / "sys" / "class" / "net" / netdev).rename(tmp_path / "aside")
    record: Any = SimpleNamespace(pci=pci)  # only the VF's address is read
    fake = FakeNetlink(tmp_path / "host")
    assert on_its_way_back(sysfs, fake, record) is True
    assert on_its_way_back(sysfs, SplitNetlink(fake, fake, frozenset()), record) is False
