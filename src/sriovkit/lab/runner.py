"""Boot one lab guest, run one command in it, stream its output, and return its exit code.

The guest: q35 with an Intel IOMMU, a PCIe root port carrying a dual-port emulated 82576 (`igb`,
functions 00.0 and 00.1, cabled to each other through a QEMU hub; no host network), the host's `/`
read-only over 9p with a tmpfs overlay, and a read-write 9p share of a host directory for results.
The command's output comes back on a virtio console connected to QEMU's stdout, the kernel log goes
to `console.log` in the share, the exit code to `exit-code` there.

The run never hangs: QEMU is killed at the deadline, when the runner is interrupted, and (through
PR_SET_PDEATHSIG) when the runner dies; it needs no terminal (stdin is /dev/null).
"""

from __future__ import annotations

import ctypes
import enum
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sriovkit.lab import initramfs
from sriovkit.lab.setup import LabAssets

EXIT_TIMEOUT = 124
EXIT_GUEST_DIED = 125
GUEST_SHARE = initramfs.SHARE_MOUNT
_PR_SET_PDEATHSIG = 1

# `pci=noari`: QEMU's igb reports ARI with "Next Function 0", so without it the guest never sees
# function 1. `intel_iommu=on iommu=pt`: each VF gets its own IOMMU group (vfio-pci works).
# `panic=-1` + QEMU's -no-reboot: a dying guest ends QEMU at once instead of hanging.
# `nohz=off highres=off`: the guest's timer runs in periodic mode. Under TCG a vCPU going idle
# with a one-shot (TSC-deadline) timer armed sometimes never got that interrupt: the guest saw
# "rcu_preempt kthread timer wakeup didn't happen ... Possible timer handling issue on cpu=0",
# every RCU grace period then took ~21 s and a lab session crawled past its timeout. A periodic
# timer re-fires on its own, so one lost interrupt costs one tick, not the vCPU.
KERNEL_ARGS = (
    "console=ttyS0 quiet pci=noari intel_iommu=on iommu=pt panic=-1 "
    "mitigations=off nohz=off highres=off rdinit=/init"
)


class Outcome(enum.Enum):
    """How a guest run ended."""

    EXITED = "exited"
    TIMEOUT = "timeout"
    DIED = "died"
    STALLED = "stalled"  # the guest kernel reported an RCU stall: it would crawl, so it was stopped
    FAULTED = "faulted"  # QEMU itself aborted (an assertion in its TCG code): an emulator fault


@dataclass(frozen=True, slots=True)
class GuestResult:
    """The outcome of one guest run: the command's own exit code when it EXITED."""

    outcome: Outcome
    exit_code: int
    wall: float
    share: Path

    @property
    def console_log(self) -> Path:
        """The guest kernel's log (serial console)."""
        return self.share / "console.log"

    @property
    def qemu_log(self) -> Path:
        """QEMU's own stderr."""
        return self.share / "qemu.log"


def pick_accel() -> str:
    """`kvm` only where it really works for a stock kernel, else `tcg`.

    /dev/kvm can exist without usable hardware virtualisation (no vmx/svm flags, or the kvm_pvm
    module): QEMU then aborts or the guest dies with "KVM internal error". `$SRIOVKIT_LAB_ACCEL`
    overrides.
    """
    forced = os.environ.get("SRIOVKIT_LAB_ACCEL")
    if forced:
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or Path("/sys/module/kvm_pvm").exists():
        return "tcg"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    return "kvm" if (" vmx" in flags or " svm" in flags) else "tcg"


def qemu_argv(
    assets: LabAssets, share: Path, *, accel: str, memory_mb: int = 2048, cpus: int = 2
) -> list[str]:
    """The QEMU command line for one lab guest exchanging files through `share`."""
    # Keep RAM <= 2.5 GB: with more, the VF BARs land above 4 GB and each sriov_numvfs write takes
    # ~5 s instead of ~1 s under TCG.
    ninep = "local,security_model=none,multidevs=remap"
    return [
        str(assets.qemu), "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
        "-machine", "q35", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(cpus), "-m", str(memory_mb),
        "-kernel", str(assets.kernel), "-initrd", str(assets.initramfs), "-append", KERNEL_ARGS,
        "-serial", f"file:{share / 'console.log'}",
        "-device", "virtio-serial-pci",
        "-chardev", "stdio,id=out,signal=off", "-device", "virtconsole,chardev=out",
        "-fsdev", f"{ninep},id=root,path=/,readonly=on",
        "-device", f"virtio-9p-pci,fsdev=root,mount_tag={initramfs.ROOT_TAG}",
        "-fsdev", f"{ninep},id=share,path={share}",
        "-device", f"virtio-9p-pci,fsdev=share,mount_tag={initramfs.SHARE_TAG}",
        # The IOMMU must come before the devices it translates for.
        "-device", "intel-iommu,intremap=off",
        "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1",
        "-netdev", "hubport,id=port0,hubid=0", "-netdev", "hubport,id=port1,hubid=0",
        "-device", "igb,bus=rp1,addr=00.0,multifunction=on,netdev=port0,romfile=",
        "-device", "igb,bus=rp1,addr=00.1,netdev=port1,romfile=",
    ]


