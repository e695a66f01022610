"""Records scoped to the boot that wrote them: written without fsync, stamped with the boot id,
never restored from once the host rebooted, and an earlier boot's unreadable leftover removed
(host/state.py, host/boot.py, ops/cni/lifecycle.py)."""

from __future__ import annotations

import dataclasses
import os
import posix
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_attach_unit import Host

from sriovkit.cni import shim
from sriovkit.cni.dispatch import host_context
from sriovkit.cni.install import install_shim
from sriovkit.errors import CheckFailed, HostError
from sriovkit.host.boot import boot_id, boot_time, predates_boot
from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import LinkChange
from sriovkit.host.state import StateStore
from sriovkit.host.statefiles import discard_leftover
from sriovkit.model.attachment import AllocationRecord, AttachmentKey, VfAttachment
from sriovkit.model.vf import VfSettings
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.ops.cni.vf.device import resolve_vf
from sriovkit.ops.vfconfig import apply_vf, read_vf

THIS_BOOT = "11111111-2222-3333-4444-555555555555"
EARLIER_BOOT = "99999999-8888-7777-6666-555555555555"
KEY = AttachmentKey("c1", "net1")


class RecordingIpam(Ipam):
    """An IPAM plugin that is found and answers; DELs are recorded."""

    def __init__(self) -> None:
        super().__init__([])
        self.deleted: list[str] = []

    def find(self, kind: str) -> Path:
        return Path("/usr/lib/cni") / kind

    def add(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        return {"cniVersion": "1.1.0", "ips": [{"address": "10.1.0.5/24"}]}

    def delete(self, netconf: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.deleted.append(env.get("CNI_CONTAINERID", ""))


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path)
    h.ctx = dataclasses.replace(h.ctx, boot_id=THIS_BOOT, ipam=RecordingIpam())
    return h


def _fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    monkeypatch.setattr(posix, "fsync", counting)  # the shim calls posix directly
    return calls


def _record(boot: str | None = THIS_BOOT) -> VfAttachment:
    return msgspec.json.decode(
        msgspec.json.encode(
            {"kind": "vf", "container_id": "c1", "ifname": "net1", "network": "net-a",
             "netns": "/run/netns/p1", "device_id": "0000:3b:02.1", "boot_id": boot,
             "original": {"name": "eth5", "admin_mac": "00:00:00:00:00:00",
                          "effective_mac": "02:00:00:00:00:05"}}
        ),
        type=VfAttachment,
    )  # fmt: skip


# --- the boot seam ---------------------------------------------------------------------------


def test_boot_id_and_time_come_from_proc_and_are_none_when_unreadable(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "sys/kernel/random").mkdir(parents=True)
    (proc / "sys/kernel/random/boot_id").write_text(THIS_BOOT + "\n")
    (proc / "stat").write_text("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n")
    assert boot_id(proc) == THIS_BOOT
    assert boot_time(proc) == 1700000000.0
    assert predates_boot(1699999999.0, proc) and not predates_boot(1700000001.0, proc)
    empty = tmp_path / "none"
    assert boot_id(empty) is None and boot_time(empty) is None
    assert not predates_boot(0.0, empty), "an unknown boot time makes nothing a leftover"


# --- no fsync for records, fsync for the rest -------------------------------------------------


def test_records_are_written_and_deleted_without_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path / "state")
    alloc = AllocationRecord(device_id="0000:3b:02.1", container_id="c1", ifname="net1")
    store.write_allocation(alloc)  # creates the sub-directories (their one fsync each)
    store.write_attachment(_record())
    calls = _fsyncs(monkeypatch)
    store.write_allocation(alloc)
    store.write_attachment(_record())
    record = store.read_attachment(KEY)
    assert record is not None and record.boot_id == THIS_BOOT
    assert store.delete_attachment(KEY) and store.delete_allocation(alloc.pci)
    assert calls == []
    assert store.read_attachment(KEY) is None and store.read_allocation(alloc.pci) is None
    assert os.listdir(tmp_path / "state" / "attachments") == []


