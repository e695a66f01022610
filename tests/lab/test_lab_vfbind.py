"""Driver binding and MAC pick-up on real igb VFs: vfio-pci and back, igbvf seeing a new MAC."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sriovkit.errors import HostError
from sriovkit.host.netlink import LinkChange
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import VfSettings
from sriovkit.ops.vf import bind_driver, set_num_vfs

pytestmark = pytest.mark.lab

PF = PciAddress.parse("0000:01:00.0")


def _netdev_mac(sysfs: Sysfs, vf: PciAddress) -> str:
    (name,) = sysfs.netdev_map()[vf]
    return sysfs.netdev(name).mac or ""


def test_bind_a_vf_to_vfio_pci_and_back() -> None:
    sysfs = Sysfs(Path("/"))
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    vf = set_num_vfs(sysfs, PF, 1)[0]
    assert vf.driver == "igbvf" and vf.netdevs
    group = sysfs.link_base(vf.address, "iommu_group")
    assert group is not None, "intel-iommu gives each VF its own group"

    assert bind_driver(sysfs, vf.address, "vfio-pci") == "vfio-pci"
    assert sysfs.link_base(vf.address, "driver") == "vfio-pci"
    assert vf.address not in sysfs.netdev_map(), "a vfio-pci VF has no netdev"
    assert Path(f"/dev/vfio/{group}").exists()

    assert bind_driver(sysfs, vf.address, None) == "igbvf"
    assert sysfs.attr(vf.address, "driver_override") == "(null)"
    assert sysfs.netdev_map().get(vf.address), "igbvf registered a netdev again"


def test_vf_netdev_picks_up_a_new_admin_mac_after_rebind() -> None:
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415
    from sriovkit.ops.vfconfig import apply_vf  # noqa: PLC0415

    sysfs = Sysfs(Path("/"))
    vf = set_num_vfs(sysfs, PF, 1)[0]
    (pf_netdev,) = sysfs.netdev_map()[PF]
    mac = "02:5a:00:00:00:01"
    netlink = Pyroute2Netlink()
    try:
        # igb answers its VFs' mailbox (reset, "what is my MAC") from its interrupt handler,
        # which runs only while the PF is up: with the PF down igbvf times out and picks a
        # random MAC.
        netlink.set_link(pf_netdev, LinkChange(up=True))
        apply_vf(netlink, pf_netdev, 0, VfSettings(mac=mac))
        assert netlink.vfs(pf_netdev)[0].mac == mac
    finally:
        netlink.close()
    # igbvf reads the MAC the PF assigned only when it probes (LAB-NOTES): rebind the VF.
    sysfs.write("/sys/bus/pci/drivers/igbvf/unbind", str(vf.address))
    sysfs.write("/sys/bus/pci/drivers_probe", str(vf.address))
    assert _netdev_mac(sysfs, vf.address) == mac


def test_a_refused_bind_leaves_the_vf_on_igbvf() -> None:
    """igb's probe refuses a VF (EINVAL, "should not be a VF"): drivers_probe still succeeds and
    leaves the VF unbound. The failure is reported, and the undo clears the override before it
    re-binds igbvf; the other order fails, since the PCI core then lets only igb bind."""
    sysfs = Sysfs(Path("/"))
    vf = set_num_vfs(sysfs, PF, 1)[0]
    assert sysfs.netdev_map().get(vf.address)
    with pytest.raises(HostError, match=rf"failed to bind {vf.address} to igb"):
        bind_driver(sysfs, vf.address, "igb")
    assert sysfs.link_base(vf.address, "driver") == "igbvf"
    assert sysfs.attr(vf.address, "driver_override") == "(null)"
    assert sysfs.netdev_map().get(vf.address), "igbvf registered a netdev again"
