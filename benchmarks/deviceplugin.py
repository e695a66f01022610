"""Device plugin on a 4,096-VF simulated host: start-up, re-scan cost, event -> stream latency.

    .venv/bin/python benchmarks/deviceplugin.py [--host DIR] [--rounds 20] [--veth-vfs 64]

Builds (or reuses, with `--host`) a simulated host of eight E810 PFs with 256 VFs each, then
prints:
  - in process: `Discovery` construction (config, inventory, pools, link states: what stands
    between agent start and a complete first answer), a full pass, a pass over one PF's family
    (what a device event on it costs), a links-only pass (a dump) and a pass for one named link
    (what a carrier event costs); medians;
  - the real agent process against the test kubelet (`tests/unit/fake_kubelet.py`): time from
    exec to the first ListAndWatch answer, and the CPU the agent used until then (on a loaded
    machine the wall time varies with the load; the CPU time much less);
  - a PF's carrier flipped through the simulated netlink, `--rounds` times: latency from the
    change being published to the answer carrying it on the stream (median and worst), and the
    publisher's own call; then that PF's `sriov_numvfs` written 0 and 256 three times each (a
    device event: the PF's family re-read), latency from the write to the answer;
  - as root with iproute2 (the integration tier's veth mode): a veth-mode host of one E810 with
    `--veth-vfs` VFs per PF, each VF netdev a real veth end; the peer of one is set down and up
    `--rounds` times, and the latency from `ip` returning to the answer carrying the VF's new
    health is timed (the real kernel's rtnetlink event, the real agent). `--veth-vfs 0` skips.
Never a pass/fail test. Run it with bytecode cached (PYTHONDONTWRITEBYTECODE unset), as an
installed agent runs: compiling the agent's modules costs more than the whole start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from fake_kubelet import FakeKubelet, Seen, Stream, short_root

from sriovkit.deviceplugin.discovery import Discovery
from sriovkit.host.events import Event
from sriovkit.host.sysfs import SysfsReader
from sriovkit.sim import create_host
from sriovkit.sim.kernel import SimSysfs
from sriovkit.sim.netlink import FakeNetlink

CONFIG = {"resourceList": [{"resourceName": "e810", "selectors": {"drivers": ["iavf"]}}]}
RESOURCE = "intel.com/e810"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _median(fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


_AGENT_CPU: list[float] = []


def _cpu(pid: int) -> float:
    """User + system CPU seconds the process used so far (all its threads): what the start-up
    costs whatever else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _agent(host: Path, config: Path, work: Path) -> Iterator[tuple[Stream, float]]:
    """The real agent on `host`, the test kubelet's stream, and exec -> first answer."""
    with short_root() as kubelet_dir:
        kubelet = FakeKubelet(kubelet_dir).start()
        cmd = [
            sys.executable, "-m", "sriovkit.cli", "--root", str(host), "agent",
            "--socket", str(kubelet_dir / "agent.sock"), "--state-dir", str(work / "state"),
            "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        try:
            kubelet.wait_registered(1, timeout=120)
            stream = kubelet.stream(RESOURCE)
            stream.next(timeout=120)
            first = time.perf_counter() - start
            _AGENT_CPU.append(_cpu(proc.pid))
            yield stream, first
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _until(stream: Stream, done: Callable[[list[Seen]], bool]) -> None:
    while not done(stream.next(timeout=30)):
        pass


def _in_process(host: Path, config: Path) -> None:
    start = time.perf_counter()
    discovery = Discovery(host, config, FakeNetlink(host))
    built = time.perf_counter() - start
    count = len(discovery.feeds[0].current().devices)
    full = _median(discovery.full_pass)
    links = _median(discovery.links_pass)
    named = _median(lambda: discovery.links_pass({"enp134s0f0"}))
    pf = discovery.families([Event("device", "enp134s0f0")]) or set()
    family = _median(lambda: discovery.family_pass(pf))
    print(
        f"{count} devices; Discovery built in {_ms(built)}; full pass median {_ms(full)}; "
        f"one PF's family (257 functions) median {_ms(family)}; links-only pass (dump) "
        f"median {_ms(links)}; one named link median {_ms(named)}"
    )


def _sim_carrier(host: Path, config: Path, work: Path, rounds: int) -> None:
    with _agent(host, config, work) as (stream, first):
        print(
            f"agent exec -> first ListAndWatch answer (4096 devices): {_ms(first)} "
            f"(the agent's CPU until then: {_ms(_AGENT_CPU[-1])})"
        )
        latencies, calls = [], []
        netlink = FakeNetlink(host)
        for i in range(rounds):
            up = i % 2 == 1
            t = time.perf_counter()
            netlink.set_carrier("enp134s0f0", up)
            published = time.perf_counter()
            calls.append(published - t)
            _until(stream, lambda seen, up=up: any(d.health == "Unhealthy" for d in seen) != up)
            latencies.append(time.perf_counter() - published)
        print(
            f"PF carrier flip -> stream, {rounds} rounds: median "
            f"{_ms(statistics.median(latencies))}, worst {_ms(max(latencies))} "
            f"(the simulated netlink's set_carrier itself: median "
            f"{_ms(statistics.median(calls))})"
        )
        # A device event: one PF's VFs removed and created again (sriov_numvfs 256 -> 0 -> 256).
        pf = SysfsReader(host).netdev_pci("enp134s0f0")
        assert pf is not None
        sysfs, latencies = SimSysfs(host), []
        for count in (0, 256) * 3:
            sysfs.set_num_vfs(pf, count)
            written = time.perf_counter()
            _until(stream, lambda seen, n=count: len(seen) == 3840 + n)
            latencies.append(time.perf_counter() - written)
        print(
            f"sriov_numvfs of one PF 256 <-> 0 -> stream, {len(latencies)} rounds: median "
            f"{_ms(statistics.median(latencies))}, worst {_ms(max(latencies))}"
        )


def _veth_carrier(work: Path, config: Path, vfs: int, rounds: int) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("veth mode skipped: needs root and iproute2")
        return
    from sriovkit.sim.veth import create_veth_host  # noqa: PLC0415

    def ip(*args: str) -> None:
        subprocess.run(["ip", "link", "set", *args], check=True)

    start = time.perf_counter()
    with create_veth_host(work / "veth", "e810", vfs=vfs, extras=False) as host:
        print(
            f"veth-mode host ({len(host.pairs)} veth VFs) created in "
            f"{time.perf_counter() - start:.1f} s"
        )
        pair = host.pairs[0]
        ip(pair.name, "up")
        ip(pair.peer, "up")
        with _agent(host.root, config, work) as (stream, first):
            print(
                f"agent exec -> first ListAndWatch answer ({len(host.pairs)} devices, "
                f"veth mode): {_ms(first)}"
            )
            latencies = []
            for i in range(rounds):
                health = "Healthy" if i % 2 == 1 else "Unhealthy"
                ip(pair.peer, "up" if health == "Healthy" else "down")
                changed = time.perf_counter()
                _until(stream, lambda seen, h=health: {d.id: d.health for d in seen}[pair.vf] == h)
                latencies.append(time.perf_counter() - changed)
            print(
                f"veth VF carrier (peer down/up) -> stream, {rounds} rounds: median "
                f"{_ms(statistics.median(latencies))}, worst {_ms(max(latencies))}"
            )


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--veth-vfs", type=int, default=64)
    args = parser.parse_args()
    if sys.dont_write_bytecode:
        print("note: bytecode is not cached (PYTHONDONTWRITEBYTECODE): start-up is compiling")
    work = Path(tempfile.mkdtemp(prefix="skdpbench"))
    try:
        host = args.host or work / "host"
        if not (host / ".sriovkit-sim/host.json").is_file():
            start = time.perf_counter()
            create_host(host, ["e810"] * 8, vfs=256, extras=False)
            print(f"host created in {time.perf_counter() - start:.1f} s")
        config = work / "config.json"
        config.write_text(json.dumps(CONFIG))
        _in_process(host, config)
        _sim_carrier(host, config, work, args.rounds)
        if args.veth_vfs > 0:
            _veth_carrier(work, config, args.veth_vfs, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
