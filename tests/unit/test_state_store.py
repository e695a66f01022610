"""StateStore: atomic 0600 records, symlink refusal, name validation, per-VF flock locks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from sriovkit.errors import Busy, HostError, InvalidInput
from sriovkit.host.state import (
    DEFAULT_STATE_DIR,
    StateStore,
    attachment_file_name,
    default_state_dir,
)
from sriovkit.model.attachment import (
    AllocationRecord,
    AppliedState,
    AttachmentKey,
    VfAttachment,
    VfOriginalState,
)
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import LinkState, VfInfo, VfSettings, VlanProto

PCI = "0000:3b:02.1"
KEY = AttachmentKey("c0ffee", "net1")


def record(key: AttachmentKey = KEY, netns: str = "/var/run/netns/pod1") -> VfAttachment:
    info = VfInfo(index=1, mac="02:00:00:00:00:10", vlan=7, qos=2, proto=VlanProto.DOT1AD)
    return VfAttachment(
        container_id=key.container_id,
        ifname=key.ifname,
        network="sriov-net",
        device_id=PCI,
        pf="ens1f0",
        vf_index=1,
        netns=netns,
        applied=AppliedState.from_settings(
            VfSettings(mac="02:00:00:00:00:99", vlan=100, spoofchk=False), mtu=9000
        ),
        original=VfOriginalState.capture(
            info, name="ens1f0v1", effective_mac="02:11:22:33:44:55", mtu=1500
        ),
        result={"cniVersion": "1.1.0", "interfaces": [{"name": "net1"}]},
    )


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state")


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_attachment_round_trip(store: StateStore) -> None:
    rec = record()
    store.write_attachment(rec)
    got = store.read_attachment(KEY)
    assert got == rec
    assert got is not None
    assert got.original.vf_settings() == VfSettings(
        mac="02:00:00:00:00:10",
        vlan=7,
        qos=2,
        proto=VlanProto.DOT1AD,
        spoofchk=True,
        trust=False,
        link_state=LinkState.AUTO,
        min_tx_rate=0,
        max_tx_rate=0,
    )
    assert got.applied.vf_settings() == VfSettings(
        mac="02:00:00:00:00:99", vlan=100, spoofchk=False
    )
    assert got.pci == PciAddress.parse(PCI)
    assert store.attachment_keys() == [KEY]
    assert list(store.attachments()) == [rec]


def test_replace_and_delete(store: StateStore) -> None:
    store.write_attachment(record(netns="/old"))
    store.write_attachment(record(netns="/new"))
    got = store.read_attachment(KEY)
    assert got is not None
    assert got.netns == "/new"
    assert store.delete_attachment(KEY) is True
    assert store.read_attachment(KEY) is None
    assert store.delete_attachment(KEY) is False
    assert store.attachment_keys() == []


def test_ifname_with_odd_characters_round_trips(store: StateStore) -> None:
    key = AttachmentKey("c1", "net@1%x")
    store.write_attachment(record(key))
    assert store.attachment_keys() == [key]
    assert "/" not in attachment_file_name(key)
    got = store.read_attachment(key)
    assert got is not None
    assert got.key == key


def test_allocations(store: StateStore) -> None:
    alloc = AllocationRecord(device_id=PCI, container_id="c0ffee", ifname="net1", network="n")
    store.write_allocation(alloc)
    assert store.read_allocation(PciAddress.parse(PCI)) == alloc
    assert store.read_allocation("0000:3b:02.2") is None
    assert list(store.allocations()) == [alloc]
    assert store.delete_allocation(PCI) is True
    assert list(store.allocations()) == []


def test_modes_0600_and_0700(store: StateStore, open_umask: None) -> None:
    store.write_attachment(record())
    store.write_allocation(AllocationRecord(device_id=PCI, container_id="c", ifname="e"))
    with store.lock_vf(PCI):
        pass
    assert mode(store.dir) == 0o700
    for sub in ("attachments", "allocations", "locks"):
        assert mode(store.dir / sub) == 0o700
    files = [p for p in store.dir.rglob("*") if p.is_file()]
    assert len(files) == 3
    assert {mode(p) for p in files} == {0o600}


def test_failed_rename_leaves_old_record(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_attachment(record(netns="/old"))

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(HostError, match="No space left"):
        store.write_attachment(record(netns="/new"))
    monkeypatch.undo()
    got = store.read_attachment(KEY)
    assert got is not None
    assert got.netns == "/old"
    assert os.listdir(store.dir / "attachments") == [attachment_file_name(KEY)]


def test_crash_before_rename_leaves_old_record(store: StateStore) -> None:
    store.write_attachment(record(netns="/old"))
    # A process that dies (no cleanup at all) between writing the temp file and the rename.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from sriovkit.host.state import StateStore
        from sriovkit.model.attachment import VfAttachment
        import msgspec
        rec = msgspec.json.decode(Path({str(store.dir / "rec.json")!r}).read_bytes(),
                                  type=VfAttachment)
        os.replace = lambda *a, **k: os._exit(9)
        StateStore(Path({str(store.dir)!r})).write_attachment(rec)
        """
    )
    new = record(netns="/new")
    (store.dir / "rec.json").write_bytes(msgspec.json.encode(new))
    proc = subprocess.run([sys.executable, "-c", script], check=False)
    assert proc.returncode == 9
    leftovers = [n for n in os.listdir(store.dir / "attachments") if n.endswith(".tmp")]
    assert len(leftovers) == 1  # the dead writer's temp file, complete but never renamed
    got = store.read_attachment(KEY)
    assert got is not None
    assert got.netns == "/old"
    assert store.attachment_keys() == [KEY]
    store.write_attachment(new)  # the next writer is not disturbed by the leftover
    got = store.read_attachment(KEY)
    assert got is not None
    assert got.netns == "/new"


