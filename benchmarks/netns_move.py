"""The kernel's netns move of a netdev, in the ways a CNI plugin can ask for it, one sitting.

    sudo .venv/bin/python benchmarks/netns_move.py [--rounds 12] [--ends 8] [--age 1.5]

Needs root (netns, veth). Veth ends (their peers up in the host netns, so the ends have carrier
as a VF on a linked port does) are moved into throwaway netns with one message (netns + rename
+ up: what ADD sends), given an IPv4 address, left there `--age` seconds (a pod lives seconds
to days; by 1.5 s the kernel has also given the end its IPv6 link-local address and finished
DAD), then moved back, each end in one of these ways, turn about:

  one message      netns + rename + down
  down first       down, then netns + rename
  address first    the IPv4 address deleted, then one message
  both first       the IPv4 address deleted, down, then netns + rename

Times are from the first request to the last answer, in ms: medians (and means: the kernel's
RCU grace periods make the tail long) over `--rounds` x `--ends` / 4 moves per way. `--age 0`
is the CNI benchmark's case (DEL right after ADD). Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

ADDR = "10.99.0.{}"
WAYS = ("one message", "down first", "address first", "both first")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--ends", type=int, default=8, help="veth ends moved per round (x4)")
    ap.add_argument("--age", type=float, default=1.5,
                    help="seconds the ends stay in their netns before they move out")  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, veth)", file=sys.stderr)
        return 1
    from pyroute2 import IPRoute, NetNS  # noqa: PLC0415 - after the root check

    tag = uuid.uuid4().hex[:5]
    ends = [f"skm{tag}{i}a" for i in range(args.ends)]
    spaces = [f"skm-{tag}-{i}" for i in range(args.ends)]
    with contextlib.ExitStack() as cleanup:
        for i, (end, ns) in enumerate(zip(ends, spaces, strict=True)):
            _ip("link", "add", end, "type", "veth", "peer", "name", f"skm{tag}{i}b")
            cleanup.callback(subprocess.run, ["ip", "link", "del", end], capture_output=True,
                             check=False)  # fmt: skip
            _ip("link", "set", f"skm{tag}{i}b", "up")
            _ip("netns", "add", ns)
            cleanup.callback(subprocess.run, ["ip", "netns", "del", ns], capture_output=True,
                             check=False)  # fmt: skip
        host = cleanup.enter_context(IPRoute())
        pods = [cleanup.enter_context(NetNS(ns)) for ns in spaces]
        fds = [os.open(f"/run/netns/{ns}", os.O_RDONLY) for ns in spaces]
        host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        cleanup.callback(lambda: [os.close(fd) for fd in [*fds, host_fd]])
        times = _rounds(host, pods, fds, host_fd, ends, args)
    print(f"moves out of a netns after {args.age:g} s there; median (mean) ms")
    for way in ("in", *WAYS):
        values = times[way]
        print(f"  {way:<14} {statistics.median(values):6.2f} ({statistics.mean(values):6.2f})"
              f"  n={len(values)}")  # fmt: skip
    return 0


def _rounds(
    host: Any, pods: list[Any], fds: list[int], host_fd: int, ends: list[str],
    args: argparse.Namespace,
) -> dict[str, list[float]]:  # fmt: skip
    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        inside = []
        for i, end in enumerate(ends):
            index = host.link_lookup(ifname=end)[0]
            t0 = time.perf_counter()
            host.link("set", index=index, net_ns_fd=fds[i], ifname="net1", state="up")
            times.setdefault("in", []).append((time.perf_counter() - t0) * 1e3)
            moved = pods[i].link_lookup(ifname="net1")[0]
            pods[i].addr("add", index=moved, address=ADDR.format(i + 1), prefixlen=16)
            inside.append(moved)
        time.sleep(args.age)
        for i, end in enumerate(ends):
            way = WAYS[(i + r) % len(WAYS)]
            pod, index = pods[i], inside[i]
            t0 = time.perf_counter()
            if way in ("address first", "both first"):
                pod.addr("del", index=index, address=ADDR.format(i + 1), prefixlen=16)
            if way in ("down first", "both first"):
                pod.link("set", index=index, state="down")
                pod.link("set", index=index, net_ns_fd=host_fd, ifname=end)
            else:
                pod.link("set", index=index, net_ns_fd=host_fd, ifname=end, state="down")
            times.setdefault(way, []).append((time.perf_counter() - t0) * 1e3)
    return times


if __name__ == "__main__":
    sys.exit(main())
