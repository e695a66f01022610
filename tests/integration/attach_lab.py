"""Shared set-up for the ops.attach integration tests (veth mode, real netns, real host-local).

Also run as a script by the fault-injection tests: `python attach_lab.py SPEC_JSON` runs one
ADD in a child process whose checkpoint kills the process (os._exit(137)) at a given step.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sriovkit.host.boot import cached_boot_id
from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import Netlink
from sriovkit.host.state import StateStore
from sriovkit.model.cni import CniEnv, NetConf, parse_netconf
from sriovkit.model.vf import VfInfo
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.wiring import open_netlink, open_sysfs

CNI_DIR = Path(os.environ.get("SRIOVKIT_TEST_CNI_DIR", "/usr/lib/cni"))
KILLED = 137


def make_netns() -> Path:
    """A fresh named netns (delete it with `drop_netns`)."""
    name = f"skat-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    return Path("/run/netns") / name


def drop_netns(path: Path) -> None:
    subprocess.run(["ip", "netns", "del", path.name], check=False, capture_output=True)


def new_pod(pods: list[Path]) -> Path:
    """A fresh netns, added to the `pods` fixture's list so that it is deleted afterwards."""
    path = make_netns()
    pods.append(path)
    return path


def ip_link(name: str, netns: Path | None = None) -> dict[str, Any] | None:
    """`ip -j link show` of one link (None if absent), in the host netns or `netns`."""
    args = ["ip", "-j", *(["-n", netns.name] if netns else []), "link", "show", "dev", name]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    found: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    return found[0] if found else None


def ip_addrs(name: str, netns: Path) -> list[str]:
    args = ["ip", "-j", "-n", netns.name, "addr", "show", "dev", name]
    out = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"] if a["family"] == "inet"]


def leased_ips(data_dir: Path, network: str) -> list[str]:
    """Addresses host-local holds (one file per address under dataDir/<network>)."""
    base = data_dir / network
    if not base.is_dir():
        return []
    out = []
    for entry in base.iterdir():
        try:
            ipaddress.ip_address(entry.name)
        except ValueError:
            continue
        out.append(entry.name)
    return sorted(out)


@dataclass
class Lab:
    """One veth-mode host + state dir + IPAM data dir, and helpers to run the CNI verbs."""

    root: Path
    state: Path
    data: Path
    network: str = "sknet"
    ipam_range: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.sysfs = open_sysfs(self.root)
        self.netlink: Netlink = open_netlink(self.root)
        self.store = StateStore(self.state)

    def ctx(self, **extra: Any) -> AttachContext:
        extra.setdefault("boot_id", cached_boot_id())  # as the adapters fill it
        return AttachContext(
            sysfs=self.sysfs,
            netlink=self.netlink,
            ipam=Ipam([CNI_DIR]),
            store=self.store,
            lock_timeout=5.0,
            return_timeout=0.3,
            **extra,
        )

    def env(self, command: str, container: str, netns: Path | None, ifname: str = "net1") -> CniEnv:
        raw = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(CNI_DIR),
        }
        if netns is not None:
            raw["CNI_NETNS"] = str(netns)
        return CniEnv.from_env(raw)

    def raw(self, vf: str | None, *, ipam: bool = True, **extra: Any) -> dict[str, Any]:
        # Debian 12's host-local speaks up to 1.0.0; GC needs 1.1.0 (its IPAM DEL falls back).
        version = "1.1.0" if "cni.dev/valid-attachments" in extra else "1.0.0"
        raw: dict[str, Any] = {"cniVersion": version, "name": self.network, "type": "sriov"}
        if vf is not None:
            raw["deviceID"] = vf
        if ipam:
            rng = self.ipam_range or {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}
            raw["ipam"] = {
                "type": "host-local",
                "ranges": [[rng]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(self.data),
            }
        raw.update(extra)
        return raw

    def conf(self, env: CniEnv, raw: dict[str, Any]) -> NetConf:
        return parse_netconf(json.dumps(raw).encode(), env)

    def vf_info(self, pf: str, index: int) -> VfInfo:
        return self.netlink.vfs(pf)[index]

    def close(self) -> None:
        self.netlink.close()


def _child(spec: dict[str, Any]) -> int:
    """Run one ADD and die at checkpoint `spec["step"]` like a killed process."""
    lab = Lab(Path(spec["root"]), Path(spec["state"]), Path(spec["data"]))

    def checkpoint(step: str) -> None:
        if step == spec["step"]:
            os._exit(KILLED)

    env = lab.env("ADD", spec["container"], Path(spec["netns"]))
    raw = lab.raw(spec["vf"], **spec.get("extra", {}))
    attach.add(lab.ctx(checkpoint=checkpoint), env, lab.conf(env, raw), raw)
    return 0


if __name__ == "__main__":
    sys.exit(_child(json.loads(sys.argv[1])))
