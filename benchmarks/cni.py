"""CNI ADD/DEL speed of the `sriov` plugin against Go `host-device` + `host-local`, one sitting.

    sudo .venv/bin/python benchmarks/cni.py [--runs 15] [--concurrent 64]

Needs root (netns, veth) and Debian's containernetworking-plugins in /usr/lib/cni. Builds two
veth-mode simulated hosts (VF netdevs are real veth ends): a dual-port 82576 with 2 VFs per port
for the timings and a dual-port X710 with 32 VFs per port for the concurrency run; installs the
shims with `install-cni` (the static C shim, compiled here, and the Python shim) and starts
`sriovkit agent` as a process. Then, interleaved round by round so that every contender sees the
same machine state, each of
  - Go `host-device` (`"device": <veth>`) with `host-local` IPAM,
  - the static shim -> agent (what a node runs),
  - the Python shim -> agent,
  - the Python shim with no agent (the in-process path),
moves one VF netdev into a netns (ADD) and back (DEL), timed as a runtime sees it: from exec to
exit of the plugin process. Printed: medians and the ratios to host-device. Then `--concurrent`
ADDs on as many VFs, all through the agent at once (static shim, Go host-device, Python shim),
checking that every ADD succeeded with its own VF and its own IP, then as many DELs, checking
every VF is back. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sriovkit.cni.install import install_shim
from sriovkit.sim.veth import VethHost, create_veth_host

CNI_BIN = Path("/usr/lib/cni")


def _run(argv: list[str], env: dict[str, str], conf: dict[str, Any]) -> tuple[float, int, bytes]:
    data = json.dumps(conf).encode()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=data, env=env, capture_output=True, check=False)
    took = time.perf_counter() - t0
    return took, proc.returncode, proc.stdout + proc.stderr


def _netns() -> Path:
    name = f"skbench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return Path("/run/netns") / name


def _del_netns(path: Path) -> None:
    subprocess.run(["ip", "netns", "del", path.name], check=False, capture_output=True)


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], check=True, capture_output=True, text=True)
    return {lk["ifname"] for lk in json.loads(out.stdout)}


class Bench:
    """The sitting: host, dirs, shim, agent."""

    def __init__(self, tmp: Path, host: VethHost, state: Path | None = None) -> None:
        self.tmp = tmp
        self.host = host
        self.state = state or tmp / "state"
        self.ipam_dir = tmp / "ipam"
        self.sock = tmp / "agent.sock"
        # Baked at install: the shim ignores these in its environment (issue 10).
        self.shim = install_shim(
            tmp / "bin", "sriov", self.sock, state_dir=self.state, root=host.root, kind="python"
        )[0]
        self.static = install_shim(
            tmp / "bin-static", "sriov", self.sock, state_dir=self.state, root=host.root,
            kind="static", fallback="none",
        )[0]  # fmt: skip
        self.agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "sriovkit.cli",
            "agent",
            "--socket",
            str(self.sock),
            *(["-v"] if os.environ.get("SKBENCH_VERBOSE") else []),
        ]
        self.agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(self.sock))
                    return
                except OSError:
                    time.sleep(0.05)
        raise SystemExit("agent did not start")

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(30)

    def env(self, command: str, cid: str, netns: Path | None, *, agent: bool) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_IFNAME": "net1",
            "CNI_PATH": str(CNI_BIN),
            "SRIOVKIT_ROOT": str(self.host.root),
            "SRIOVKIT_STATE_DIR": str(self.state),
            "SRIOVKIT_AGENT_SOCKET": str(self.sock),
        }
        if netns is not None:
            env["CNI_NETNS"] = str(netns)
        if not agent:
            env["SRIOVKIT_AGENT"] = "off"
        return env

    def ipam(self, name: str) -> dict[str, Any]:
        return {
            "type": "host-local",
            "subnet": "10.77.0.0/16",
            "dataDir": str(self.ipam_dir / name),
        }

    def ours(self, vf: str) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "bench", "type": "sriov", "deviceID": vf,
                "ipam": self.ipam("ours")}  # fmt: skip

    def go(self, device: str) -> dict[str, Any]:
        return {"cniVersion": "1.0.0", "name": "bench-go", "type": "host-device",
                "device": device, "ipam": self.ipam("go")}  # fmt: skip


def _check(ok: int, out: bytes, what: str) -> None:
    if ok != 0:
        raise SystemExit(f"{what} failed: {out.decode(errors='replace')}")


def sequential(bench: Bench, runs: int) -> dict[str, list[float]]:
    """ADD and DEL times of each contender, interleaved round by round."""
    pair = bench.host.pairs[0]
    go_pair = bench.host.pairs[1]
    netns = _netns()
    times: dict[str, list[float]] = {}
    contenders = [
        ("host-device", [str(CNI_BIN / "host-device")], bench.go(go_pair.name), True),
        ("static+agent", [str(bench.static)], bench.ours(pair.vf), True),
        ("shim+agent", [str(bench.shim)], bench.ours(pair.vf), True),
        ("in-process", [str(bench.shim)], bench.ours(pair.vf), False),
    ]
    try:
        for i in range(runs + 1):  # round 0 warms caches and is not counted
            for name, argv, conf, agent in contenders:
                cid = f"bench{i}{name}".replace("+", "").replace("-", "")
                t_add, rc, out = _run(argv, bench.env("ADD", cid, netns, agent=agent), conf)
                _check(rc, out, f"{name} ADD")
                t_del, rc, out = _run(argv, bench.env("DEL", cid, netns, agent=agent), conf)
                _check(rc, out, f"{name} DEL")
                if i:
                    times.setdefault(f"{name} ADD", []).append(t_add)
                    times.setdefault(f"{name} DEL", []).append(t_del)
    finally:
        _del_netns(netns)
    if {pair.name, go_pair.name} - _host_links():
        raise SystemExit("a VF netdev did not come back to the host netns")
    return times


def concurrent(bench: Bench, count: int, label: str) -> tuple[float, float, int]:
    """`count` ADDs at once on distinct VFs, then as many DELs; (add s, del s, distinct IPs).

    Ours (`static+agent`, `shim+agent`) go through the agent; `host-device` runs Go
    host-device on the same veths instead.
    """
    pairs = bench.host.pairs[:count]
    pods = [_netns() for _ in pairs]
    go = label == "host-device"
    plugin = {"host-device": CNI_BIN / "host-device", "static+agent": bench.static}
    argv = [str(plugin.get(label, bench.shim))]

    def conf(pair: Any) -> dict[str, Any]:
        return bench.go(pair.name) if go else bench.ours(pair.vf)

    tag = {"host-device": "go", "static+agent": "st"}.get(label, "conc")
    try:
        t0 = time.perf_counter()
        procs = [
            _spawn(bench, argv, "ADD", f"{tag}{i}", pod, conf(p))
            for i, (p, pod) in enumerate(zip(pairs, pods, strict=True))
        ]
        results = [proc.communicate() for proc in procs]
        t_add = time.perf_counter() - t0
        ips = set()
        for proc, (out, err) in zip(procs, results, strict=True):
            _check(proc.returncode, out + err, f"concurrent {tag} ADD")
            ips.add(json.loads(out)["ips"][0]["address"])
        if len(ips) != len(pairs):
            raise SystemExit(f"double allocation: {len(pairs)} ADDs got {len(ips)} IPs")
        for pod in pods:
            links = subprocess.run(
                ["ip", "-j", "-n", pod.name, "link", "show"], capture_output=True, check=True
            )
            if len(json.loads(links.stdout)) != 2:  # lo + the VF
                raise SystemExit(f"{pod} does not hold exactly one VF")
        t0 = time.perf_counter()
        procs = [
            _spawn(bench, argv, "DEL", f"{tag}{i}", pod, conf(p))
            for i, (p, pod) in enumerate(zip(pairs, pods, strict=True))
        ]
        for proc in procs:
            out, err = proc.communicate()
            _check(proc.returncode, out + err, f"concurrent {tag} DEL")
        t_del = time.perf_counter() - t0
    finally:
        for pod in pods:
            _del_netns(pod)
    missing = {p.name for p in pairs} - _host_links()
    if missing:
        raise SystemExit(f"{len(missing)} VF netdevs did not come back: {sorted(missing)[:4]}")
    if not go and list((bench.state / "attachments").iterdir()):
        raise SystemExit("attachment records left after DEL")
    return t_add, t_del, len(ips)


def _floor(bench: Bench, runs: int) -> dict[str, float]:
    """What no plugin work costs: interpreter start, the shim's round trip, a Go binary's start."""
    python = os.path.realpath(sys.executable)
    version = {"cniVersion": "1.0.0"}
    env = bench.env("VERSION", "v", None, agent=True)
    argvs = {
        "python": [python, "-IS", "-c", "pass"],
        "shim": [str(bench.shim)],
        "static": [str(bench.static)],
        "go": [str(CNI_BIN / "host-local")],
    }
    out = {}
    for name, argv in argvs.items():
        times = [_run(argv, env, version)[0] for _ in range(runs + 1)][1:]
        out[name] = statistics.median(times) * 1e3
    out.update(_kernel_move(bench.host.pairs[1].name, runs))
    return out


def _kernel_move(device: str, runs: int) -> dict[str, float]:
    """The kernel's share, from a warm in-process pyroute2 socket: one RTM_NEWLINK moving
    `device` into a netns (renamed, up), and back as DEL does it: down, then one RTM_NEWLINK
    (renamed; see benchmarks/netns_move.py)."""
    from pyroute2 import IPRoute, NetNS  # noqa: PLC0415 - only the floor needs it

    netns = _netns()
    into, out = [], []
    try:
        with IPRoute() as host, NetNS(netns.name) as pod:
            pod_fd = os.open(netns, os.O_RDONLY)
            host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            try:
                for _ in range(runs + 1):
                    index = host.link_lookup(ifname=device)[0]
                    t0 = time.perf_counter()
                    host.link("set", index=index, net_ns_fd=pod_fd, ifname="net1", state="up")
                    into.append(time.perf_counter() - t0)
                    index = pod.link_lookup(ifname="net1")[0]
                    t0 = time.perf_counter()
                    pod.link("set", index=index, state="down")
                    pod.link("set", index=index, net_ns_fd=host_fd, ifname=device)
                    out.append(time.perf_counter() - t0)
            finally:
                os.close(pod_fd)
                os.close(host_fd)
    finally:
        _del_netns(netns)
    return {
        "move_in": statistics.median(into[1:]) * 1e3,
        "move_out": statistics.median(out[1:]) * 1e3,
    }


def _spawn(
    bench: Bench, argv: list[str], command: str, cid: str, netns: Path, conf: dict[str, Any]
) -> subprocess.Popen[bytes]:
    read_end, write_end = os.pipe()
    os.write(write_end, json.dumps(conf).encode())
    os.close(write_end)
    try:
        return subprocess.Popen(
            argv,
            stdin=read_end,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=bench.env(command, cid, netns, agent=True),
        )
    finally:
        os.close(read_end)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--concurrent", type=int, default=64)
    ap.add_argument(
        "--state-parent",
        type=Path,
        help="Put the state directory under this directory (e.g. /dev/shm, a tmpfs, to see what "
        "the records' fsyncs cost) [the run's temp dir under /tmp]",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, veth)", file=sys.stderr)
        return 1
    if not (CNI_BIN / "host-device").is_file() or shutil.which("ip") is None:
        print("needs iproute2 and containernetworking-plugins in /usr/lib/cni", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="skbench", dir="/tmp"))
    # The simulated PF side re-reads its tree on every call, so it slows down with the VF count
    # (a real PF does not): time single ADD/DELs on a small igb host, concurrency on a big one.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        # Real veth pairs: each is removed however the run ends, even if set-up fails half-way.
        host = create_veth_host(tmp / "host", "82576", vfs=2, prefix="sb" + uuid.uuid4().hex[:3])
        cleanup.callback(host.cleanup)
        vfs = max(2, (args.concurrent + 1) // 2)
        big = create_veth_host(tmp / "big", "x710", vfs=vfs, prefix="sc" + uuid.uuid4().hex[:3])
        cleanup.callback(big.cleanup)
        state = None
        if args.state_parent is not None:
            state = Path(tempfile.mkdtemp(prefix="skbench-state", dir=args.state_parent))
            cleanup.callback(shutil.rmtree, state, ignore_errors=True)
        bench = Bench(tmp, host, state)
        cleanup.callback(bench.stop_agent)
        return _report(bench, big, args)
    return 1  # pragma: no cover - the with block returns


def _report(bench: Bench, big: VethHost, args: argparse.Namespace) -> int:
    bench.start_agent()
    times = sequential(bench, args.runs)
    base = {op: statistics.median(times[f"host-device {op}"]) for op in ("ADD", "DEL")}
    print(f"median of {args.runs} runs, ms (process exec to exit), ratio to Go host-device")
    print(f"{'path':<14} {'ADD ms':>8} {'xGo':>6} {'DEL ms':>8} {'xGo':>6}")
    for name in ("host-device", "static+agent", "shim+agent", "in-process"):
        add = statistics.median(times[f"{name} ADD"])
        dele = statistics.median(times[f"{name} DEL"])
        print(
            f"{name:<14} {add * 1e3:8.1f} {add / base['ADD']:6.2f} "
            f"{dele * 1e3:8.1f} {dele / base['DEL']:6.2f}"
        )
    floor = _floor(bench, args.runs)
    print(
        f"floor: python3 -IS -c pass {floor['python']:.1f} ms; VERSION (answered in the shim): "
        f"static {floor['static']:.2f} ms, Python {floor['shim']:.1f} ms; Go host-local VERSION "
        f"{floor['go']:.1f} ms; kernel netns "
        f"move in {floor['move_in']:.1f} ms, out {floor['move_out']:.1f} ms"
    )
    # The least any shim + agent invocation can cost: a shim start plus the kernel's move (the
    # agent round trip comes on top).
    for op, move in (("ADD", floor["move_in"]), ("DEL", floor["move_out"])):
        least = floor["static"] + move
        print(
            f"  least possible static+agent {op}: {least:.1f} ms = {least / (base[op] * 1e3):.2f}x "
            f"Go host-device (round trip + move, before any record, IPAM or address)"
        )
    if args.concurrent:
        bench.host = big
        # The root is baked into the shim at install (it wins over the environment): a shim
        # for the big host, same socket and state dir.
        bench.shim = install_shim(
            bench.tmp / "bin-big", "sriov", bench.sock, state_dir=bench.state, root=big.root,
            kind="python",
        )[0]  # fmt: skip
        bench.static = install_shim(
            bench.tmp / "bin-big-static", "sriov", bench.sock, state_dir=bench.state,
            root=big.root, kind="static", fallback="none",
        )[0]  # fmt: skip
        count = min(args.concurrent, len(big.pairs))
        walls = {}
        for label in ("static+agent", "host-device", "shim+agent"):
            t_add, t_del, ips = concurrent(bench, count, label)
            walls[label] = t_add
            print(
                f"{count} concurrent {label}: ADDs {t_add * 1e3:.0f} ms wall, {ips} distinct "
                f"IPs on {count} distinct VFs; DELs {t_del * 1e3:.0f} ms wall, every VF back"
            )
        for label in ("static+agent", "shim+agent"):
            print(f"  {label} {count} concurrent ADDs: {walls[label] / walls['host-device']:.2f}x "
                  "Go host-device's wall time")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
