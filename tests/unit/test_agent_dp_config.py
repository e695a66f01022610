"""Config edits reaching the real agent process without a restart: a resource added is served
and registered, one removed has its endpoint go, a refused config keeps the previous one, and a
ConfigMap volume (YAML, `..data` symlink swap) is followed. Each test waits for the resulting
state (a registration, a list, a log line), never for a time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fake_kubelet import FakeKubelet, Seen, Stream, short_root

from sriovkit.sim import create_host

PORT0 = {"resourceName": "port0", "selectors": {"pfNames": ["enp59s0f0"]}}
PORT1 = {"resourceName": "port1", "selectors": {"pfNames": ["enp59s0f1"]}}
PF0_VFS = {"0000:3b:10.0", "0000:3b:10.2"}  # 82576 VFs interleave the two ports
PF1_VFS = {"0000:3b:10.1", "0000:3b:10.3"}
WAIT = 30.0  # a bound for a broken agent, not a latency claim


class AgentLog:
    """The agent's stderr, read by a thread as it is written, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self._stderr = proc.stderr
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stderr:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str) -> str:
        with self._cond:
            assert self._cond.wait_for(lambda: any(text in x for x in self._lines), WAIT), (
                f"no log line with {text!r}:\n{self.text()}"
            )
            return next(x for x in self._lines if text in x)

    def close(self) -> None:
        """After the process ended: the rest of its output read, the pipe closed."""
        self._thread.join(10)
        self._stderr.close()

    def text(self) -> str:
        self._thread.join(0)
        return "".join(self._lines)


