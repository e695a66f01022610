"""ops.attach on a plain simulated host: the kernel-emulating sysfs tree and the stateful fake
netlink (fake namespaces are plain names, so `netns_alive` is a file-existence seam here)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import Busy, HostError, InvalidInput, NotFound, PluginNotAvailable
from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import LinkChange
from sriovkit.host.state import StateStore
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.cni import CniEnv, parse_netconf
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import VfSettings
from sriovkit.ops import vf as vf_ops
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.ops.cni.vf.device import resolve_vf
from sriovkit.ops.vfconfig import apply_vf, read_vf
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.sim.netlink import FakeNetlink


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        sim = create_host(root / "host", ["82576"], vfs=2, extras=False)
        self.sysfs = SimSysfs(root / "host")
        self.netlink = FakeNetlink(root / "host")
        self.pf = sim.pfs[0]
        self.vf = PciAddress.parse(sim.vfs(self.pf.address)[0])
        self.store = StateStore(root / "state")
        self.ctx = AttachContext(
            sysfs=self.sysfs,
            netlink=self.netlink,
            ipam=Ipam([root / "no-plugins"]),
            store=self.store,
            lock_timeout=1.0,
            netns_alive=lambda p: p.exists(),
            announce=False,
            return_timeout=0.0,
        )

    def pod(self, name: str) -> Path:
        path = self.root / "netns" / name
        path.parent.mkdir(exist_ok=True)
        path.touch()
        return path

    def env(self, command: str, container: str, netns: Path | None, ifname: str = "net1") -> CniEnv:
        raw = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(self.root / "no-plugins"),
        }
        if netns is not None:
            raw["CNI_NETNS"] = str(netns)
        return CniEnv.from_env(raw)

    def conf(self, env: CniEnv, **extra: Any) -> tuple[Any, dict[str, Any]]:
        raw = {"cniVersion": "1.1.0", "name": "net-a", "type": "sriov", "deviceID": str(self.vf)}
        raw.update(extra)
        return parse_netconf(json.dumps(raw).encode(), env), raw


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_resolve_vf_names_pf_index_and_netdev(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert str(target.pf_pci) == host.pf.address
    assert target.pf == host.pf.netdev
    assert target.index == 0
    assert target.netdev is not None and not target.dpdk
    assert target.driver == "igbvf"


def test_resolve_refuses_a_pf_and_a_missing_device(host: Host) -> None:
    with pytest.raises(InvalidInput, match="is not an SR-IOV VF"):
        resolve_vf(host.sysfs, PciAddress.parse(host.pf.address))
    # issue 10: a device the host does not have is a configuration error (CNI code 7)
    with pytest.raises(InvalidInput, match=r"deviceID: 0000:77:00\.0: no such PCI device") as e:
        resolve_vf(host.sysfs, PciAddress.parse("0000:77:00.0"))
    assert e.value.cni_code == 7


def test_add_del_on_the_fake_restores_everything(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    before_link = host.netlink.link(target.netdev)
    before_vf = read_vf(host.netlink, target.pf, 0)
    pod = host.pod("p1")
    env = host.env("ADD", "c1", pod)
    conf, raw = host.conf(env, vlan=100, vlanQoS=2, mac="02:00:00:aa:00:01", mtu=1400)
    result = attach.add(host.ctx, env, conf, raw)
    iface = result.interfaces[0]
    assert (iface.name, iface.mac, iface.mtu, iface.sandbox) == (
        "net1",
        "02:00:00:aa:00:01",
        1400,
        str(pod),
    )
    assert iface.pci_id == str(host.vf)
    inside = host.netlink.in_netns(pod).link("net1")
    assert (inside.mac, inside.mtu, inside.up) == ("02:00:00:aa:00:01", 1400, True)
    with pytest.raises(NotFound):
        host.netlink.link(target.netdev)
    vf0 = read_vf(host.netlink, target.pf, 0)
    assert (vf0.vlan, vf0.qos, vf0.mac) == (100, 2, "02:00:00:aa:00:01")
    attach.check(host.ctx, host.env("CHECK", "c1", pod), conf, raw)

    attach.delete(host.ctx, host.env("DEL", "c1", pod), conf, raw)
    back = host.netlink.link(target.netdev)
    assert (back.name, back.mac, back.mtu) == (before_link.name, before_link.mac, before_link.mtu)
    assert read_vf(host.netlink, target.pf, 0) == before_vf
    assert host.store.attachment_keys() == []
    assert list(host.store.allocations()) == []
    attach.delete(host.ctx, host.env("DEL", "c1", pod), conf, raw)  # idempotent


def test_add_without_pf_side_settings_reads_and_restores_no_pf_side(host: Host) -> None:
    """ADD that sets no PF-side attribute records none (`pf_side` False) and DEL puts none back:
    a PF-side change made by the host's admin meanwhile stays; with a setting, ADD captures the
    PF side and DEL restores it."""
    target = resolve_vf(host.sysfs, host.vf)
    pod = host.pod("p1")
    env = host.env("ADD", "c1", pod)
    conf, raw = host.conf(env)
    attach.add(host.ctx, env, conf, raw)
    record = host.store.read_attachment(AttachmentKey("c1", "net1"))
    assert record is not None and record.original.pf_side is False
    assert record.original.vf_settings().empty
    apply_vf(host.netlink, target.pf, 0, VfSettings(vlan=42))  # the admin, from the host
    attach.delete(host.ctx, host.env("DEL", "c1", pod), conf, raw)
    assert read_vf(host.netlink, target.pf, 0).vlan == 42
    assert host.netlink.link(target.netdev or "").name == target.netdev

    env = host.env("ADD", "c2", pod)
    conf, raw = host.conf(env, vlan=7)
    attach.add(host.ctx, env, conf, raw)
    record = host.store.read_attachment(AttachmentKey("c2", "net1"))
    assert record is not None and record.original.pf_side and record.original.vlan == 42
    attach.delete(host.ctx, host.env("DEL", "c2", pod), conf, raw)
    assert read_vf(host.netlink, target.pf, 0).vlan == 42


def test_busy_vf_is_refused_with_code_11(host: Host) -> None:
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env)
    attach.add(host.ctx, env, conf, raw)
    other = host.env("ADD", "c2", host.pod("p2"))
    conf2, raw2 = host.conf(other, vlan=5)
    with pytest.raises(Busy, match="already attached to container c1") as err:
        attach.add(host.ctx, other, conf2, raw2)
    assert err.value.cni_code == 11
    assert read_vf(host.netlink, host.pf.netdev or "", 0).vlan == 0
    assert [r.container_id for r in host.store.attachments()] == ["c1"]


def test_stale_allocation_of_a_gone_pod_is_reclaimed(host: Host) -> None:
    pod1 = host.pod("p1")
    env = host.env("ADD", "c1", pod1)
    conf, raw = host.conf(env, vlan=7)
    attach.add(host.ctx, env, conf, raw)
    # The pod's netns is deleted and nobody ran DEL: the kernel returns a real VF to the host
    # netns under the pod's name (the fake does not emulate netns deletion, so do its part).
    host.netlink.in_netns(pod1).move_link("net1", Path("/proc/self/ns/net"), LinkChange())
    pod1.unlink()
    env2 = host.env("ADD", "c2", host.pod("p2"))
    conf2, raw2 = host.conf(env2)
    attach.add(host.ctx, env2, conf2, raw2)
    assert [r.container_id for r in host.store.attachments()] == ["c2"]
    assert read_vf(host.netlink, host.pf.netdev or "", 0).vlan == 0  # c1's VLAN was undone


def test_same_container_re_add_returns_the_recorded_result(host: Host) -> None:
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env)
    first = attach.add(host.ctx, env, conf, raw)
    assert attach.add(host.ctx, env, conf, raw) == first


def test_refused_attribute_leaves_nothing(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env, vlan=9, link_state="enable")
    with pytest.raises(HostError) as err:
        attach.add(host.ctx, env, conf, raw)
    assert err.value.errno == errno.EOPNOTSUPP
    assert "link-state" in str(err.value) and target.pf in str(err.value)
    assert host.netlink.link(target.netdev).name == target.netdev
    assert read_vf(host.netlink, target.pf, 0).vlan == 0
    assert host.store.attachment_keys() == []
    assert list(host.store.allocations()) == []


def test_missing_ipam_plugin_rolls_back(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env, mtu=1300, ipam={"type": "host-local"})
    with pytest.raises(NotFound, match="host-local"):
        attach.add(host.ctx, env, conf, raw)
    assert host.netlink.link(target.netdev).mtu == 1500
    assert host.store.attachment_keys() == []


def test_dpdk_mode_applies_pf_side_only(host: Host) -> None:
    host.sysfs.load_module("vfio-pci")
    vf_ops.bind_driver(host.sysfs, host.vf, "vfio-pci")
    target = resolve_vf(host.sysfs, host.vf)
    assert target.dpdk and target.netdev is None
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env, vlan=33)
    result = attach.add(host.ctx, env, conf, raw)
    assert result.interfaces[0].pci_id == str(host.vf)
    assert read_vf(host.netlink, target.pf, 0).vlan == 33
    attach.delete(host.ctx, host.env("DEL", "c1", host.pod("p1")), conf, raw)
    assert read_vf(host.netlink, target.pf, 0).vlan == 0
    assert host.store.attachment_keys() == []


def test_gc_releases_only_leaked_attachments_of_its_network(host: Host) -> None:
    sim_vf1 = PciAddress.parse(str(host.sysfs.virtfns(PciAddress.parse(host.pf.address))[1]))
    env1 = host.env("ADD", "c1", host.pod("p1"))
    conf1, raw1 = host.conf(env1)
    attach.add(host.ctx, env1, conf1, raw1)
    env2 = host.env("ADD", "c2", host.pod("p2"))
    conf2, raw2 = host.conf(env2, deviceID=str(sim_vf1))
    attach.add(host.ctx, env2, conf2, raw2)
    gc_env = CniEnv.from_env({"CNI_COMMAND": "GC", "CNI_PATH": "/x"})
    gc_conf, gc_raw = host.conf(
        gc_env, **{"cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "net1"}]}
    )
    attach.gc(host.ctx, gc_conf, gc_raw)
    assert host.store.attachment_keys() == [AttachmentKey("c2", "net1")]
    assert [a.container_id for a in host.store.allocations()] == ["c2"]


def test_a_corrupt_record_is_reported_but_does_not_stop_gc(host: Host) -> None:
    env1 = host.env("ADD", "c1", host.pod("p1"))
    conf1, raw1 = host.conf(env1)
    attach.add(host.ctx, env1, conf1, raw1)
    corrupt = host.store.dir / "attachments" / "c9@net1.json"
    corrupt.write_text("{not json")
    gc_env = CniEnv.from_env({"CNI_COMMAND": "GC", "CNI_PATH": "/x"})
    gc_conf, gc_raw = host.conf(gc_env, **{"cni.dev/valid-attachments": []})
    with pytest.raises(HostError, match="c9"):
        attach.gc(host.ctx, gc_conf, gc_raw)
    assert AttachmentKey("c1", "net1") not in host.store.attachment_keys(), "c1 still released"
    assert list(host.store.allocations()) == []


def test_status_fails_with_code_50_on_an_unusable_state_dir(host: Host, tmp_path: Path) -> None:
    attach.status(host.ctx)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = AttachContext(
        sysfs=host.sysfs,
        netlink=host.netlink,
        ipam=host.ctx.ipam,
        store=StateStore(blocker / "state"),
    )
    with pytest.raises(PluginNotAvailable) as err:
        attach.status(bad)
    assert err.value.cni_code == 50


def test_add_needs_a_device_and_a_netns(host: Host) -> None:
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env, deviceID="0000:77:00.0")
    with pytest.raises(InvalidInput, match=r"deviceID: 0000:77:00\.0: no such PCI device"):
        attach.add(host.ctx, env, conf, raw)
    assert host.store.attachment_keys() == []


# --- reviewed defects ----------------------------------------------------------------------


class FailingIpam(Ipam):
    """An IPAM plugin that is found but whose ADD and DEL both fail."""

    def find(self, kind: str) -> Path:
        return Path("/usr/lib/cni") / kind

    def add(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        raise HostError("IPAM plugin host-local failed: range exhausted")

    def delete(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        raise HostError("IPAM plugin host-local failed: store locked")


def test_failed_ipam_release_on_rollback_does_not_keep_the_vf(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    ctx = dataclasses.replace(host.ctx, ipam=FailingIpam([]))
    env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(env, vlan=12, mtu=1300, ipam={"type": "host-local"})
    with pytest.raises(HostError) as err:
        attach.add(ctx, env, conf, raw)
    msg = str(err.value)
    assert "range exhausted" in msg and "store locked" in msg
    assert "was given back" in msg and "keeps its record" not in msg
    assert host.netlink.link(target.netdev).mtu == 1500
    assert read_vf(host.netlink, target.pf, 0).vlan == 0
    assert host.store.attachment_keys() == []
    assert list(host.store.allocations()) == []


def _vf_netdev_entry(host: Host) -> Path:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    return host.root / "host" / "sys" / "class" / "net" / target.netdev


def test_del_of_a_vf_not_yet_back_from_a_deleted_netns_is_busy(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    before = host.netlink.link(target.netdev)
    pod = host.pod("p1")
    env = host.env("ADD", "c1", pod)
    conf, raw = host.conf(env, vlan=21, mtu=1400)
    attach.add(host.ctx, env, conf, raw)
    # The pod netns is deleted; the kernel's asynchronous cleanup has not returned the netdev
    # yet: the VF is bound to igbvf but the host netns has no netdev for it.
    pod.unlink()
    entry = _vf_netdev_entry(host)
    aside = host.root / "netdev-aside"
    entry.rename(aside)
    with pytest.raises(Busy, match="has not come back from the deleted netns") as err:
        attach.delete(host.ctx, host.env("DEL", "c1", pod), conf, raw)
    assert err.value.cni_code == 11 and str(host.vf) in str(err.value)
    assert host.store.attachment_keys() == [AttachmentKey("c1", "net1")]
    assert [a.container_id for a in host.store.allocations()] == ["c1"]
    # The netdev comes back as the kernel returns it: under the pod's name, with its MTU.
    aside.rename(entry)
    host.netlink.set_link(target.netdev, LinkChange(new_name="net1", mtu=1400))
    attach.delete(host.ctx, host.env("DEL", "c1", pod), conf, raw)
    back = host.netlink.link(target.netdev)
    assert (back.name, back.mac, back.mtu) == (before.name, before.mac, before.mtu)
    assert read_vf(host.netlink, target.pf, 0).vlan == 0
    assert host.store.attachment_keys() == []
    assert list(host.store.allocations()) == []


def test_gc_does_not_drop_an_allocation_handed_out_while_it_waited(host: Host) -> None:
    host.sysfs.load_module("vfio-pci")
    vf_ops.bind_driver(host.sysfs, host.vf, "vfio-pci")  # DPDK VF: allocations only
    store = host.store
    pod1, pod2, pod3 = host.pod("p1"), host.pod("p2"), host.pod("p3")
    e1 = host.env("ADD", "k1", pod1)
    c1, r1 = host.conf(e1, vlan=10)
    attach.add(host.ctx, e1, c1, r1)
    real_lock = store.lock_vf
    raced: list[str] = []

    @contextlib.contextmanager
    def lock_vf(pci: object, timeout: float | None = None) -> Iterator[None]:
        # GC listed k1's allocation and waits for the lock; meanwhile DEL k1 and ADD k2 run.
        if not raced:
            raced.append("k2")
            attach.delete(host.ctx, host.env("DEL", "k1", pod1), c1, r1)
            e2 = host.env("ADD", "k2", pod2)
            c2, r2 = host.conf(e2, vlan=20)
            attach.add(host.ctx, e2, c2, r2)
        with real_lock(pci, timeout):  # type: ignore[arg-type]
            yield

    gc_env = CniEnv.from_env({"CNI_COMMAND": "GC", "CNI_PATH": "/x"})
    gc_conf, gc_raw = host.conf(
        gc_env, **{"cni.dev/valid-attachments": [{"containerID": "k2", "ifname": "net1"}]}
    )
    original_attachments = store.attachments
    store.attachments = lambda: iter(())  # type: ignore[method-assign]  # listed before k2
    store.lock_vf = lock_vf  # type: ignore[method-assign]
    try:
        attach.gc(host.ctx, gc_conf, gc_raw)
    finally:
        store.attachments = original_attachments  # type: ignore[method-assign]
        store.lock_vf = real_lock  # type: ignore[method-assign]
    assert raced == ["k2"]
    alloc = store.read_allocation(host.vf)
    assert alloc is not None and alloc.container_id == "k2"
    e3 = host.env("ADD", "k3", pod3)
    c3, r3 = host.conf(e3, vlan=30)
    with pytest.raises(Busy, match="container k2"):
        attach.add(host.ctx, e3, c3, r3)
    assert read_vf(host.netlink, host.pf.netdev or "", 0).vlan == 20


class PodUnreachableOnce(FakeNetlink):
    """The move succeeds, then entering the pod netns fails once."""

    failed = False

    def in_netns(self, netns: Path) -> FakeNetlink:
        if not PodUnreachableOnce.failed:
            PodUnreachableOnce.failed = True
            raise HostError(f"cannot enter netns {netns}: Too many open files", errno.EMFILE)
        return super().in_netns(netns)


def test_pod_unreachable_after_the_move_gives_the_vf_back(host: Host) -> None:
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    before = host.netlink.link(target.netdev)
    ctx = dataclasses.replace(host.ctx, netlink=PodUnreachableOnce(host.root / "host"))
    pod = host.pod("p1")
    env = host.env("ADD", "c1", pod)
    conf, raw = host.conf(env, mtu=1400)
    with pytest.raises(HostError, match="Too many open files"):
        attach.add(ctx, env, conf, raw)
    with pytest.raises(NotFound):
        host.netlink.in_netns(pod).link("net1")
    back = host.netlink.link(target.netdev)
    assert (back.name, back.mtu, back.up) == (before.name, before.mtu, before.up)
    assert host.store.attachment_keys() == []
    assert list(host.store.allocations()) == []
