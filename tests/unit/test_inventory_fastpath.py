"""The inventory's VF fast path (host/pciwalk.py) against the full per-function read.

Every VF after the first of its PF is built from that first VF's ids plus its own driver and
IOMMU group; these tests hold it to what `Sysfs.device` reads from each VF's own files, on
every profile and on the trees where the shortcut must step aside.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import pytest

from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.device import PciDevice
from sriovkit.model.pci import PciAddress
from sriovkit.ops import vf as vf_ops
from sriovkit.ops.discover import collect, inventory_json
from sriovkit.sim import create_host, profile_names
from sriovkit.sim.kernel import SimSysfs


class CountingSysfs(Sysfs):
    """Counts full per-function reads, to show the fast path really ran."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.full_reads: list[PciAddress] = []

    def device(
        self,
        addr: PciAddress,
        *,
        netdevs: tuple[str, ...] | None = None,
        vf_of: tuple[PciDevice, int] | None = None,
    ) -> PciDevice:
        self.full_reads.append(addr)
        return super().device(addr, netdevs=netdevs, vf_of=vf_of)


class FullReadSysfs(Sysfs):
    """Every function through `device()` alone: physfn, virtfn links and uevent of each."""

    def devices(self, only: Collection[PciAddress] | None = None) -> list[PciDevice]:
        devs = [self.device(a) for a in self.pci_addresses()]
        if only is None:
            return devs
        return [d for d in devs if d.address in only or d.physfn in only]


def _assert_same_as_full_read(root: Path) -> list[PciDevice]:
    sysfs = Sysfs(root)
    fast = sysfs.devices()
    assert fast == FullReadSysfs(root).devices()
    # and the document users see is the same too
    assert inventory_json(collect(sysfs, PciIds())) == inventory_json(
        collect(FullReadSysfs(root), PciIds())
    )
    return fast


def _vfs_of(devs: list[PciDevice], pf: PciAddress) -> list[PciDevice]:
    return sorted((d for d in devs if d.physfn == pf), key=lambda d: d.vf_index or 0)


@pytest.fixture(scope="module")
def every_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fastpath")
    create_host(root, profile_names(), vfs=8)
    return root


def test_fast_path_equals_full_read_on_every_profile(every_profile: Path) -> None:
    devs = _assert_same_as_full_read(every_profile)
    counting = CountingSysfs(every_profile)
    assert counting.devices() == devs
    pfs = [d for d in devs if d.sriov is not None and d.sriov.num_vfs]
    vfs = [d for d in devs if d.is_vf]
    assert len(vfs) > 2 * len(pfs), "every PF has VFs beyond its first"
    # one full read per non-VF function and per PF's first VF; the other VFs take the fast path
    assert len(counting.full_reads) == len(devs) - len(vfs) + len(pfs)
    for pf in pfs:
        assert _vfs_of(devs, pf.address)[0].address in counting.full_reads


def test_one_family_is_what_the_whole_walk_says_of_it(every_profile: Path) -> None:
    # The device plugin re-reads one PF's family after a change on it: the same records as
    # the whole walk, and only that PF's (and a standalone function alone).
    devs = Sysfs(every_profile).devices()
    pf = next(d for d in devs if d.sriov is not None and d.sriov.num_vfs)
    alone = next(d for d in devs if d.sriov is None and not d.is_vf)
    family = [d for d in devs if d.address == pf.address or d.physfn == pf.address]
    assert Sysfs(every_profile).devices({pf.address}) == family
    assert Sysfs(every_profile).devices({alone.address, pf.address}) == sorted(
        [*family, alone], key=lambda d: d.address
    )
    assert FullReadSysfs(every_profile).devices({pf.address}) == family
    vf = family[-1].address
    assert Sysfs(every_profile).devices({vf}) == [family[-1]]  # a VF alone, read in full


def test_sim_writes_vf_uevents_as_the_kernel_does(every_profile: Path) -> None:
    """All VFs of a PF share PCI_ID, PCI_SUBSYS_ID, PCI_CLASS and MODALIAS (Linux >= 4.17
    reads them once from VF 0); only DRIVER and PCI_SLOT_NAME are the VF's own."""
    sysfs = Sysfs(every_profile)
    shared = ("PCI_ID", "PCI_SUBSYS_ID", "PCI_CLASS", "MODALIAS")
    for pf in sysfs.pci_addresses():
        vfs = sysfs.virtfns(pf)
        if not vfs:
            continue
        events = []
        for vf in vfs.values():
            text = sysfs.attr(vf, "uevent") or ""
            ev = dict(line.split("=", 1) for line in text.splitlines())
            assert ev["PCI_SLOT_NAME"] == str(vf)
            assert ev.get("DRIVER") == sysfs.link_base(vf, "driver")
            events.append(tuple(ev[k] for k in shared))
        assert len(set(events)) == 1, pf


@pytest.fixture
def x710(tmp_path: Path) -> tuple[Path, PciAddress, list[PciAddress]]:
    h = create_host(tmp_path, ["x710"], vfs=6, extras=False)
    pf = h.pfs[0].address
    return tmp_path, PciAddress.parse(pf), [PciAddress.parse(v) for v in h.vfs(pf)]


