"""The lab harness's own logic, on the host (no guest): junit mapping, module order, initramfs."""

from __future__ import annotations

import gzip
import io
import lzma
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from sriovkit.lab import initramfs
from sriovkit.lab.errors import LabUnavailable
from sriovkit.lab.junit import Status, junit_key, read_junit
from sriovkit.lab.runner import (
    KERNEL_ARGS,
    RCU_STALL,
    Outcome,
    _pump,
    _StallWatch,
    classify,
    stage2_script,
)


@pytest.mark.parametrize(
    ("nodeid", "key"),
    [
        ("tests/lab/test_a.py::test_b", ("tests.lab.test_a", "test_b")),
        ("tests/lab/test_a.py::TestC::test_d[x-1]", ("tests.lab.test_a.TestC", "test_d[x-1]")),
        ("tests/lab/test_a.py::test_e[a/b.py::c]", ("tests.lab.test_a", "test_e[a/b.py::c]")),
    ],
)
def test_junit_key_matches_pytest_junitxml_naming(nodeid: str, key: tuple[str, str]) -> None:
    assert junit_key(nodeid) == key


def test_read_junit_keeps_pass_fail_skip_and_teardown_errors(tmp_path: Path) -> None:
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="t.m" name="ok" time="0.1"/>'
        '<testcase classname="t.m" name="bad"><failure message="assert 1 == 2">tb here'
        "</failure></testcase>"
        '<testcase classname="t.m" name="skip"><skipped type="pytest.skip" message="no igb">'
        "t/m.py:3: no igb</skipped></testcase>"
        # pytest writes a teardown error as a second testcase element with the same name.
        '<testcase classname="t.m" name="td"/>'
        '<testcase classname="t.m" name="td"><error message="teardown failed">boom</error>'
        "</testcase></testsuite></testsuites>"
    )
    got = read_junit(xml)
    assert got[("t.m", "ok")].status is Status.PASSED
    assert got[("t.m", "bad")].status is Status.FAILED
    assert "assert 1 == 2" in got[("t.m", "bad")].message
    assert "tb here" in got[("t.m", "bad")].message
    assert (got[("t.m", "skip")].status, got[("t.m", "skip")].message) == (Status.SKIPPED, "no igb")
    assert got[("t.m", "td")].status is Status.FAILED


def _moddir(tmp_path: Path) -> Path:
    moddir = tmp_path / "lib/modules/6.12.0"
    (moddir / "kernel").mkdir(parents=True)
    (moddir / "modules.dep").write_text(
        "kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz\n"
        "kernel/fs/netfs/netfs.ko.xz:\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
        "kernel/drivers/net/ethernet/intel/igb/igb.ko.xz: kernel/drivers/dca/dca.ko.xz\n"
        "kernel/drivers/dca/dca.ko.xz:\n"
    )
    (moddir / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    return moddir


def test_module_order_puts_dependencies_first_and_skips_builtins(tmp_path: Path) -> None:
    order = initramfs.module_order(_moddir(tmp_path), ["virtio_pci", "9pnet_virtio", "igb"])
    assert order == [
        "kernel/fs/netfs/netfs.ko.xz",
        "kernel/net/9p/9pnet.ko.xz",
        "kernel/net/9p/9pnet_virtio.ko.xz",
        "kernel/drivers/dca/dca.ko.xz",
        "kernel/drivers/net/ethernet/intel/igb/igb.ko.xz",
    ]


def test_module_order_names_a_missing_module(tmp_path: Path) -> None:
    with pytest.raises(LabUnavailable, match="igbvf not found"):
        initramfs.module_order(_moddir(tmp_path), ["igbvf"])


def _read_newc(blob: bytes) -> dict[str, tuple[int, bytes, int]]:
    entries, pos = {}, 0
    while True:
        assert blob[pos : pos + 6] == b"070701"
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = blob[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        data = blob[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], data, fields[9] << 8 | fields[10])


def test_initramfs_is_a_newc_archive_with_init_console_and_modules(tmp_path: Path) -> None:
    moddir = _moddir(tmp_path)
    for rel in (
        "kernel/fs/netfs/netfs.ko.xz",
        "kernel/drivers/dca/dca.ko.xz",
        "kernel/drivers/net/ethernet/intel/igb/igb.ko.xz",
    ):
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).write_bytes(lzma.compress(b"\x7fELF " + rel.encode()))
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    out = initramfs.build(moddir, busybox, tmp_path / "initrd.gz", wanted=["netfs", "igb"])
    entries = _read_newc(gzip.decompress(out.read_bytes()))
    mode, data, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and data.startswith(b"#!/bin/sh")
    assert b"switch_root /newroot /bin/sh " + initramfs.STAGE2.encode() in data
    mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5 << 8 | 1)
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    # Modules are stored decompressed, in load order.
    assert entries["modules/igb.ko"][1].startswith(b"\x7fELF ")
    assert entries["modules.order"][1].decode().split() == ["netfs", "dca", "igb"]