def test_symlinked_record_refused(store: StateStore, tmp_path: Path) -> None:
    store.write_attachment(record())
    target = tmp_path / "elsewhere.json"
    target.write_bytes(msgspec.json.encode(record(netns="/evil")))
    path = store.dir / "attachments" / attachment_file_name(KEY)
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(HostError, match="symlink"):
        store.read_attachment(KEY)
    with pytest.raises(HostError, match="not a regular file"):
        store.write_attachment(record())
    assert path.is_symlink()
    assert b"/evil" in target.read_bytes()


def test_symlinked_state_dir_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    store = StateStore(link)
    with pytest.raises(HostError, match="symlink"):
        store.write_attachment(record())
    with pytest.raises(HostError, match="symlink"):
        store.read_attachment(KEY)
    assert list(real.iterdir()) == []


def test_symlinked_subdir_refused(store: StateStore, tmp_path: Path) -> None:
    store.write_attachment(record())
    other = tmp_path / "other"
    other.mkdir()
    (store.dir / "locks").symlink_to(other)
    with pytest.raises(HostError, match="symlink"), store.lock_vf(PCI):
        pass
    assert list(other.iterdir()) == []


def test_symlinked_lock_file_refused(store: StateStore, tmp_path: Path) -> None:
    with store.lock_vf(PCI):
        pass
    lock = store.dir / "locks" / f"{PCI}.lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "victim")
    with pytest.raises(HostError, match="symlink"), store.lock_vf(PCI):
        pass
    assert not (tmp_path / "victim").exists()


@pytest.mark.parametrize(
    ("cid", "ifname"),
    [("../x", "net1"), ("a/b", "net1"), ("", "net1"), ("c", ".."), ("c", "a/b"), ("a" * 201, "e")],
)
def test_bad_names_refused(cid: str, ifname: str) -> None:
    with pytest.raises(InvalidInput):
        AttachmentKey(cid, ifname)


@pytest.mark.parametrize("pci", ["../../etc/passwd", "0000:3b:02.1/../x", ""])
def test_bad_pci_names_refused(store: StateStore, pci: str) -> None:
    with pytest.raises(InvalidInput):
        store.read_allocation(pci)
    with pytest.raises(InvalidInput), store.lock_vf(pci):
        pass


def test_records_validate_their_names() -> None:
    with pytest.raises(InvalidInput):
        AllocationRecord(device_id=PCI, container_id="../x", ifname="e")
    with pytest.raises(InvalidInput):
        AllocationRecord(device_id="3b:02.1", container_id="c", ifname="e")


def test_foreign_files_skipped_and_corrupt_record_reported(store: StateStore) -> None:
    store.write_attachment(record())
    sub = store.dir / "attachments"
    (sub / "README").write_text("x")
    (sub / "no-at-sign.json").write_text("{}")
    (sub / "..x@y.json").write_text("{}")
    assert store.attachment_keys() == [KEY]
    (sub / attachment_file_name(KEY)).write_text('{"schema": 1, "container_id": ')
    with pytest.raises(HostError, match="corrupt"):
        store.read_attachment(KEY)


