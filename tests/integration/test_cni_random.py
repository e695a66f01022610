"""Randomized concurrency: the `sriov` plugin as runtimes drive it, with the agent SIGKILLed.

Random batches of ADD, DEL, CHECK and GC (plus DEL repeated, DEL of attachments never added,
and an ADD and a DEL of one attachment sent at once) over a few VFs and pod netns, run through
the installed shim from a thread pool (several requests in flight), while the real agent is
SIGKILLed at random moments (mid-request: its shims go in-process or answer ADD with code 11)
and restarted. After every batch, with nothing in flight, the host must be coherent: no VF
claimed by two attachment records, no IP held twice, the records agree with where each VF's
netdev is, and what the plugin answered is what the host holds. At the end, DEL of everything
+ GC with an empty valid list must give back every VF exactly as it started, with no record and
no host-local lease left.

Seed: `SRIOVKIT_RANDOM_SEED` (default: a new one each run, printed on failure); batches:
`SRIOVKIT_RANDOM_BATCHES`. A seed fixes the plan (operations, keys, configs, kill moments);
the threads' interleaving still varies between runs, so a seed reproduces a failure often,
not always.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cnikit import (
    CniLab,
    agent_argv,
    cni_plugins_missing,
    install_shim,
    short_dir,
    wait_for_socket,
)

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

from sriovkit.host.state import StateStore  # noqa: E402
from sriovkit.model.attachment import VfAttachment  # noqa: E402
from sriovkit.sim.netlink import FakeNetlink  # noqa: E402
from sriovkit.sim.veth import create_veth_host  # noqa: E402

SEED_ENV = "SRIOVKIT_RANDOM_SEED"
BATCHES_ENV = "SRIOVKIT_RANDOM_BATCHES"
BATCHES = 30
OPS_PER_BATCH = (10, 16)
PODS = 4
WORKERS = 5
# One network per ifname: two interfaces of one network in a pod would get the same route, which
# the kernel refuses (EEXIST) for the second, as it does for the reference plugins.
NETWORKS = {
    "net1": ("sriov-a", "10.56.0.0/24", "10.57.0.0/16"),
    "net2": ("sriov-b", "10.66.0.0/24", "10.67.0.0/16"),
}
HOST_LOCAL = Path("/usr/lib/cni/host-local")


# --- the agent ------------------------------------------------------------------------------


class Agent:
    """`sriovkit agent` as a process we can SIGKILL and start again on the same socket."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "agent.sock"
        self.log = directory / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                agent_argv(self.socket),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        wait_for_socket(self.socket, self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- the plan -------------------------------------------------------------------------------


@dataclass
class Key:
    """One attachment (container id, ifname) in one pod, always of one VF with one config."""

    cid: str
    ifname: str
    pod: Path
    vf: str
    conf: dict[str, Any]
    result: dict[str, Any] | None = None  # of its last successful ADD (CHECK's prevResult)
    abandoned_at: float | None = None  # the runtime forgot it: only GC may release it
    last: str = ""  # what the last answer said: "ADD ok", "ADD lost", "ADD no" or "DEL"

    def __str__(self) -> str:
        return f"{self.cid[:8]}@{self.ifname}({self.pod.name},{self.vf})"


@dataclass
class Op:
    """One plugin invocation and what it answered."""

    verb: str
    key: Key | None
    note: str = ""
    valid: list[Key] = field(default_factory=list)  # GC's valid attachments (note: its ifname)
    start: float = 0.0
    end: float = 0.0
    code: int | None = None
    out: bytes = b""
    err: bytes = b""
    started: threading.Event = field(default_factory=threading.Event)

    @property
    def answer(self) -> dict[str, Any]:
        try:
            data = json.loads(self.out or b"{}")
        except ValueError:
            return {"unparsable": self.out.decode(errors="replace")}
        return data if isinstance(data, dict) else {"answer": data}

    def describe(self) -> str:
        what = f"{self.verb}{'/' + self.note if self.note else ''} {self.key or ''}"
        if self.code is None:
            return f"{what}: not run"
        msg = "" if self.code == 0 else f" {self.answer.get('code')} {self.answer.get('msg')}"
        return f"{what} [{self.start:.3f}-{self.end:.3f}] -> {self.code}{msg}"


def lost_add(op: Op) -> bool:
    """ADD whose outcome the plugin could not know: the agent died with it."""
    return op.verb == "ADD" and op.code != 0 and "agent failed during ADD" in str(op.answer)


def add_left_records(op: Op) -> bool:
    """ADD that failed and says it kept the VF's records for DEL or GC to finish."""
    return op.verb == "ADD" and op.code != 0 and "keeps its record" in str(op.answer)


# ADD failures a correct plugin gives in this test: the VF belongs to another live attachment
# (Busy, code 11), or the pod already has an interface of that name (code 4).
EXPECTED_ADD_REFUSALS = ("is already attached to container", "already has an interface")


class Fuzz:
    """The test's world: the lab, the agent, the keys, the random plan and its log."""

    def __init__(self, lab: CniLab, agent: Agent, rng: random.Random) -> None:
        self.lab = lab
        self.agent = agent
        self.rng = rng
        self.pods = [lab.new_netns() for _ in range(PODS)]
        self.vfs = [p.vf for p in lab.host.pairs]
        self.keys: list[Key] = []
        self.history: list[Op] = []
        self.events: list[str] = []
        self.t0 = time.monotonic()
        self.cids: set[str] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, text: str) -> None:
        self.events.append(f"{self.now():8.3f} {text}")

    # --- keys and configs -----------------------------------------------------------------

    def new_key(self, vf: str | None = None) -> Key:
        rng = self.rng
        vf = vf or rng.choice(self.vfs)
        ifname = rng.choice(sorted(NETWORKS))
        conf = self.conf(ifname, rng.choice(["1.0.0", "1.1.0", "0.4.0"]), deviceID=vf)
        if rng.random() < 0.5:
            conf["vlan"] = rng.randint(1, 4094)
            if rng.random() < 0.5:
                conf["vlanQoS"] = rng.randint(0, 7)
        if rng.random() < 0.5:
            conf["mac"] = "02:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(4))
        if rng.random() < 0.3:
            conf["spoofchk"] = "off"
        if rng.random() < 0.3:
            conf["trust"] = "on"
        if rng.random() < 0.4:
            conf["mtu"] = rng.choice([1400, 1450, 9000])
        cid = uuid.UUID(int=rng.getrandbits(128)).hex
        self.cids.add(cid)
        key = Key(cid, ifname, rng.choice(self.pods), vf, conf)
        self.keys.append(key)
        return key

    def conf(self, ifname: str, version: str, **fields: Any) -> dict[str, Any]:
        """The network config of the network that `ifname`'s attachments use."""
        name, subnet, route = NETWORKS[ifname]
        ipam = {"type": "host-local", "subnet": subnet, "dataDir": str(self.lab.ipam_dir)}
        ipam["routes"] = [{"dst": route}]
        return {"cniVersion": version, "name": name, "type": "sriov", "ipam": ipam, **fields}

    def live(self) -> list[Key]:
        return [k for k in self.keys if k.abandoned_at is None]

    def retire(self, key: Key, why: str) -> None:
        key.abandoned_at = self.now()
        self.note(f"{why} {key}")

    def plan(self, n: int) -> list[list[Op]]:
        """`n` operations in groups; the ops of one group are sent at the same instant."""
        rng = self.rng
        # The runtime is done with most attachments it deleted; now and then it forgets one
        # that is attached, or whose ADD died with the agent (a lost pod). Either way only GC
        # may release what is left of them.
        for key in self.live():
            if key.last == "DEL" and rng.random() < 0.6:
                self.retire(key, "retire")
        held = [k for k in self.live() if k.last in ("ADD ok", "ADD lost")]
        if held and rng.random() < 0.35:
            self.retire(rng.choice(held), "forget")
        groups: list[list[Op]] = []
        while len(groups) < n:
            live = self.live()
            attached = [k for k in live if k.last == "ADD ok"]
            held = {k.vf for k in live if k.last in ("ADD ok", "ADD lost")}
            free = [vf for vf in self.vfs if vf not in held]
            some = rng.choice(attached) if attached and rng.random() < 0.7 else None
            roll = rng.random()
            if roll < 0.30 or not live:
                # Mostly a new attachment on a VF that looks free; else any (Busy, retries).
                if free and rng.random() < 0.65:
                    key = self.new_key(rng.choice(free))
                else:
                    key = rng.choice(live) if live and rng.random() < 0.5 else self.new_key()
                groups.append([Op("ADD", key)])
            elif roll < 0.48:
                groups.append([Op("DEL", some or rng.choice(live))])
            elif roll < 0.55:
                key = some or rng.choice(live)
                groups.append([Op("DEL", key), Op("DEL", key, "again")])
            elif roll < 0.62:
                groups.append([Op("DEL", self.new_key(), "never-added")])
            elif roll < 0.72:
                key = some or rng.choice(live)
                first, second = ("ADD", "DEL") if rng.random() < 0.5 else ("DEL", "ADD")
                groups.append([Op(first, key, "race"), Op(second, key, "race")])
            elif roll < 0.86:
                added = [k for k in live if k.result is not None] or live
                groups.append([Op("CHECK", some or rng.choice(added))])
            else:
                groups.append([Op("GC", None, rng.choice(sorted(NETWORKS)))])
        return groups

    # --- running ops -----------------------------------------------------------------------

    def run(self, op: Op) -> None:
        lab = self.lab
        if op.verb == "GC":
            op.valid = self.live()
            valid = [{"containerID": k.cid, "ifname": k.ifname} for k in op.valid]
            conf = self.conf(op.note, "1.1.0", **{"cni.dev/valid-attachments": valid})
            env = lab.env("GC")
        else:
            key = op.key
            assert key is not None
            conf = dict(key.conf)
            if op.verb == "CHECK":
                conf["prevResult"] = key.result
            env = lab.env(op.verb, key.cid, key.pod, key.ifname)
        op.start = self.now()
        op.started.set()
        outcome = lab.run(env, conf)
        op.end = self.now()
        op.code, op.out, op.err = outcome.code, outcome.stdout, outcome.stderr
        if op.key is not None and op.verb == "ADD":
            if op.code == 0:
                op.key.result = op.answer
            op.key.last = "ADD ok" if op.code == 0 else "ADD lost" if lost_add(op) else "ADD no"
        elif op.key is not None and op.verb == "DEL":
            op.key.last = "DEL"
        self.note(op.describe())

    def batch(self, number: int) -> list[Op]:
        rng = self.rng
        groups = self.plan(rng.randint(*OPS_PER_BATCH))
        ops = [op for group in groups for op in group]
        gaps = [rng.uniform(0.0, 0.15) for _ in groups]
        # In most batches, SIGKILL the agent a moment after one request (an ADD, mostly) was
        # sent: mid-request, more often than not. Restart it after a pause, during which the
        # shims run in-process.
        target = None
        if rng.random() < 0.7:
            adds = [op for op in ops if op.verb == "ADD"]
            target = rng.choice(adds if adds and rng.random() < 0.8 else ops)
        delay, pause = rng.uniform(0.0, 0.12), rng.uniform(0.0, 0.6)
        kill = f"kill {delay:.3f} s after {target.verb} {target.key or ''}" if target else "no kill"
        self.note(f"batch {number}: {len(ops)} ops, {kill}")
        killer = None
        if target is not None:
            killer = threading.Thread(target=self._kill_and_restart, args=(target, delay, pause))
            killer.start()
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                futures = []
                for group, gap in zip(groups, gaps, strict=True):
                    time.sleep(gap)
                    futures += [pool.submit(self.run, op) for op in group]
                for future in futures:
                    future.result()
        finally:
            if killer is not None:
                killer.join()
        self.history += ops
        return ops

    def _kill_and_restart(self, target: Op, delay: float, pause: float) -> None:
        target.started.wait(120)
        time.sleep(delay)
        self.agent.kill()
        self.note(f"agent SIGKILLed ({target.verb} {target.key or ''} sent {delay:.3f} s ago)")
        time.sleep(pause)
        self.agent.start()
        self.note("agent restarted")


