"""Device plugin health on a veth-mode host: a VF netdev (a real veth end) losing carrier when its
peer goes down is Unhealthy on the real agent's ListAndWatch stream, and Healthy after; the
change reaches the agent through the real kernel's rtnetlink events."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fake_kubelet import FakeKubelet, Seen, Stream, short_root

from sriovkit.sim.veth import VethHost

pytestmark = pytest.mark.root
if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 to create veth pairs", allow_module_level=True)

RESOURCE = "intel.com/igb_vfs"
CONFIG = {"resourceList": [{"resourceName": "igb_vfs", "selectors": {"drivers": ["igbvf"]}}]}


def _until(stream: Stream, vf: str, health: str, within: float = 2.0) -> list[Seen]:
    deadline = time.monotonic() + within
    last: list[Seen] = []
    while time.monotonic() < deadline:
        try:
            last = stream.next(timeout=max(deadline - time.monotonic(), 0.01))
        except Exception:  # queue.Empty
            break
        if {d.id: d.health for d in last}.get(vf) == health:
            return last
    raise AssertionError(f"{vf} not {health} within {within} s; last: {last}")


def test_vf_carrier_loss_is_unhealthy_then_healthy(host: VethHost, tmp_path: Path) -> None:
    pair = host.pairs[0]
    subprocess.run(["ip", "link", "set", pair.name, "up"], check=True)
    subprocess.run(["ip", "link", "set", pair.peer, "up"], check=True)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        cmd = [
            sys.executable, "-m", "sriovkit.cli", "--root", str(host.root), "agent",
            "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(tmp_path / "state"),
            "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            kubelet.wait_registered(1, timeout=30)
            stream = kubelet.stream(RESOURCE)
            first = stream.next(timeout=10)
            assert {d.health for d in first} == {"Healthy"}
            subprocess.run(["ip", "link", "set", pair.peer, "down"], check=True)
            seen = _until(stream, pair.vf, "Unhealthy")
            assert sum(d.health == "Unhealthy" for d in seen) == 1
            subprocess.run(["ip", "link", "set", pair.peer, "up"], check=True)
            _until(stream, pair.vf, "Healthy")
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
