"""The device plugin on real igb VFs: the real agent process (`sriovkit agent --device-plugin`)
against the test kubelet, in the lab guest.

One test (guest time is expensive; every lab test starts and ends with 0 VFs): pools discovered
from the igbvf VFs; `sriov_numvfs` changed and a VF bound to vfio-pci while the agent runs, both
on the ListAndWatch stream without restart; a PF taken down (its admin-up VF netdevs lose carrier)
and brought back, Unhealthy then Healthy; Allocate of a netdevice VF writes the device-info file,
and a `sriov` CNI ADD given only that file (`runtimeConfig.CNIDeviceInfoFile`) moves the VF into a
netns, DEL gives it back. Timings are printed (uncaptured) at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The test kubelet lives with the unit tests (tests/unit has no package __init__).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from fake_kubelet import FakeKubelet, Seen, Stream, short_root

from sriovkit.model.cni import parse_device_info

pytestmark = pytest.mark.lab

PCI = Path("/sys/bus/pci/devices")
PFS = ("0000:01:00.0", "0000:01:00.1")
IGB = "intel.com/igb_vfs"
VFIO = "intel.com/vfio"
CONFIG = {
    "resourceList": [
        {"resourceName": "igb_vfs", "selectors": {"drivers": ["igbvf"]}},
        {"resourceName": "vfio", "selectors": {"drivers": ["vfio-pci"]}},
    ]
}
# The agent's device-info directory with --root / (deviceplugin.devinfo.DEFAULT_DEVINFO_DIR).
DEVINFO = Path("/var/run/k8s.cni.cncf.io/devinfo/dp")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def _netdev(dev: str) -> str:
    return sorted((PCI / dev / "net").iterdir())[0].name


def _vfs(pf: str) -> list[str]:
    links = sorted((PCI / pf).glob("virtfn*"), key=lambda p: int(p.name[6:]))
    return [link.resolve().name for link in links]


def _carrier(name: str) -> bool:
    try:
        return Path(f"/sys/class/net/{name}/carrier").read_text().strip() == "1"
    except OSError:  # EINVAL while admin down
        return False


def _wait(ok: Callable[[], bool], within: float, what: str) -> float:
    start = time.monotonic()
    while not ok():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.1)
    return time.monotonic() - start


class CarrierSampler:
    """Polls the carrier of some netdevs every 10 ms from now on, noting when each first reads
    `want_up`: the driver's own timing, to tell it from the agent's."""

    def __init__(self, names: list[str], *, want_up: bool) -> None:
        self.start = time.monotonic()
        self.seen: dict[str, float] = {}
        self._names, self._want = names, want_up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.seen) < len(self._names):
            for name in self._names:
                if name not in self.seen and _carrier(name) == self._want:
                    self.seen[name] = time.monotonic() - self.start
            time.sleep(0.01)

    def result(self, within: float, name: str | None = None) -> float:
        """Seconds to `name`'s change (the last of all when None); -1 when not seen."""
        self._thread.join(within + 5)
        self._stop.set()
        self._thread.join(5)
        if name is not None:
            return self.seen.get(name, -1.0)
        return max(self.seen.values()) if len(self.seen) == len(self._names) else -1.0


def _ids(seen: list[Seen]) -> set[str]:
    return {d.id for d in seen}


def _unhealthy(seen: list[Seen]) -> set[str]:
    return {d.id for d in seen if d.health != "Healthy"}