def test_the_journal_and_the_installed_shim_still_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsyncs(monkeypatch)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        shim._journal_write(dfd, "c1@net1.del", b"{}")
    finally:
        os.close(dfd)
    assert len(calls) == 2, "file and directory"
    calls.clear()
    install_shim(tmp_path / "bin", "sriov", tmp_path / "agent.sock", state_dir=tmp_path)
    assert len(calls) >= 2


# --- ADD stamps, DEL and ADD of an earlier boot's record restore nothing ------------------------


def _add(host: Host, container: str, pod: str, **conf: Any) -> None:
    env = host.env("ADD", container, host.pod(pod))
    parsed, raw = host.conf(env, **conf)
    attach.add(host.ctx, env, parsed, raw)


def _reboot(host: Host, pod: str) -> None:
    """What a reboot does to the simulated host: the pod is gone, its VF back in the host under
    its own name, and the records are an earlier boot's (the boot id changed)."""
    target = resolve_vf(host.sysfs, host.vf)
    assert target.netdev is not None
    host.netlink.in_netns(host.root / "netns" / pod).move_link(
        "net1", Path("/proc/self/ns/net"), LinkChange(new_name=target.netdev)
    )
    host.ctx = dataclasses.replace(host.ctx, boot_id="22222222-0000-0000-0000-000000000000")


def test_add_stamps_the_boot_id_of_the_context(host: Host) -> None:
    _add(host, "c1", "p1")
    record = host.store.read_attachment(KEY)
    assert record is not None and record.boot_id == THIS_BOOT


def test_del_of_an_earlier_boots_record_restores_nothing(host: Host) -> None:
    _add(host, "c1", "p1", vlan=7, ipam={"type": "host-local"})
    _reboot(host, "p1")
    # This boot configured the VF since (its own VLAN): the record's "original" must not win.
    pf = host.pf.netdev or ""
    apply_vf(host.netlink, pf, 0, VfSettings(vlan=42))
    attach.delete(host.ctx, host.env("DEL", "c1", host.pod("p1")), *host.conf(
        host.env("DEL", "c1", host.pod("p1")), ipam={"type": "host-local"}))  # fmt: skip
    assert read_vf(host.netlink, pf, 0).vlan == 42
    assert host.store.attachment_keys() == [] and list(host.store.allocations()) == []
    assert host.ctx.ipam.deleted == ["c1"]  # type: ignore[attr-defined]


def test_del_of_a_record_without_boot_id_still_restores(host: Host) -> None:
    _add(host, "c1", "p1", vlan=7)
    record = host.store.read_attachment(KEY)
    assert record is not None
    host.store.write_attachment(msgspec.structs.replace(record, boot_id=None))  # an old writer's
    attach.delete(host.ctx, host.env("DEL", "c1", host.pod("p1")), *host.conf(
        host.env("DEL", "c1", host.pod("p1"))))  # fmt: skip
    assert read_vf(host.netlink, host.pf.netdev or "", 0).vlan == 0


def test_add_reclaims_an_earlier_boots_holder_without_restoring(host: Host) -> None:
    _add(host, "c1", "p1", vlan=7)
    _reboot(host, "p1")  # p1's netns path still exists: only the boot id tells it is gone
    pf = host.pf.netdev or ""
    apply_vf(host.netlink, pf, 0, VfSettings(vlan=42))
    _add(host, "c2", "p2", vlan=5)  # captures the PF side (it sets some) before it applies
    assert host.store.attachment_keys() == [AttachmentKey("c2", "net1")]
    assert [a.container_id for a in host.store.allocations()] == ["c2"]
    assert read_vf(host.netlink, pf, 0).vlan == 5
    record = host.store.read_attachment(AttachmentKey("c2", "net1"))
    assert record is not None and record.original.vlan == 42  # c1's restore did not run


def test_check_of_an_earlier_boots_record_fails(host: Host) -> None:
    add_env = host.env("ADD", "c1", host.pod("p1"))
    conf, raw = host.conf(add_env)
    attach.add(host.ctx, add_env, conf, raw)
    env = host.env("CHECK", "c1", host.pod("p1"))
    attach.check(host.ctx, env, conf, raw)
    ctx = dataclasses.replace(host.ctx, boot_id=EARLIER_BOOT)
    with pytest.raises(CheckFailed, match="from an earlier boot"):
        attach.check(ctx, env, conf, raw)


