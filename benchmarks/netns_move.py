"""The kernel's netns move of a netdev, in the ways a CNI plugin can ask for it, one sitting.

    sudo .venv/bin/python benchmarks/netns_move.py [--runs 31] [--wait 0.05]

Needs root (netns, veth). One veth end, its peer up in the host netns (so the end has carrier,
as a VF on a linked port does), moved into a throwaway netns and back, interleaved round by
round so that every variant sees the same machine:

  in   one message: netns + rename + up (what ADD sends)
  in   two: netns + rename, then up
  out  one message: netns + rename + down, the end up with an IPv4 address (what DEL sent
       until 2026-12-03)
  out  down first, then netns + rename
  out  the IPv4 address deleted, then one message (DEL's first way with IPAM released early)
  out  the IPv4 address deleted, down, then netns + rename (what DEL sends now)

Times are from the first request to the last answer, in ms; medians (and means: the kernel's
RCU grace periods make the tail long). Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

ADDR = "10.99.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--wait", type=float, default=0.05,
                    help="seconds the end stays in the netns before it moves out")  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, veth)", file=sys.stderr)
        return 1
    from pyroute2 import IPRoute, NetNS  # noqa: PLC0415 - after the root check

    tag = uuid.uuid4().hex[:6]
    end, peer, ns = f"skm{tag}a", f"skm{tag}b", f"skm-{tag}"
    _ip("link", "add", end, "type", "veth", "peer", "name", peer)
    try:
        _ip("link", "set", peer, "up")
        _ip("netns", "add", ns)
        try:
            with IPRoute() as host, NetNS(ns) as pod:
                pod_fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
                try:
                    times = _rounds(host, pod, pod_fd, host_fd, end, args)
                finally:
                    os.close(pod_fd)
                    os.close(host_fd)
        finally:
            _ip("netns", "del", ns)
    finally:
        subprocess.run(["ip", "link", "del", end], check=False, capture_output=True)
    print(f"median (mean) of {args.runs} rounds, ms")
    for name, values in times.items():
        print(f"  {name:<48} {statistics.median(values):6.2f} ({statistics.mean(values):6.2f})")
    return 0


def _rounds(
    host: Any, pod: Any, pod_fd: int, host_fd: int, end: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}

    def timed(name: str, steps: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        steps()
        times.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)

    def into(one: bool) -> int:
        index = host.link_lookup(ifname=end)[0]
        if one:
            timed("in: netns + rename + up", lambda: host.link(
                "set", index=index, net_ns_fd=pod_fd, ifname="net1", state="up"))  # fmt: skip
        else:
            def two() -> None:
                host.link("set", index=index, net_ns_fd=pod_fd, ifname="net1")
                pod.link("set", index=pod.link_lookup(ifname="net1")[0], state="up")

            timed("in: netns + rename; up", two)
        inside = pod.link_lookup(ifname="net1")[0]
        pod.addr("add", index=inside, address=ADDR, prefixlen=16)
        time.sleep(args.wait)
        return int(inside)

    def out(index: int, delete: bool, down_first: bool) -> Callable[[], None]:
        def steps() -> None:
            if delete:
                pod.addr("del", index=index, address=ADDR, prefixlen=16)
            if down_first:
                pod.link("set", index=index, state="down")
                pod.link("set", index=index, net_ns_fd=host_fd, ifname=end)
            else:
                pod.link("set", index=index, net_ns_fd=host_fd, ifname=end, state="down")

        return steps

    for i in range(args.runs):
        for delete in (False, True):
            for down_first in (False, True):
                index = into(one=(i + delete + down_first) % 2 == 0)
                name = "out: " + ("address deleted; " if delete else "") + (
                    "down; netns + rename" if down_first else "netns + rename + down"
                )
                timed(name, out(index, delete, down_first))
    return times


if __name__ == "__main__":
    sys.exit(main())
