"""Inventory speed against `lspci -nn` on the same generated sysfs tree, in one sitting.

    .venv/bin/python benchmarks/inventory.py [--runs N] [--sizes 1,4,8]

Each size is a simulated host with that many dual-port E810 cards, 256 VFs per PF (8 cards =
16 PFs x 256 = 4,096 VFs). Printed: medians of N runs of
  - `collect()` in-process (what the agent and the CLI do once started), fresh seams each run;
  - `sriovkit --root R inventory --json` as a process (CLI start-up included);
  - `lspci -nn -A linux-sysfs -O sysfs.path=R/sys/bus/pci` as a process (the peer);
and their ratios, plus microseconds per function to show linearity. The runs of the three are
interleaved, after one untimed round each. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import DEVNULL

from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.ops.discover import collect
from sriovkit.sim import create_host


def _medians(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each callable over `runs` rounds.

    The rounds interleave the contenders (ours, the CLI, lspci, ours, ...) so that a slow
    spell on a shared machine falls on all of them alike, and one untimed round first pays
    for the fresh tree's first reads (atime updates, cold caches) for each of them.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(runs + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--sizes", default="1,2,4,8", help="numbers of dual-port E810 cards")
    ap.add_argument(
        "--dir",
        default=None,
        help="where to build the trees (default: the system temp dir); /dev/shm puts them on "
        "tmpfs, memory-backed like the kernel's sysfs",
    )
    args = ap.parse_args()
    lspci = shutil.which("lspci")
    if lspci is None:
        print("lspci not found: apt-get install pciutils", file=sys.stderr)
        return 1
    cli = str(Path(sys.executable).with_name("sriovkit"))
    print(f"{'VFs':>6} {'funcs':>6} {'collect ms':>11} {'cli ms':>8} {'lspci ms':>9} "
          f"{'collect/lspci':>14} {'cli/lspci':>10} {'us/func':>8}")  # fmt: skip
    for cards in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="sriovkit-bench-", dir=args.dir) as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            host = create_host(root, ["e810"] * cards, vfs=256, extras=True)
            built = time.perf_counter() - t0
            # A just-written tree of ~100,000 files is still being written back to disk for
            # tens of seconds: synced first, so that no contender is timed against writeback
            # (sysfs itself has none).
            os.sync()
            n_funcs = len(Sysfs(root).pci_addresses())
            n_vfs = sum(p.num_vfs for p in host.pfs)
            cli_cmd = [cli, "--root", str(root), "inventory", "--json"]
            lspci_cmd = [lspci, "-nn", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci"]
            m = _medians(
                {
                    "ours": lambda r=root: collect(Sysfs(r), PciIds()),
                    "cli": lambda c=cli_cmd: subprocess.run(c, check=True, stdout=DEVNULL),
                    "lspci": lambda c=lspci_cmd: subprocess.run(c, check=True, stdout=DEVNULL),
                },
                args.runs,
            )
            ours, ours_cli, peer = m["ours"], m["cli"], m["lspci"]
            print(
                f"{n_vfs:>6} {n_funcs:>6} {ours * 1e3:>11.1f} {ours_cli * 1e3:>8.1f} "
                f"{peer * 1e3:>9.1f} {ours / peer:>13.2f}x {ours_cli / peer:>9.2f}x "
                f"{ours / n_funcs * 1e6:>8.1f}   (tree built in {built:.1f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