# --- an unreadable record: an earlier boot's leftover, or an error -----------------------------


def _zero_length(host: Host, sub: str, name: str, *, old: bool) -> Path:
    path = host.store.dir / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if old:
        started = boot_time()
        assert started is not None
        os.utime(path, (started - 3600, started - 3600))
    return path


def test_an_earlier_boots_empty_record_is_removed_by_del(host: Host) -> None:
    path = _zero_length(host, "attachments", "c1@net1.json", old=True)
    env = host.env("DEL", "c1", host.pod("p1"))
    attach.delete(host.ctx, env, *host.conf(env))
    assert not path.exists()
    assert os.listdir(path.parent) == []


def test_an_empty_record_of_this_boot_is_an_error_naming_it(host: Host) -> None:
    path = _zero_length(host, "attachments", "c1@net1.json", old=False)
    env = host.env("DEL", "c1", host.pod("p1"))
    with pytest.raises(HostError, match=f"{path}.*corrupt"):
        attach.delete(host.ctx, env, *host.conf(env))
    assert path.exists()


def test_an_earlier_boots_empty_allocation_does_not_hold_the_vf(host: Host) -> None:
    path = _zero_length(host, "allocations", f"{host.vf}.json", old=True)
    _add(host, "c1", "p1")
    assert [a.container_id for a in host.store.allocations()] == ["c1"]
    assert path.read_bytes() != b""


def test_gc_removes_an_earlier_boots_leftover_instead_of_failing(host: Host) -> None:
    path = _zero_length(host, "attachments", "c9@net1.json", old=True)
    env = host.env("GC", "c1", None)
    conf, raw = host.conf(env, **{"cni.dev/valid-attachments": []})
    attach.gc(host.ctx, conf, raw)
    assert not path.exists()


def test_discard_removes_only_the_file_that_was_read(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_bytes(b"")
    seen = os.stat(tmp_path / "r.json")
    newer = tmp_path / ".new.tmp"
    newer.write_bytes(b"fresh")
    os.replace(newer, tmp_path / "r.json")  # a writer replaced it after it was read
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        discard_leftover(dfd, "r.json", seen, f".r.json.{time.monotonic_ns()}.tmp")
        assert (tmp_path / "r.json").read_bytes() == b"fresh"
        discard_leftover(dfd, "r.json", os.stat(tmp_path / "r.json"), ".r.json.1.tmp")
    finally:
        os.close(dfd)
    assert os.listdir(tmp_path) == []


def test_a_record_written_before_the_field_reads_as_this_boot(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.write_attachment(_record())
    path = tmp_path / "state" / "attachments" / "c1@net1.json"
    obj = msgspec.json.decode(path.read_bytes())
    del obj["boot_id"]
    path.write_bytes(msgspec.json.encode(obj))
    record = store.read_attachment(KEY)
    assert record is not None and record.boot_id is None and record.schema == 1


def test_gc_releases_an_earlier_boots_record_without_restoring(host: Host) -> None:
    _add(host, "c1", "p1", vlan=7)
    _reboot(host, "p1")
    pf = host.pf.netdev or ""
    apply_vf(host.netlink, pf, 0, VfSettings(vlan=42))
    env = host.env("GC", "c1", None)
    conf, raw = host.conf(env, **{"cni.dev/valid-attachments": []})
    attach.gc(host.ctx, conf, raw)
    assert read_vf(host.netlink, pf, 0).vlan == 42
    assert host.store.attachment_keys() == [] and list(host.store.allocations()) == []


def test_the_adapters_context_carries_this_boots_id(tmp_path: Path) -> None:
    env = {"SRIOVKIT_STATE_DIR": str(tmp_path / "state"), "SRIOVKIT_ROOT": str(tmp_path)}
    with host_context(env) as ctx:
        assert ctx.boot_id == boot_id() and ctx.boot_id is not None