def test_newer_schema_refused(store: StateStore) -> None:
    store.write_allocation(AllocationRecord(device_id=PCI, container_id="c", ifname="e"))
    path = store.dir / "allocations" / f"{PCI}.json"
    path.write_text(path.read_text().replace('"schema":1', '"schema":2'))
    with pytest.raises(HostError, match="schema 2"):
        store.read_allocation(PCI)


def test_record_under_wrong_name_refused(store: StateStore) -> None:
    store.write_attachment(record())
    sub = store.dir / "attachments"
    other = AttachmentKey("other", "net1")
    (sub / attachment_file_name(KEY)).rename(sub / attachment_file_name(other))
    with pytest.raises(HostError, match="belongs to"):
        store.read_attachment(other)


def test_lock_is_exclusive_within_a_process(store: StateStore) -> None:
    with store.lock_vf(PCI):
        with pytest.raises(Busy) as info, store.lock_vf(PCI, timeout=0.05):
            pass
        assert info.value.cni_code == 11
        assert PCI in str(info.value)
        with store.lock_vf("0000:3b:02.2", timeout=0):  # another VF is independent
            pass
    with store.lock_vf(PCI, timeout=0):
        pass


HOLDER = """
import sys
from pathlib import Path
from sriovkit.host.state import StateStore
with StateStore(Path(sys.argv[1])).lock_vf(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_lock_held_by_other_process_times_out_with_busy(store: StateStore) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.dir), PCI],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(Busy), store.lock_vf(PCI, timeout=0.2):
            pass
        holder.stdin.write("go\n")
        holder.stdin.flush()
        with store.lock_vf(PCI, timeout=30):
            pass
        assert holder.wait(timeout=30) == 0


def test_lock_released_when_holder_dies(store: StateStore) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.dir), PCI],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n"
        holder.kill()
        holder.wait(timeout=30)
    with store.lock_vf(PCI, timeout=30):
        pass


COUNTER = """
import sys
from pathlib import Path
from sriovkit.host.state import StateStore
store = StateStore(Path(sys.argv[1]))
counter = Path(sys.argv[1]) / "counter"
for _ in range(int(sys.argv[3])):
    with store.lock_vf(sys.argv[2]):
        value = int(counter.read_text())
        counter.write_text(str(value + 1))
"""


def test_two_processes_serialize_on_a_vf_lock(store: StateStore) -> None:
    store.dir.mkdir()
    (store.dir / "counter").write_text("0")
    rounds = 200
    procs = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(store.dir), PCI, str(rounds)])
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    # Unlocked read-modify-write would lose increments.
    assert (store.dir / "counter").read_text() == str(2 * rounds)


def test_default_state_dir() -> None:
    assert default_state_dir({}) == DEFAULT_STATE_DIR == Path("/var/lib/sriovkit")
    assert default_state_dir({"SRIOVKIT_STATE_DIR": "/run/sk"}) == Path("/run/sk")
    with pytest.raises(InvalidInput):
        default_state_dir({"SRIOVKIT_STATE_DIR": "rel/dir"})


# --- records as a tagged union by kind --------------------------------------------------------


def test_records_carry_their_kind(store: StateStore) -> None:
    store.write_attachment(record())
    data = (store.dir / "attachments" / attachment_file_name(KEY)).read_bytes()
    assert msgspec.json.decode(data)["kind"] == "vf"


def test_a_record_from_before_kinds_reads_as_a_vf_record(store: StateStore) -> None:
    # What the store wrote before records had a `kind`: the same JSON without the tag.
    written = record()
    old = msgspec.json.decode(msgspec.json.encode(written))
    del old["kind"]
    store.write_attachment(written)  # creates the tree
    path = store.dir / "attachments" / attachment_file_name(KEY)
    path.write_bytes(msgspec.json.encode(old))
    assert b'"kind"' not in path.read_bytes()
    got = store.read_attachment(KEY)
    assert isinstance(got, VfAttachment)
    assert got == written


def test_a_record_of_an_unknown_kind_is_refused_not_misread(store: StateStore) -> None:
    store.write_attachment(record())
    path = store.dir / "attachments" / attachment_file_name(KEY)
    obj = msgspec.json.decode(path.read_bytes())
    obj["kind"] = "teleporter"
    path.write_bytes(msgspec.json.encode(obj))
    with pytest.raises(HostError, match=r"kind 'teleporter', which this sriovkit does not know"):
        store.read_attachment(KEY)