# --- what the host holds --------------------------------------------------------------------


def ip_json(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    data: list[dict[str, Any]] = json.loads(out or "[]")
    return data


@dataclass
class Place:
    """Where a VF's netdev (its veth end) is, and how it looks there."""

    netns: Path | None  # None: the host netns
    name: str
    mac: str
    mtu: int
    up: bool
    ips: list[str]


def vf_places(lab: CniLab, pods: list[Path]) -> tuple[dict[str, Place | None], list[str]]:
    """Each VF's place (None if its netdev is nowhere), and links in pods that are not VFs."""
    host = {lk["ifname"]: lk for lk in ip_json("addr", "show")}
    in_pods = {pod: ip_json("-n", pod.name, "addr", "show") for pod in pods}
    places: dict[str, Place | None] = {}
    claimed: set[tuple[Path, int]] = set()
    for pair in lab.host.pairs:
        peer = host.get(pair.peer)
        found: tuple[Path | None, dict[str, Any]] | None = None
        # `ip -j` names the other end ("link") when it is in the same netns, else gives its
        # ifindex there ("link_index") and that netns's id ("link_netnsid").
        if peer is not None and peer.get("link") in host:
            found = (None, host[peer["link"]])
        elif peer is not None and "link_index" in peer:
            for pod, links in in_pods.items():
                for lk in links:
                    if (
                        lk["ifindex"] == peer["link_index"]
                        and lk.get("link_index") == peer["ifindex"]
                    ):
                        found = (pod, lk)
                        claimed.add((pod, lk["ifindex"]))
        if found is None:
            places[pair.vf] = None
            continue
        where, lk = found
        places[pair.vf] = Place(
            netns=where,
            name=lk["ifname"],
            mac=lk["address"],
            mtu=lk["mtu"],
            up="UP" in lk["flags"],
            ips=[
                f"{a['local']}/{a['prefixlen']}"
                for a in lk.get("addr_info", [])
                if a["family"] == "inet"
            ],
        )
    strangers = [
        f"{pod.name}:{lk['ifname']}"
        for pod, links in in_pods.items()
        for lk in links
        if lk["ifname"] != "lo" and (pod, lk["ifindex"]) not in claimed
    ]
    return places, strangers


def leases(lab: CniLab) -> dict[str, tuple[str, str]]:
    """host-local's leases: IP -> (container id, ifname) (its files hold `id\\r\\nifname`)."""
    out = {}
    for net in lab.ipam_dir.iterdir() if lab.ipam_dir.is_dir() else []:
        for entry in net.iterdir():
            try:
                ip = ipaddress.ip_address(entry.name)
            except ValueError:
                continue
            cid, _, ifname = entry.read_text().partition("\n")
            out[str(ip)] = (cid.strip(), ifname.strip())
    return out


def pf_side(lab: CniLab) -> dict[str, tuple[Any, ...]]:
    """Every VF's PF-side attributes (the fake's), by VF PCI address."""
    fake = FakeNetlink(lab.host.root)
    out = {}
    try:
        for pair in lab.host.pairs:
            pf = next(p.netdev for p in lab.host.sim.pfs if p.address == pair.pf)
            assert pf is not None
            v = fake.vfs(pf)[pair.index]
            out[pair.vf] = (
                v.mac, v.vlan, v.qos, v.proto, v.spoofchk, v.trust, v.link_state,
                v.min_tx_rate, v.max_tx_rate,
            )  # fmt: skip
    finally:
        fake.close()
    return out


@dataclass
class Start:
    """How every VF looked before the test."""

    places: dict[str, Place | None]
    pf: dict[str, tuple[Any, ...]]


def wait_for_orphans(cids: set[str], timeout: float = 20.0) -> None:
    """Until no host-local started for our containers is running (an agent SIGKILLed mid-IPAM
    leaves its plugin running: it is in its own session). Only looked at, never signalled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{pid}/exe") != str(HOST_LOCAL):
                    continue
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            cid = next((e[16:].decode() for e in environ if e.startswith(b"CNI_CONTAINERID=")), "")
            running = running or cid in cids
        if not running:
            return
        time.sleep(0.05)


def problems(fuzz: Fuzz, start: Start, ops: list[Op]) -> list[str]:
    """Everything wrong with the host now (nothing in flight), given the batch's `ops`."""
    lab = fuzz.lab
    out: list[str] = []
    store = StateStore(lab.state)
    records = list(store.attachments())
    allocations = {a.device_id: a for a in store.allocations()}
    places, strangers = vf_places(lab, fuzz.pods)
    held = leases(lab)
    pf_now = pf_side(lab)
    out += [f"link {s} in a pod is no VF of ours" for s in strangers]

    by_vf: dict[str, list[VfAttachment]] = {}
    for rec in records:
        by_vf.setdefault(rec.device_id, []).append(rec)
    for vf, recs in by_vf.items():
        if len(recs) > 1:
            out.append(
                f"VF {vf} claimed by {len(recs)} attachment records: {[str(r.key) for r in recs]}"
            )
    for rec in records:
        alloc = allocations.get(rec.device_id)
        if alloc is None or alloc.key != rec.key:
            out.append(
                f"attachment {rec.key} on VF {rec.device_id} has allocation "
                f"{alloc.key if alloc else None}"
            )

    for pair in lab.host.pairs:
        place = places[pair.vf]
        recs = by_vf.get(pair.vf, [])
        if place is None:
            out.append(f"VF {pair.vf}: its netdev is nowhere (host, pods) any more")
            continue
        if not recs:
            home = start.places[pair.vf]
            if place != home:
                out.append(
                    f"VF {pair.vf} has no record but is not home as it started: {place} != {home}"
                )
            if pf_now[pair.vf] != start.pf[pair.vf]:
                out.append(
                    f"VF {pair.vf} has no record but its PF side is {pf_now[pair.vf]}, "
                    f"not {start.pf[pair.vf]}"
                )
            continue
        rec = recs[0]
        if place.netns is not None:
            if str(place.netns) != rec.netns:
                out.append(
                    f"VF {pair.vf} is in {place.netns} but its record {rec.key} says {rec.netns}"
                )
            elif place.name not in (rec.ifname, rec.original.name):
                # The kernel moves a netdev before it renames it (one message): a refused
                # rename leaves the VF in the pod under its host name until ADD's undo, or,
                # if the agent died first, the next DEL or GC, brings it back.
                out.append(
                    f"VF {pair.vf} is {place.name} in its pod, its record {rec.key} says "
                    f"{rec.ifname} (or {rec.original.name})"
                )

    # IPs: none twice; each on an attached VF, leased to that attachment.
    owners: dict[str, str] = {}
    for vf, place in places.items():
        if place is None or place.netns is None:
            continue
        for cidr in place.ips:
            ip = cidr.partition("/")[0]
            if ip in owners:
                out.append(f"IP {ip} held by VF {vf} and VF {owners[ip]}")
            owners[ip] = vf
            rec = next(iter(by_vf.get(vf, [])), None)
            lease = held.get(ip)
            if rec is None or lease != (rec.container_id, rec.ifname):
                out.append(
                    f"IP {ip} on VF {vf} in {place.netns.name}: lease {lease}, "
                    f"record {rec.key if rec else None}"
                )
    record_keys = {(r.container_id, r.ifname) for r in records}
    for ip, owner in held.items():
        if owner not in record_keys:
            out.append(f"host-local lease {ip} of {owner} has no attachment record")
    per_key: dict[tuple[str, str], list[str]] = {}
    for ip, owner in held.items():
        per_key.setdefault(owner, []).append(ip)
    out += [f"{k} holds leases {v}" for k, v in per_key.items() if len(v) > 1]

    out += expectations(fuzz, ops, records, places, held)
    return out


def name_taken_meanwhile(op: Op, ops: list[Op]) -> bool:
    """Whether an ADD of another attachment with `op`'s pod and ifname overlapped `op`: the
    pod's name was free when `op` looked, and taken when its VF arrived (EEXIST)."""
    key = op.key
    return key is not None and any(
        other.verb == "ADD"
        and other.key is not None
        and other.key is not key
        and (other.key.pod, other.key.ifname) == (key.pod, key.ifname)
        and other.start < op.end
        and op.start < other.end
        for other in ops
    )


def expectations(
    fuzz: Fuzz,
    ops: list[Op],
    records: list[VfAttachment],
    places: dict[str, Place | None],
    held: dict[str, tuple[str, str]],
) -> list[str]:
    """What the plugin's answers promise about the state now."""
    out = []
    recs = {(r.container_id, r.ifname): r for r in records}
    leased = set(held.values())
    for op in ops:
        if op.verb == "DEL" and op.code != 0:
            out.append(f"DEL failed: {op.describe()}")
        if op.verb == "GC" and op.code != 0:
            out.append(f"GC failed: {op.describe()}")
        unexpected = not any(text in str(op.answer) for text in EXPECTED_ADD_REFUSALS)
        if unexpected and "File exists" in str(op.answer):
            unexpected = not name_taken_meanwhile(op, ops)
        if op.verb == "ADD" and op.code != 0 and not lost_add(op) and unexpected:
            out.append(f"ADD failed unexpectedly: {op.describe()}")
    by_key: dict[int, list[Op]] = {}
    for op in ops:
        if op.key is not None:
            by_key.setdefault(id(op.key), []).append(op)
    for key_ops in by_key.values():
        key = key_ops[0].key
        assert key is not None
        kid = (key.cid, key.ifname)
        changes = [op for op in key_ops if op.verb != "CHECK"]
        for check in (op for op in key_ops if op.verb == "CHECK"):
            # Stable across the CHECK: the last change of the key before it was a successful
            # ADD that overlapped no other change, and no change overlapped the CHECK.
            mine = {id(o): o for o in [*fuzz.history, *ops] if o.key is key}  # ops: in history
            every = [o for o in mine.values() if o.verb != "CHECK"]
            before = [o for o in every if o.end <= check.start]
            prior = max(before, key=lambda o: o.end, default=None)
            if (
                prior is not None
                and prior.verb == "ADD"
                and prior.code == 0
                and not any(
                    o is not prior and o.start < prior.end for o in every if o.end > prior.start
                )
                and not any(o.start < check.end and o.end > check.start for o in every)
                and check.code != 0
            ):
                out.append(f"CHECK failed on a stable attachment: {check.describe()}")
        if not changes:
            continue
        last = max(changes, key=lambda o: o.start)
        if any(o is not last and o.end > last.start for o in changes):
            continue  # overlapping: either order is right
        rec = recs.get(kid)
        if last.verb == "ADD" and last.code == 0:
            place = places.get(key.vf)
            ips = [ip["address"] for ip in (key.result or {}).get("ips", [])]
            if rec is None or rec.result is None:
                out.append(f"{key}: ADD succeeded last, but no committed record: {last.describe()}")
            elif (
                place is None
                or place.netns != key.pod
                or place.name != key.ifname
                or sorted(place.ips) != sorted(ips)
            ):
                out.append(f"{key}: ADD succeeded last ({ips}) but the VF is at {place}")
        elif (last.verb == "DEL" and last.code == 0) or (
            last.verb == "ADD" and not lost_add(last) and not add_left_records(last)
        ):
            if rec is not None and last.verb == "DEL":
                out.append(f"{key}: DEL succeeded last, but its record is there: {last.describe()}")
            if rec is not None and last.verb == "ADD":
                out.append(f"{key}: ADD refused last, yet a record is there: {last.describe()}")
            if kid in leased:
                out.append(f"{key}: {last.verb} was last ({last.code}), but it holds a lease")
    # GC releases what the runtime forgot.
    gcs = [op for op in ops if op.verb == "GC" and op.code == 0]
    for key in fuzz.keys:
        if key.abandoned_at is None:
            continue
        if any(op.start > key.abandoned_at and op.note == key.ifname for op in gcs):
            kid = (key.cid, key.ifname)
            if kid in recs or kid in leased:
                out.append(f"{key}: forgotten before a GC that succeeded, still held after it")
    return out


# --- the test -------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path, shim_kind: str) -> Iterator[tuple[CniLab, Agent]]:
    with short_dir() as directory:
        agent = Agent(directory)
        host = create_veth_host(
            tmp_path / "host", "82576", vfs=3, prefix="skr" + uuid.uuid4().hex[:4]
        )
        try:
            shim = install_shim(
                tmp_path / "bin", agent.socket, tmp_path / "state", host.root, shim_kind
            )
            lab = CniLab(host, tmp_path / "state", tmp_path / "ipam", shim, agent.socket)
            try:
                agent.start()
                yield lab, agent
            finally:
                agent.stop()
                lab.cleanup()
        finally:
            host.cleanup()


def test_random_concurrent_verbs_with_agent_kills(world: tuple[CniLab, Agent]) -> None:
    lab, agent = world
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 32))
    batches = int(os.environ.get(BATCHES_ENV) or BATCHES)
    fuzz = Fuzz(lab, agent, random.Random(seed))
    try:
        run_fuzz(fuzz, batches)
    except BaseException as exc:
        story = "\n".join(fuzz.events[-200:])
        exc.add_note(
            f"\n{SEED_ENV}={seed} reproduces this plan ({batches} batches).\n"
            f"--- what happened (last 200 events) ---\n{story}\n"
            f"--- agent log (tail) ---\n{agent.tail()}"
        )
        print(f"{SEED_ENV}={seed}", file=sys.stderr)
        raise


