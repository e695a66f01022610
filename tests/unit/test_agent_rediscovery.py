"""Re-discovery and health without restart: the real agent process on a simulated host, changed
by sriovkit's own commands (`vfs --count`, `vf bind`) and the simulated netlink's carrier, each
change seen on ListAndWatch within 2 s (the simulated kernel's events reach the agent)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fake_kubelet import FakeKubelet, Seen, Stream, short_root

from sriovkit.sim import create_host
from sriovkit.sim.kernel import load_module
from sriovkit.sim.netlink import FakeNetlink

IGB = "intel.com/igb_vfs"
VFIO = "intel.com/vfio"
CONFIG = {
    "resourceList": [
        {"resourceName": "igb_vfs", "selectors": {"drivers": ["igbvf"]}},
        {"resourceName": "vfio", "selectors": {"drivers": ["vfio-pci"]}},
    ]
}
PF0_VFS = ["0000:3b:10.0", "0000:3b:10.2"]  # 82576 VFs interleave the two ports
PF1_VFS = ["0000:3b:10.1", "0000:3b:10.3"]


def _sk(host: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "sriovkit.cli", "--root", str(host), *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def _until(stream: Stream, ok: Callable[[list[Seen]], bool], within: float = 2.0) -> list[Seen]:
    deadline = time.monotonic() + within
    last: list[Seen] = []
    while time.monotonic() < deadline:
        try:
            last = stream.next(timeout=max(deadline - time.monotonic(), 0.01))
        except Exception:  # queue.Empty: no answer in time
            break
        if ok(last):
            return last
    raise AssertionError(f"no matching ListAndWatch answer within {within} s; last: {last}")


def _ids(seen: list[Seen]) -> set[str]:
    return {d.id for d in seen}


def _unhealthy(seen: list[Seen]) -> set[str]:
    return {d.id for d in seen if d.health != "Healthy"}


def test_changes_reach_listandwatch_without_restart(tmp_path: Path) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    load_module(host, "vfio-pci")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        cmd = [
            sys.executable, "-m", "sriovkit.cli", "--root", str(host), "agent",
            "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(tmp_path / "state"),
            "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            kubelet.wait_registered(2, timeout=30)
            igb, vfio = kubelet.stream(IGB), kubelet.stream(VFIO)
            first = igb.next(timeout=10)
            assert _ids(first) == set(PF0_VFS + PF1_VFS)
            assert not _unhealthy(first)
            assert vfio.next(timeout=10) == []

            # VF count: 3 VFs on port 0 -> one more device.
            _sk(host, "vfs", "enp59s0f0", "--count", "3")
            seen = _until(igb, lambda s: len(s) == 5)
            assert set(PF0_VFS + PF1_VFS) < _ids(seen)

            # netdevice -> vfio-pci: the VF moves to the vfio pool.
            _sk(host, "vf", "bind", PF1_VFS[0], "--driver", "vfio-pci")
            seen = _until(vfio, lambda s: _ids(s) == {PF1_VFS[0]})
            assert not _unhealthy(seen)
            _until(igb, lambda s: PF1_VFS[0] not in _ids(s))

            # PF 0 loses carrier: its VFs are Unhealthy, PF 1's are not; then back.
            FakeNetlink(host).set_carrier("enp59s0f0", False)
            seen = _until(igb, lambda s: bool(_unhealthy(s)))
            assert set(PF0_VFS) <= _unhealthy(seen)
            assert PF1_VFS[1] not in _unhealthy(seen)
            FakeNetlink(host).set_carrier("enp59s0f0", True)
            _until(igb, lambda s: len(s) == 4 and not _unhealthy(s))

            # Config change: the igb pool now takes port 1 only.
            changed = json.loads(json.dumps(CONFIG))
            changed["resourceList"][0]["selectors"]["pfNames"] = ["enp59s0f1"]
            config.write_text(json.dumps(changed))
            _until(igb, lambda s: _ids(s) == {PF1_VFS[1]})
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