@pytest.mark.parametrize("index", [0, 3])
def test_vf_bound_to_vfio_pci_is_reported_with_its_own_driver(
    x710: tuple[Path, PciAddress, list[PciAddress]], index: int
) -> None:
    root, pf, vfs = x710
    sim = SimSysfs(root)
    sim.load_module("vfio-pci")
    assert vf_ops.bind_driver(sim, vfs[index], "vfio-pci") == "vfio-pci"
    devs = _assert_same_as_full_read(root)
    drivers = [d.driver for d in _vfs_of(devs, pf)]
    assert drivers == ["vfio-pci" if i == index else "iavf" for i in range(len(vfs))]
    by_addr = {d.address: d for d in devs}
    assert by_addr[vfs[index]].netdevs == ()
    assert by_addr[vfs[index]].iommu_group is not None


def test_unbound_vf_has_no_driver_but_keeps_its_group(
    x710: tuple[Path, PciAddress, list[PciAddress]],
) -> None:
    root, pf, vfs = x710
    vf_ops.unbind_driver(SimSysfs(root), vfs[2])
    devs = _assert_same_as_full_read(root)
    vf2 = _vfs_of(devs, pf)[2]
    assert vf2.driver is None and vf2.iommu_group is not None


def test_host_without_iommu(x710: tuple[Path, PciAddress, list[PciAddress]]) -> None:
    root, pf, vfs = x710
    vf_ops.unbind_driver(SimSysfs(root), vfs[4])
    sysfs = Sysfs(root)
    for vf in vfs:
        os.unlink(sysfs.path(f"/sys/bus/pci/devices/{vf}/iommu_group"))
    devs = _assert_same_as_full_read(root)
    assert [d.driver for d in _vfs_of(devs, pf)] == ["iavf"] * 4 + [None, "iavf"]
    assert all(d.iommu_group is None for d in _vfs_of(devs, pf))


def test_odd_iommu_group_link_falls_back_to_the_full_read(
    x710: tuple[Path, PciAddress, list[PciAddress]],
) -> None:
    root, pf, vfs = x710
    sysfs = Sysfs(root)
    link = sysfs.path(f"/sys/bus/pci/devices/{vfs[1]}/iommu_group")
    link.unlink()
    link.write_text("not a link\n")  # readlink: EINVAL
    link = sysfs.path(f"/sys/bus/pci/devices/{vfs[2]}/iommu_group")
    link.unlink()
    link.symlink_to("../../../../kernel/iommu_groups/abc")  # not a number
    counting = CountingSysfs(root)
    devs = counting.devices()
    assert devs == _assert_same_as_full_read(root)
    assert vfs[1] in counting.full_reads  # could not be told from the link: read in full
    assert [d.iommu_group is None for d in _vfs_of(devs, pf)][1:3] == [True, True]


def _move_function(root: Path, addr: PciAddress, new_parent: Path) -> None:
    """Move a function's directory under another parent and re-point every link into, out of
    and inside it (a layout the kernel never makes: VFs sit beside their PF)."""
    old = os.path.realpath(root / "sys/bus/pci/devices" / str(addr))
    new = str(root / new_parent / str(addr))

    def moved(path: str) -> str:
        return new + path[len(old) :] if path == old or path.startswith(old + "/") else path

    links = []
    for dirpath, dirnames, filenames in os.walk(root / "sys"):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                links.append((path, os.path.normpath(os.path.join(dirpath, os.readlink(path)))))
    os.makedirs(os.path.dirname(new), exist_ok=True)
    os.rename(old, new)
    for old_path, target in links:
        path = moved(old_path)
        os.unlink(path)
        os.symlink(os.path.relpath(moved(target), os.path.dirname(path)), path)


def test_vf_not_beside_its_pf_is_read_in_full(
    x710: tuple[Path, PciAddress, list[PciAddress]],
) -> None:
    root, pf, vfs = x710
    pf_dir = Path(os.path.realpath(root / "sys/bus/pci/devices" / str(pf)))
    _move_function(root, vfs[3], pf_dir.parent.parent.relative_to(root) / "elsewhere")
    counting = CountingSysfs(root)
    devs = counting.devices()
    assert devs == _assert_same_as_full_read(root)
    assert vfs[3] in counting.full_reads
    vf3 = _vfs_of(devs, pf)[3]
    assert vf3.driver == "iavf" and vf3.iommu_group is not None and vf3.netdevs


def test_odd_driver_link_falls_back_to_uevent(
    x710: tuple[Path, PciAddress, list[PciAddress]],
) -> None:
    root, pf, vfs = x710
    sim = SimSysfs(root)
    sim.load_module("vfio-pci")
    vf_ops.bind_driver(sim, vfs[0], "vfio-pci")  # siblings are then not bound to VF 0's driver
    link = sim.path(f"/sys/bus/pci/devices/{vfs[1]}/driver")
    link.unlink()
    link.write_text("not a link\n")  # readlink: EINVAL; uevent still says DRIVER=iavf
    counting = CountingSysfs(root)
    devs = counting.devices()
    assert devs == _assert_same_as_full_read(root)
    assert vfs[1] in counting.full_reads
    assert [d.driver for d in _vfs_of(devs, pf)][:3] == ["vfio-pci", "iavf", "iavf"]
