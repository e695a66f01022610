"""FakeNetlink on a simulated host under concurrency: no change is lost, no read goes back in time.

The simulated PF stands for a kernel, which serialises RTM_SETLINKs on one PF: two processes
(CLI calls, the agent, the in-process CNI fallback) and the agent's threads changing different
VFs of one PF must all see their last change stick.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from sriovkit.model.vf import VfSettings
from sriovkit.sim import create_host
from sriovkit.sim.netlink import FakeNetlink
from sriovkit.sim.netlink_state import LOCK_FILE, STATE_FILE

ROUNDS = 40
THREADS = 4  # VFs 0..3, one thread each, in this process
PROCESSES = 2  # VFs 4..5, one child process each
READERS = 2


def vlan_of(vf: int, round_: int) -> int:
    """Distinct per VF and increasing per round, so the last value and any regression show."""
    return vf * 500 + round_ + 1


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sriovkit.model.vf import VfSettings
    from sriovkit.sim.netlink import FakeNetlink

    root, pf, vf, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for r in range(rounds):
        FakeNetlink(root).set_vf(pf, vf, VfSettings(vlan=vf * 500 + r + 1))
    """
)


def test_concurrent_set_vf_from_threads_and_processes_loses_nothing(tmp_path: Path) -> None:
    host = create_host(tmp_path, ["82576"], vfs=THREADS + PROCESSES, extras=False)
    pf = host.pfs[0].netdev
    assert pf is not None
    assert len(FakeNetlink(tmp_path).vfs(pf)) == THREADS + PROCESSES
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), pf, str(vf), str(ROUNDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for vf in range(THREADS, THREADS + PROCESSES)
    ]
    errors: list[BaseException] = []
    go = threading.Event()
    done = threading.Event()

    def writer(vf: int) -> None:
        try:
            go.wait()
            for r in range(ROUNDS):
                FakeNetlink(tmp_path).set_vf(pf, vf, VfSettings(vlan=vlan_of(vf, r)))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    def reader() -> None:
        # Lock-free reads see whole saves only: a VF's VLAN never goes back (that would be a
        # lost update or a torn/old state file) and every VF is always there.
        seen = [0] * (THREADS + PROCESSES)
        try:
            go.wait()
            while not done.is_set():
                vfs = FakeNetlink(tmp_path).vfs(pf)
                assert len(vfs) == len(seen)
                for vf in vfs:
                    assert vf.vlan >= seen[vf.index], (vf.index, vf.vlan, seen[vf.index])
                    seen[vf.index] = vf.vlan
        except BaseException as exc:
            errors.append(exc)

    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        writers = [threading.Thread(target=writer, args=(vf,)) for vf in range(THREADS)]
        readers = [threading.Thread(target=reader) for _ in range(READERS)]
        for thread in writers + readers:
            thread.start()
        go.set()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for thread in writers:
            thread.join()
        for child in children:
            _out, err = child.communicate(timeout=300)
            assert child.returncode == 0, err
    finally:
        go.set()
        done.set()
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for thread in readers:
        thread.join()
    assert not errors, errors
    final = {vf.index: vf.vlan for vf in FakeNetlink(tmp_path).vfs(pf)}
    assert final == {vf: vlan_of(vf, ROUNDS - 1) for vf in range(THREADS + PROCESSES)}
    # One state file and its lock file; no temp file left behind by the saves.
    assert sorted(p.name for p in (tmp_path / STATE_FILE).parent.glob("netlink*")) == sorted(
        [Path(STATE_FILE).name, Path(LOCK_FILE).name]
    )
    assert not list((tmp_path / STATE_FILE).parent.glob(".netlink*"))


def test_concurrent_set_vf_in_memory_loses_nothing() -> None:
    nl = FakeNetlink()
    nl.add_link("eth0", driver="igb", num_vfs=7)
    errors: list[BaseException] = []

    def writer(vf: int) -> None:
        try:
            for r in range(ROUNDS):
                nl.set_vf("eth0", vf, VfSettings(vlan=vlan_of(vf, r)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(vf,)) for vf in range(7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert {vf.index: vf.vlan for vf in nl.vfs("eth0")} == {
        vf: vlan_of(vf, ROUNDS - 1) for vf in range(7)
    }


def test_a_writer_killed_mid_save_leaves_no_stray_file_and_no_lock(tmp_path: Path) -> None:
    # A leftover temp file from a writer SIGKILLed before its rename is truncated and reused by
    # the next save (the lock makes one fixed name safe); the lock died with the writer's fd.
    host = create_host(tmp_path, ["82576"], vfs=2, extras=False)
    pf = host.pfs[0].netdev
    assert pf is not None
    nl = FakeNetlink(tmp_path)
    nl.set_vf(pf, 0, VfSettings(vlan=5))
    stray = (tmp_path / STATE_FILE).parent / ".netlink.json.tmp"
    stray.write_text('{"torn": ')
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(tmp_path / LOCK_FILE),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert nl.vfs(pf)[0].vlan == 5  # reads do not wait for a writer
    finally:
        holder.kill()
        holder.communicate()
    nl.set_vf(pf, 1, VfSettings(vlan=6))
    assert [vf.vlan for vf in FakeNetlink(tmp_path).vfs(pf)] == [5, 6]
    assert not stray.exists()