def run_fuzz(fuzz: Fuzz, batches: int) -> None:
    lab, agent = fuzz.lab, fuzz.agent
    before = lab.snapshot()
    places, strangers = vf_places(lab, fuzz.pods)
    assert not strangers and all(p is not None and p.netns is None for p in places.values())
    start = Start(places, pf_side(lab))
    for number in range(batches):
        ops = fuzz.batch(number)
        wait_for_orphans(fuzz.cids)
        found = problems(fuzz, start, ops)
        assert not found, f"after batch {number}:\n" + "\n".join(found)
    # The end: DEL of everything (all at once), then GC with nothing valid.
    final = [Op("DEL", key, "final") for key in fuzz.live()]
    with ThreadPoolExecutor(WORKERS) as pool:
        for future in [pool.submit(fuzz.run, op) for op in final]:
            future.result()
    for key in fuzz.keys:
        key.abandoned_at = key.abandoned_at or fuzz.now()
    gcs = [Op("GC", None, ifname) for ifname in sorted(NETWORKS)]
    for gc in gcs:
        fuzz.run(gc)
    fuzz.history += [*final, *gcs]
    wait_for_orphans(fuzz.cids)
    found = problems(fuzz, start, [*final, *gcs])
    assert not found, "after the final DEL + GC:\n" + "\n".join(found)
    places, strangers = vf_places(lab, fuzz.pods)
    assert places == start.places
    assert pf_side(lab) == start.pf
    assert lab.snapshot() == before  # records and leases included: none left
    assert not leases(lab)
    counts: dict[str, int] = {}
    for op in fuzz.history:
        verb = f"{op.verb}:{'ok' if op.code == 0 else 'lost' if lost_add(op) else 'failed'}"
        counts[verb] = counts.get(verb, 0) + 1
    print(f"{len(fuzz.history)} ops {sorted(counts.items())}; agent started {agent.starts} times")