def test_stage2_runs_the_command_quoted_and_reports_its_exit_code() -> None:
    script = stage2_script(
        ["python", "-c", "print('a b')"],
        cwd=Path("/work/x y"),
        env={"CI": "true"},
        modules=Path("/cache/lib/modules/6.12"),
    )
    assert "python -c 'print('\"'\"'a b'\"'\"')' > /dev/hvc0 2>&1 < /dev/null" in script
    assert "cd '/work/x y'" in script
    assert "export CI=true" in script
    assert "echo $? > /run/sriovkit-lab/exit-code" in script
    # Both igb functions are only visible with ARI off (QEMU's igb reports Next Function 0).
    assert "pci=noari" in KERNEL_ARGS


def test_stall_watch_notices_an_rcu_stall_report_split_across_reads(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    watch = _StallWatch(console)
    assert not watch.stalled()  # no log yet
    console.write_bytes(
        b"[    1.0] igb 0000:01:00.0: Intel(R) Gigabit Ethernet\n[   83.1] rcu: INFO: rcu_pre"
    )
    assert not watch.stalled()
    with console.open("ab") as fh:
        fh.write(b"empt detected stalls on CPUs/tasks:\n")
    assert watch.stalled()


def test_pump_stops_a_guest_whose_kernel_reports_an_rcu_stall(tmp_path: Path) -> None:
    # A stand-in for QEMU that prints, then goes quiet while its "kernel" logs an RCU stall.
    console = tmp_path / "console.log"
    console.write_bytes(b"")
    script = (
        f"echo booted; echo '[ 83.1] {RCU_STALL.decode()} on CPUs/tasks:' >> {console}; sleep 60"
    )
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE)
    out = io.BytesIO()
    try:
        started = time.monotonic()
        ended = _pump(proc, out, started + 30, _StallWatch(console))
        assert ended is Outcome.STALLED
        assert time.monotonic() - started < 15
        assert out.getvalue() == b"booted\n"
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_pump_stops_a_guest_that_falls_silent_only_with_a_silence_limit(tmp_path: Path) -> None:
    # A stand-in for a TCG guest whose vCPUs lost their timer: it prints, then nothing, and its
    # kernel log stays empty (seen 2026-12-03).
    console = tmp_path / "console.log"
    console.write_bytes(b"")
    for silence, expected in ((3.0, Outcome.STALLED), (None, Outcome.TIMEOUT)):
        script = "echo test 1 PASSED; sleep 60"
        proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE)
        out = io.BytesIO()
        try:
            started = time.monotonic()
            ended = _pump(proc, out, started + 8, _StallWatch(console), silence)
            assert ended is expected
            assert out.getvalue() == b"test 1 PASSED\n"
        finally:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def test_a_qemu_that_aborts_is_an_emulator_fault_not_a_death() -> None:
    assert classify(Outcome.DIED, None, -signal.SIGABRT) is Outcome.FAULTED
    assert classify(Outcome.DIED, None, 1) is Outcome.DIED
    assert classify(Outcome.DIED, 0, -signal.SIGABRT) is Outcome.EXITED  # the guest had finished
    assert classify(Outcome.STALLED, None, -signal.SIGKILL) is Outcome.STALLED