def stage2_script(
    command: Sequence[str], *, cwd: Path, env: Mapping[str, str], modules: Path
) -> str:
    """The guest's PID 1 after switch_root (the host's /bin/sh): mounts, modules, the command."""
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    share = GUEST_SHARE
    return f"""#!/bin/sh
# sriovkit lab guest, stage 2 (PID 1 in the host's userspace)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 SRIOVKIT_IN_LAB=1 SRIOVKIT_LAB_SHARE={share}
{exports}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
release=$(uname -r)
# The guest kernel's modules come from the lab cache: modprobe (bonding, 8021q, vfio-pci) works.
mkdir -p /lib/modules/$release && mount --bind {shlex.quote(str(modules))} /lib/modules/$release
hostname sriovkit-lab 2>/dev/null
ip link set lo up 2>/dev/null
stty -onlcr < /dev/hvc0 2>/dev/null
cd {shlex.quote(str(cwd))} || echo "sriovkit-lab: no directory {cwd} in the guest" > /dev/hvc0
{shlex.join(command)} > /dev/hvc0 2>&1 < /dev/null
echo $? > {share}/exit-code
sync
echo b > /proc/sysrq-trigger
sleep 10
"""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the runner is SIGKILLed, QEMU goes too.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# What the guest kernel prints when a grace period could not end (see KERNEL_ARGS): under TCG
# every later grace period then takes ~21 s, so the session is stopped rather than left to crawl.
RCU_STALL = b"rcu: INFO: rcu_preempt detected stalls"


class _StallWatch:
    """Reads the guest's console log as it grows and notices an RCU stall report."""

    def __init__(self, console: Path) -> None:
        self.console = console
        self.offset = 0
        self.tail = b""

    def stalled(self) -> bool:
        try:
            with self.console.open("rb") as fh:
                fh.seek(self.offset)
                new = fh.read()
        except OSError:
            return False
        self.offset += len(new)
        text, self.tail = self.tail + new, (self.tail + new)[-len(RCU_STALL) :]
        return RCU_STALL in text


def _pump(
    proc: subprocess.Popen[bytes],
    out: BinaryIO,
    deadline: float,
    watch: _StallWatch,
    silence: float | None = None,
) -> Outcome | None:
    """Copy QEMU's stdout to `out` until it closes (None); TIMEOUT at the deadline, STALLED
    when the guest kernel reports an RCU stall or, with `silence` set, when the guest printed
    nothing for that long.

    The silence rule is for commands that print steadily (pytest -v, a line per test): a TCG
    guest was seen (2026-12-03) to fall idle mid-test with an empty kernel log, both vCPUs
    waiting for a timer that never came, and no RCU report to notice it by.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    next_look = time.monotonic() + 2.0
    last_output = time.monotonic()
    while True:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            return Outcome.TIMEOUT
        if now >= next_look:
            next_look = now + 2.0
            if watch.stalled():
                return Outcome.STALLED
            if silence is not None and now - last_output > silence:
                return Outcome.STALLED
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        last_output = time.monotonic()
        out.write(chunk)
        out.flush()


def run_in_guest(
    assets: LabAssets,
    command: Sequence[str],
    share: Path,
    *,
    out: BinaryIO,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 900.0,
    accel: str | None = None,
    silence: float | None = None,
) -> GuestResult:
    """Boot a guest, run `command` in `cwd` there, stream its output to `out`, and say how it ended.

    `share` (an existing, preferably empty host directory) is the guest's `GUEST_SHARE`; results
    written there by the command are there after the call. Interrupting the call (KeyboardInterrupt
    or any exception) kills QEMU and lets the exception through.
    """
    started = time.monotonic()
    share.mkdir(parents=True, exist_ok=True)
    (share / "exit-code").unlink(missing_ok=True)
    (share / "stage2.sh").write_text(
        stage2_script(command, cwd=cwd, env=env or {}, modules=assets.modules)
    )
    argv = qemu_argv(assets, share, accel=accel or pick_accel())
    # QEMU's own warnings (e.g. "hub 0 is not connected to host network", which is the point) go
    # to a file beside the kernel log; the caller shows it when the guest died.
    with (share / "qemu.log").open("wb") as errlog:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errlog,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
    outcome = Outcome.DIED
    try:
        watch = _StallWatch(share / "console.log")
        ended = _pump(proc, out, started + timeout, watch, silence)
        if ended is None:
            proc.wait(timeout=max(1.0, started + timeout - time.monotonic()))
        else:
            outcome = ended
    except subprocess.TimeoutExpired:
        outcome = Outcome.TIMEOUT
    finally:
        # Also on KeyboardInterrupt or any error: never leave a QEMU behind.
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    code = _read_exit_code(share)
    outcome = classify(outcome, code, proc.returncode)
    if outcome is Outcome.EXITED and code is not None:
        return GuestResult(Outcome.EXITED, code, time.monotonic() - started, share)
    fallback = EXIT_TIMEOUT if outcome is Outcome.TIMEOUT else EXIT_GUEST_DIED  # STALLED too
    return GuestResult(outcome, fallback, time.monotonic() - started, share)


def classify(outcome: Outcome, exit_code: int | None, qemu_status: int | None) -> Outcome:
    """How a session ended, from what the pump saw, the guest's exit code file and QEMU's status.

    A QEMU that ended without a guest exit code died; one killed by SIGABRT aborted on an
    assertion of its own (seen under TCG: "iotlb_to_section: Assertion `section_index <
    d->map.sections_nb' failed" in the middle of a test): an emulator fault, not a result.
    """
    if outcome is Outcome.DIED and exit_code is not None:
        return Outcome.EXITED
    if outcome is Outcome.DIED and qemu_status == -signal.SIGABRT:
        return Outcome.FAULTED
    return outcome


def _read_exit_code(share: Path) -> int | None:
    try:
        return int((share / "exit-code").read_text().strip())
    except (OSError, ValueError):
        return None