@contextmanager
def agent(host: Path, config: Path, kubelet_dir: Path) -> Iterator[AgentLog]:
    """The real agent with the device plugin; SIGTERM at exit must end it cleanly."""
    cmd = [
        sys.executable, "-m", "sriovkit.cli", "--root", str(host), "agent",
        "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(host / "state"),
        "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    log = AgentLog(proc)
    try:
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        assert proc.returncode == 0, log.text()
        assert "Traceback" not in log.text()


def _until(stream: Stream, ok: Callable[[set[str]], bool]) -> set[str]:
    """The first ListAndWatch answer whose device ids satisfy `ok`."""
    while True:
        seen: list[Seen] = stream.next(timeout=WAIT)
        ids = {d.id for d in seen}
        if ok(ids):
            return ids


def _eventually(ok: Callable[[], bool]) -> None:
    """Wait for a state the agent reaches after the one just seen (a socket removed after the
    stream ended); the bound only guards a broken agent."""
    deadline = time.monotonic() + WAIT
    while not ok():
        assert time.monotonic() < deadline, "the agent never got there"
        time.sleep(0.02)


def _write(path: Path, *entries: dict[str, object]) -> None:
    """Replace the file the way editors and config tools do: write beside it, rename over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"resourceList": list(entries)}))
    os.replace(tmp, path)


def test_resources_added_and_removed_while_the_agent_runs(tmp_path: Path) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    _write(config, PORT0)
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        sockets = kubelet_dir / "device-plugins"
        try:
            with agent(host, config, kubelet_dir):
                port0 = kubelet.wait_stream("intel.com/port0")
                assert _until(port0, bool) == PF0_VFS

                # Added: its own socket, registered, its devices listed.
                _write(config, PORT0, PORT1)
                port1 = kubelet.wait_stream("intel.com/port1")
                assert _until(port1, bool) == PF1_VFS
                assert (sockets / "sriovkit-intel.com_port1.sock").is_socket()
                assert [r.resource_name for r in kubelet.requests] == [
                    "intel.com/port0", "intel.com/port1",
                ]  # fmt: skip

                # Removed: its list emptied, then its stream ends and its socket goes.
                _write(config, PORT1)
                _until(port0, lambda ids: not ids)
                assert port0.ended.wait(WAIT)
                _eventually(lambda: not (sockets / "sriovkit-intel.com_port0.sock").exists())
                # The other resource is untouched: same stream, still served.
                assert not port1.ended.is_set()
                assert kubelet.stream("intel.com/port1") is port1
                options = kubelet.plugin("intel.com/port1").options()
                assert options.get_preferred_allocation_available
        finally:
            kubelet.stop()


def test_a_refused_config_keeps_the_previous_one_serving(tmp_path: Path) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    _write(config, PORT0)
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        try:
            with agent(host, config, kubelet_dir) as log:
                port0 = kubelet.wait_stream("intel.com/port0")
                assert _until(port0, bool) == PF0_VFS
                # Would move port0 to port 1 and add a resource, but its second entry is bad.
                bad = {"resourceName": "vfio", "selectors": {"drivers": "vfio-pci"}}
                _write(config, {**PORT0, "selectors": {"pfNames": ["enp59s0f1"]}}, bad)
                line = log.wait_for("refused")
                assert (
                    "invalid resourceList[1] (vfio).selectors.drivers: expected a list of "
                    "strings, got a string" in line
                )
                assert line.startswith(f"sriovkit-agent: ERROR device plugin: config {config} ")
                # Then a fixed edit is taken: the agent kept running and still watches.
                _write(config, {**PORT0, "selectors": {"pfNames": ["enp59s0f1"]}})
                assert _until(port0, lambda ids: ids != PF0_VFS) == PF1_VFS
                assert [r.resource_name for r in kubelet.requests] == ["intel.com/port0"]
        finally:
            kubelet.stop()


def _configmap_version(volume: Path, stamp: str, text: str) -> None:
    """kubelet's atomic writer: a new directory, `..data_tmp` -> it, renamed over `..data`."""
    new = volume / f"..{stamp}"
    new.mkdir()
    (new / "config.yaml").write_text(text)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.symlink(new.name, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")
    if old is not None:
        shutil.rmtree(volume / old)


def test_a_yaml_configmap_volume_is_followed_through_its_symlink_swap(tmp_path: Path) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    volume = tmp_path / "pcidp"
    volume.mkdir()
    _configmap_version(volume, "2026_12_03_17_00_00.1", (
        "# port 0's VFs, for bonds: one per PF is not possible with one PF\n"
        "resourceList:\n"
        "  - resourceName: port0\n"
        "    selectors: {vendors: [8086], pfNames: [enp59s0f0]}\n"
    ))  # fmt: skip
    os.symlink("..data/config.yaml", volume / "config.yaml")
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        try:
            with agent(host, volume / "config.yaml", kubelet_dir):
                port0 = kubelet.wait_stream("intel.com/port0")
                assert _until(port0, bool) == PF0_VFS
                _configmap_version(volume, "2026_12_03_17_05_00.2", (
                    "resourceList:\n"
                    "  - resourceName: port0\n"
                    "    selectors: {vendors: [8086], pfNames: [enp59s0f0, enp59s0f1]}\n"
                    "  - resourceName: none\n"
                    "    selectors: {drivers: [vfio-pci]}\n"
                ))  # fmt: skip
                assert _until(port0, lambda ids: ids != PF0_VFS) == PF0_VFS | PF1_VFS
                assert _until(kubelet.wait_stream("intel.com/none"), lambda ids: True) == set()
        finally:
            kubelet.stop()


def test_a_yaml_config_serves_what_the_json_one_serves(tmp_path: Path) -> None:
    """The same document as config.json and as config.yaml: the same resources registered, the
    same ListAndWatch lists (ids, health, NUMA), the same preferred allocation."""
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    doc = {"resourceList": [
        {**PORT0, "preferredAllocation": "pack"},
        {"resourceName": "any_igb", "resourcePrefix": "example.com", "excludeTopology": True,
         "selectors": [{"vendors": ["8086"], "drivers": ["igbvf"]}]},
    ]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(doc))
    (tmp_path / "config.yaml").write_text(
        "# same document, YAML form\n"
        "resourceList:\n"
        "  - resourceName: port0\n"
        "    preferredAllocation: pack\n"
        "    selectors: {pfNames: [enp59s0f0]}\n"
        "  - resourceName: any_igb\n"
        "    resourcePrefix: example.com\n"
        "    excludeTopology: true\n"
        "    selectors:\n"
        "      - vendors: [8086]\n"
        "        drivers: [igbvf]\n"
    )
    served = []
    for name in ("config.json", "config.yaml"):
        with short_root() as kubelet_dir:
            kubelet = FakeKubelet(kubelet_dir).start()
            try:
                with agent(host, tmp_path / name, kubelet_dir):
                    kubelet.wait_registered(2, timeout=WAIT)
                    lists = {
                        r.resource_name: sorted(
                            (d.id, d.health, d.numa)
                            for d in kubelet.stream(r.resource_name).next(timeout=WAIT)
                        )
                        for r in kubelet.requests
                    }
                    picked = kubelet.plugin("intel.com/port0").preferred(sorted(PF0_VFS), 1)
                    served.append((lists, picked))
            finally:
                kubelet.stop()
    assert served[0] == served[1]
    lists = served[1][0]
    assert sorted(lists) == ["example.com/any_igb", "intel.com/port0"]
    assert {d[0] for d in lists["example.com/any_igb"]} == PF1_VFS  # port 0's went to port0
    assert {d[2] for d in lists["example.com/any_igb"]} == {()}  # excludeTopology
