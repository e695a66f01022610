"""The real agent process with `--device-plugin` against the test kubelet: the pools of a
simulated host registered and listed, Allocate answered, SIGTERM leaving no socket behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from fake_kubelet import FakeKubelet, dp_agent, short_root

from sriovkit.model.cni import parse_device_info
from sriovkit.sim import create_host

RESOURCE = "intel.com/igb_vfs"
CONFIG = {"resourceList": [{"resourceName": "igb_vfs", "selectors": {"drivers": ["igbvf"]}}]}
# The dual-port 82576 with 2 VFs per port (port 0: 10.0 and 10.2, port 1: 10.1 and 10.3).
VFS = ["0000:3b:10.0", "0000:3b:10.1", "0000:3b:10.2", "0000:3b:10.3"]


def test_agent_serves_the_pools_to_kubelet(tmp_path: Path) -> None:
    create_host(tmp_path / "host", ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        cmd = [
            sys.executable, "-m", "sriovkit.cli", "--root", str(tmp_path / "host"), "agent",
            "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(tmp_path / "state"),
            "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            (request,) = kubelet.wait_registered(1, timeout=30)
            assert request.resource_name == RESOURCE
            seen = kubelet.stream(RESOURCE).next(timeout=10)
            assert sorted(d.id for d in seen) == sorted(VFS)
            assert {d.health for d in seen} == {"Healthy"}
            answer = kubelet.plugin(RESOURCE).allocate([VFS[0], VFS[2]])
            envs = dict(answer.container_responses[0].envs)
            assert envs["PCIDEVICE_INTEL_COM_IGB_VFS"] == f"{VFS[0]},{VFS[2]}"
            # The device-info file the sriov CNI reads, under the simulated host's root.
            devinfo = tmp_path / "host/var/run/k8s.cni.cncf.io/devinfo/dp"
            info = devinfo / f"intel.com-igb_vfs-{VFS[2]}-device.json"
            assert str(parse_device_info(info.read_bytes(), str(info))) == VFS[2]
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert not list((kubelet_dir / "device-plugins").glob("sriovkit-*.sock"))


def test_preferred_allocation_follows_each_pools_policy(tmp_path: Path) -> None:
    """A `spread` pool answers VFs of two PFs (what a bond of VFs needs) even when kubelet
    lists one PF's first; a `pack` pool answers VFs of one PF even when kubelet alternates."""
    sim = create_host(tmp_path / "host", ["82576"], vfs=4, extras=False)
    pf0, pf1 = (sim.vfs(pf.address) for pf in sim.pfs)  # VF index order, per PF
    entries = [
        ("bond_vfs", "spread", "#0-1"),
        ("packed_vfs", "pack", "#2-3"),
    ]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": name, "preferredAllocation": policy,
         "selectors": {"pfNames": [f"{pf.netdev}{vfs}" for pf in sim.pfs]}}
        for name, policy, vfs in entries
    ]}))  # fmt: skip
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        try:
            with dp_agent(tmp_path / "host", config, kubelet_dir, tmp_path / "state"):
                kubelet.wait_registered(2, timeout=30)
                bond = kubelet.plugin("intel.com/bond_vfs")
                # kubelet's order: both of PF 0's first; spread still takes one of each PF.
                picked = bond.preferred([pf0[0], pf0[1], pf1[0], pf1[1]], 2)
                assert picked == [pf0[0], pf1[0]]
                packed = kubelet.plugin("intel.com/packed_vfs")
                # kubelet's order alternates PFs; pack still takes both from one PF.
                picked = packed.preferred([pf0[2], pf1[2], pf0[3], pf1[3]], 2)
                assert picked == [pf0[2], pf0[3]]
        finally:
            kubelet.stop()


def test_a_bad_config_stops_the_agent_with_one_line(tmp_path: Path) -> None:
    create_host(tmp_path / "host", ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    config.write_text('{"resourceList": [{"resourceName": "x y", "selectors": {}}]}')
    with short_root() as kubelet_dir:
        proc = subprocess.run(
            [sys.executable, "-m", "sriovkit.cli", "--root", str(tmp_path / "host"), "agent",
             "--socket", str(kubelet_dir / "agent.sock"), "--device-plugin",
             "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sriovkit: error: invalid resourceList[0]")
    assert "Traceback" not in proc.stderr


def test_the_agent_registers_through_kubelets_plugin_watcher(tmp_path: Path) -> None:
    create_host(tmp_path / "host", ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    with short_root() as kubelet_dir:
        (kubelet_dir / "plugins_registry").mkdir()  # kubelet's plugin watcher makes it
        kubelet = FakeKubelet(kubelet_dir).start()
        cmd = [
            sys.executable, "-m", "sriovkit.cli", "--root", str(tmp_path / "host"), "agent",
            "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(tmp_path / "state"),
            "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
            "--dp-registration", "watcher",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            registry = kubelet_dir / "plugins_registry"
            deadline = time.monotonic() + 30
            while not (registry.is_dir() and any(registry.iterdir())):
                assert time.monotonic() < deadline, "no socket in plugins_registry/"
                time.sleep(0.05)
            ((info, options),) = kubelet.probe_registry()
            assert (info.type, info.name) == ("DevicePlugin", RESOURCE)
            assert options is not None and options.get_preferred_allocation_available
            assert kubelet.requests == []  # nothing registered on kubelet.sock
            seen = kubelet.stream(RESOURCE).next(timeout=10)
            assert sorted(d.id for d in seen) == sorted(VFS)
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