class Watch:
    """The latest ListAndWatch answer of one stream: `until` waits for it to satisfy `ok`."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.last: list[Seen] | None = None
        self.answers = 0

    def _take(self, timeout: float) -> bool:
        try:
            self.last = self.stream.next(timeout=timeout)
        except queue.Empty:
            return False
        self.answers += 1
        return True

    def until(self, ok: Callable[[list[Seen]], bool], within: float) -> tuple[list[Seen], float]:
        """(the first latest answer that satisfies `ok`, seconds waited)."""
        start = time.monotonic()
        deadline = start + within
        while self._take(0.001):  # drain what is queued: judge the latest state
            pass
        while True:
            if self.last is not None and ok(self.last):
                return self.last, time.monotonic() - start
            left = deadline - time.monotonic()
            if left <= 0 or not self._take(left):
                raise AssertionError(
                    f"no matching ListAndWatch answer within {within} s; last: {self.last}"
                )


def _cni(command: str, netns: str, conf: dict[str, object], state: Path) -> dict[str, Any]:
    from sriovkit.cni.dispatch import execute  # noqa: PLC0415

    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "dplab-ctr",
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/usr/lib/cni",
        "SRIOVKIT_STATE_DIR": str(state),
    }
    code, out = execute(env, json.dumps(conf).encode())
    assert code == 0, out.decode()
    return json.loads(out) if out.strip() else {}


def test_agent_follows_real_vfs(
    tmp_path: Path,
    sriovkit: Callable[..., subprocess.CompletedProcess[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if os.geteuid() != 0 or not all((PCI / pf / "sriov_totalvfs").exists() for pf in PFS):
        pytest.skip("needs root and the lab's two igb PFs (run inside the QEMU lab guest)")
    subprocess.run(["modprobe", "vfio-pci"], check=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    pf_names = [_netdev(pf) for pf in PFS]
    was_up = {n: int(Path(f"/sys/class/net/{n}/flags").read_text(), 16) & 1 for n in pf_names}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG))
    netns = f"dp-{uuid.uuid4().hex[:6]}"
    cni_state = tmp_path / "cni"
    devinfo_files: list[Path] = []
    proc: subprocess.Popen[str] | None = None
    kubelet: FakeKubelet | None = None
    added: dict[str, object] | None = None
    err_log = tmp_path / "agent.err"
    try:
        # PFs up with carrier first (VFs of an admin-up PF without carrier are Unhealthy).
        for name in pf_names:
            _ip("link", "set", name, "up")
        timings["PF carrier after up"] = max(
            _wait(lambda n=n: _carrier(n), 30, f"{n} carrier") for n in pf_names
        )
        for pf in PFS:
            (PCI / pf / "sriov_numvfs").write_text("2")
        pf0_vfs, pf1_vfs = _vfs(PFS[0]), _vfs(PFS[1])
        assert len(pf0_vfs) == len(pf1_vfs) == 2

        with short_root("skdplab") as kubelet_dir:
            kubelet = FakeKubelet(kubelet_dir).start()
            cmd = [
                sys.executable, "-m", "sriovkit.cli", "agent",
                "--socket", str(kubelet_dir / "a.sock"), "--state-dir", str(tmp_path / "state"),
                "--device-plugin", "--dp-config", str(config),
                "--kubelet-dir", str(kubelet_dir),
            ]  # fmt: skip
            started = time.monotonic()
            with err_log.open("w") as err:
                proc = subprocess.Popen(cmd, stderr=err, text=True)
            try:
                kubelet.wait_registered(2, timeout=120)
                timings["agent start -> both registered"] = time.monotonic() - started
                igb, vfio = Watch(kubelet.stream(IGB)), Watch(kubelet.stream(VFIO))

                # 1. pools discovered: the first answer is exactly the 4 igbvf VFs, Healthy.
                igb._take(30)
                timings["agent start -> first ListAndWatch answer"] = time.monotonic() - started
                first = igb.last
                assert first is not None
                assert _ids(first) == set(pf0_vfs + pf1_vfs)
                assert not _unhealthy(first), first
                vfio._take(30)
                assert vfio.last == []

                # 2. sriov_numvfs 2 -> 0 -> 3 on PF0 while the agent runs.
                t0 = time.monotonic()
                (PCI / PFS[0] / "sriov_numvfs").write_text("0")
                (PCI / PFS[0] / "sriov_numvfs").write_text("3")
                timings["numvfs 0 then 3 (sysfs writes)"] = time.monotonic() - t0
                pf0_vfs = _vfs(PFS[0])
                assert len(pf0_vfs) == 3
                want = set(pf0_vfs + pf1_vfs)
                seen, waited = igb.until(lambda s: _ids(s) == want and not _unhealthy(s), 10)
                timings["numvfs=3 written -> on the stream"] = waited

                # 3. a PF1 VF bound to vfio-pci: it leaves the netdevice pool, joins vfio.
                moved = pf1_vfs[0]
                t0 = time.monotonic()
                sriovkit("vf", "bind", moved, "--driver", "vfio-pci")
                timings["vf bind vfio-pci (CLI process)"] = time.monotonic() - t0
                assert (PCI / moved / "driver").resolve().name == "vfio-pci"
                seen, waited = vfio.until(lambda s: _ids(s) == {moved}, 10)
                timings["vfio bound -> on vfio stream"] = waited
                assert not _unhealthy(seen), seen
                seen, waited = igb.until(lambda s: _ids(s) == want - {moved}, 10)
                timings["vfio bound -> gone from igb stream"] = waited
                assert not _unhealthy(seen), seen

                # 4. PF0's VF netdevs admin up (carrier from the PF), then PF0 down and up.
                vf_names = {vf: _netdev(vf) for vf in pf0_vfs}
                for name in vf_names.values():
                    _ip("link", "set", name, "up")
                timings["VF netdevs up -> carrier"] = max(
                    _wait(lambda n=n: _carrier(n), 30, f"VF {n} carrier") for n in vf_names.values()
                )
                igb.until(lambda s: not _unhealthy(s), 10)
                # The driver's carrier change vs the stream: a sampler thread polls sysfs.
                sampler = CarrierSampler(list(vf_names.values()), want_up=False)
                _ip("link", "set", pf_names[0], "down")
                timings["PF0 down (ip link set)"] = time.monotonic() - sampler.start
                seen, waited = igb.until(lambda s: set(pf0_vfs) <= _unhealthy(s), 10)
                timings["PF0 down -> its VFs Unhealthy on the stream"] = (
                    time.monotonic() - sampler.start
                )
                timings["PF0 down -> last VF carrier off (sysfs)"] = sampler.result(waited)
                assert not (_unhealthy(seen) & set(pf1_vfs)), seen
                sampler = CarrierSampler([pf_names[0], *vf_names.values()], want_up=True)
                _ip("link", "set", pf_names[0], "up")
                timings["PF0 up (ip link set)"] = time.monotonic() - sampler.start
                seen, waited = igb.until(lambda s: not _unhealthy(s), 45)
                timings["PF0 up -> its VFs Healthy on the stream"] = (
                    time.monotonic() - sampler.start
                )
                timings["PF0 up -> PF0 carrier on (sysfs)"] = sampler.result(waited, pf_names[0])
                timings["PF0 up -> last VF carrier on (sysfs)"] = sampler.result(waited)
                assert _ids(seen) == want - {moved}

                # 5. Allocate a netdevice VF -> device-info file -> sriov CNI ADD, DEL.
                vf = pf0_vfs[0]
                vf_name = vf_names[vf]
                t0 = time.monotonic()
                answer = kubelet.plugin(IGB).allocate([vf])
                timings["Allocate"] = time.monotonic() - t0
                envs = dict(answer.container_responses[0].envs)
                assert envs["PCIDEVICE_INTEL_COM_IGB_VFS"] == vf
                info = DEVINFO / f"intel.com-igb_vfs-{vf}-device.json"
                devinfo_files.append(info)
                assert str(parse_device_info(info.read_bytes(), str(info))) == vf
                _ip("netns", "add", netns)
                conf: dict[str, object] = {
                    "cniVersion": "1.1.0",
                    "name": "lab-dp",
                    "type": "sriov",
                    "runtimeConfig": {"CNIDeviceInfoFile": str(info)},
                }
                t0 = time.monotonic()
                result = _cni("ADD", netns, conf, cni_state)
                added = conf
                timings["CNI ADD"] = time.monotonic() - t0
                assert result["interfaces"][0]["name"] == "net1"
                assert result["interfaces"][0]["pciID"] == vf
                assert "net1" in _ip("-n", netns, "-br", "link")
                assert vf_name not in _ip("-br", "link").split(), "the VF left the host netns"
                try:
                    seen, _ = igb.until(lambda s: vf not in _ids(s), 2)
                    notes.append(f"the VF in the pod left the stream: {seen}")
                except AssertionError:
                    in_pod = [d for d in igb.last or [] if d.id == vf]
                    notes.append(f"the VF in the pod stays on the stream as {in_pod}")
                t0 = time.monotonic()
                _cni("DEL", netns, conf, cni_state)
                added = None
                timings["CNI DEL"] = time.monotonic() - t0
                assert vf_name in _ip("-br", "link").split(), "the VF netdev is back by name"
                assert "net1" not in _ip("-n", netns, "-br", "link")
                seen, _ = igb.until(lambda s: _ids(s) == want - {moved}, 10)
                notes.append(f"ListAndWatch answers: igb {igb.answers}, vfio {vfio.answers}")
            finally:
                kubelet.stop()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
        err_text = err_log.read_text()
        assert proc.returncode == 0, err_text
        assert "Traceback" not in err_text, err_text
    finally:
        if added is not None:
            with contextlib.suppress(Exception):
                _cni("DEL", netns, added, cni_state)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for path in devinfo_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for pf in PFS:  # VFs back to 0 (the conftest does it too) before the PFs' admin state
            with contextlib.suppress(OSError):
                (PCI / pf / "sriov_numvfs").write_text("0")
        for name, up in was_up.items():
            subprocess.run(["ip", "link", "set", name, "up" if up else "down"], check=False)
        with capsys.disabled():
            print("\ndevice plugin lab timings (s):")
            for what, secs in timings.items():
                print(f"  {what}: {secs:.2f}")
            for note in notes:
                print(f"  note: {note}")
            if err_log.exists():
                print("  agent stderr (tail):")
                for line in err_log.read_text().splitlines()[-15:]:
                    print(f"    {line}")
