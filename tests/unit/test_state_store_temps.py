"""StateStore: temp files left by a writer killed mid-write are swept; a live writer's never are."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sriovkit.host.state import StateStore
from sriovkit.host.statefiles import STALE_TEMP_AGE
from sriovkit.model.attachment import AllocationRecord, AttachmentKey

PCI = "0000:3b:02.1"
KEY = AttachmentKey("c0ffee", "net1")
OLD = time.time() - STALE_TEMP_AGE - 60


def allocation(pci: str = PCI) -> AllocationRecord:
    return AllocationRecord(
        device_id=pci, container_id=KEY.container_id, ifname=KEY.ifname, network="sriov-net"
    )


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    made = StateStore(tmp_path / "state")
    made.write_allocation(allocation())
    return made


def temp(store: StateStore, sub: str, name: str, age: float | None = OLD) -> Path:
    path = store.dir / sub / name
    path.write_bytes(b'{"half": ')
    if age is not None:
        os.utime(path, (age, age))
    return path


# A writer that hangs between writing its temp file and renaming it, until killed.
HANGING_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from sriovkit.host.state import StateStore
    from sriovkit.model.attachment import AllocationRecord

    def hang(*args, **kwargs):
        print("writing", flush=True)
        time.sleep(120)

    os.replace = hang
    StateStore(Path(sys.argv[1])).write_allocation(
        AllocationRecord(device_id=sys.argv[2], container_id="dead", ifname="net1", network="n")
    )
    """
)


def test_a_dead_writers_temp_file_is_swept_a_live_ones_is_not(store: StateStore) -> None:
    pci = "0000:3b:02.2"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    writer = subprocess.Popen(
        [sys.executable, "-c", HANGING_WRITER, str(store.dir), pci],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        (left,) = [p for p in (store.dir / "allocations").iterdir() if p.name.endswith(".tmp")]
        assert left.name.startswith(f".{pci}.json.{writer.pid}.")
        os.utime(left, (OLD, OLD))  # however old it looks, its writer still holds it
        assert [a.device_id for a in store.allocations()] == [PCI]
        assert left.exists()
    finally:
        writer.kill()  # SIGKILL mid-write: the rename never happens
        writer.communicate()
    assert left.exists()
    assert [a.device_id for a in store.allocations()] == [PCI]
    assert not left.exists()
    assert store.read_allocation(pci) is None


def test_stale_temp_files_are_swept_when_records_are_listed(store: StateStore) -> None:
    stale_alloc = temp(store, "allocations", f".{PCI}.json.4242.1.tmp")
    (store.dir / "attachments").mkdir(mode=0o700)
    # The pid in the name means nothing (another pid namespace): an unlocked old file is stale.
    stale_attach = temp(store, "attachments", f".c0ffee@net1.json.{os.getpid()}.2.tmp")
    fresh = temp(store, "allocations", f".{PCI}.json.4242.3.tmp", age=None)
    assert list(store.attachments()) == []
    assert not stale_attach.exists()
    assert [a.device_id for a in store.allocations()] == [PCI]
    assert not stale_alloc.exists()
    # Young and unlocked: a writer may be between creating it and locking it.
    assert fresh.exists()


def test_sweep_leaves_foreign_things_alone(store: StateStore, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    os.utime(target, (OLD, OLD))
    link = store.dir / "allocations" / ".evil.tmp"
    link.symlink_to(target)
    os.utime(link, (OLD, OLD), follow_symlinks=False)
    directory = store.dir / "allocations" / ".dir.tmp"
    directory.mkdir()
    os.utime(directory, (OLD, OLD))
    other = temp(store, "allocations", ".notes.txt")  # not a temp file name
    assert [a.device_id for a in store.allocations()] == [PCI]
    assert link.is_symlink() and target.read_text() == "keep"
    assert directory.is_dir() and other.exists()


def test_writes_leave_no_temp_files(store: StateStore) -> None:
    for i in range(3):
        store.write_allocation(allocation(f"0000:3b:02.{i + 2}"))
    assert sorted(p.name for p in (store.dir / "allocations").iterdir()) == [
        f"0000:3b:02.{i}.json" for i in (1, 2, 3, 4)
    ]
