"""Device plugin on a 4,096-VF simulated host: start-up, re-scan cost, event -> stream latency.

    .venv/bin/python benchmarks/deviceplugin.py [--host DIR] [--rounds 20]

Builds (or reuses, with `--host`) a simulated host of eight E810 PFs with 256 VFs each, then
prints:
  - in process: `Discovery` construction (config, inventory, pools, links: what stands between
    agent start and a complete first answer), a full pass and a links-only pass (medians);
  - the real agent process against the test kubelet (`tests/unit/fake_kubelet.py`): time from
    exec to the first ListAndWatch answer;
  - a PF's carrier flipped through the simulated netlink, `--rounds` times: latency from the
    change being published to the answer carrying it on the stream (median and worst), and the
    publisher's own call (the fake netlink re-reads the 4,096-VF tree on every change).
Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from fake_kubelet import FakeKubelet, short_root

from sriovkit.deviceplugin.discovery import Discovery
from sriovkit.sim import create_host
from sriovkit.sim.netlink import FakeNetlink

CONFIG = {"resourceList": [{"resourceName": "e810", "selectors": {"drivers": ["iavf"]}}]}
RESOURCE = "intel.com/e810"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="skdpbench"))
    host = args.host or work / "host"
    if not (host / ".sriovkit-sim/host.json").is_file():
        start = time.perf_counter()
        create_host(host, ["e810"] * 8, vfs=256, extras=False)
        print(f"host created in {time.perf_counter() - start:.1f} s")
    config = work / "config.json"
    config.write_text(json.dumps(CONFIG))

    start = time.perf_counter()
    discovery = Discovery(host, config, FakeNetlink(host))
    built = time.perf_counter() - start
    count = len(discovery.feeds[0].current().devices)
    full, links = [], []
    for _ in range(5):
        t = time.perf_counter()
        discovery.full_pass()
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        discovery.links_pass()
        links.append(time.perf_counter() - t)
    print(f"{count} devices; Discovery built in {_ms(built)}; full pass median "
          f"{_ms(statistics.median(full))}; links-only pass median {_ms(statistics.median(links))}")

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
            first = stream.next(timeout=120)
            print(f"agent exec -> first ListAndWatch answer ({len(first)} devices): "
                  f"{_ms(time.perf_counter() - start)}")
            latencies, calls = [], []
            netlink = FakeNetlink(host)
            for i in range(args.rounds):
                up = i % 2 == 1
                t = time.perf_counter()
                netlink.set_carrier("enp134s0f0", up)
                published = time.perf_counter()
                calls.append(published - t)
                while True:
                    seen = stream.next(timeout=30)
                    if any(d.health == "Unhealthy" for d in seen) != up:
                        break
                latencies.append(time.perf_counter() - published)
            print(f"PF carrier flip -> stream, {args.rounds} rounds: median "
                  f"{_ms(statistics.median(latencies))}, worst {_ms(max(latencies))} "
                  f"(the simulated netlink's set_carrier itself: median "
                  f"{_ms(statistics.median(calls))})")
        finally:
            kubelet.stop()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    main()
