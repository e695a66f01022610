"""A real node: kubelet 1.20 (built from Debian's source) and containerd 1.6 run our device
plugin and our `sriov` CNI, with no API server and no Multus.

A static pod asks for one `intel.com/igb_vfs`; kubelet calls the agent's GetPreferredAllocation
and Allocate, containerd runs our `sriov` CNI from its plain conflist (resourceName, no
deviceID), and the CNI finds the pod's VF through kubelet's PodResources API. The tests run in
file order on one node (tests/node/conftest.py) and each leaves it as it found it.

How kubelet's view is read without an API server: which pool devices kubelet holds as healthy
(its allocatable) comes from its device manager checkpoint (`nodekit.healthy_devices`, which
says why that file is the same set); its calls to the plugin from its own log (`--v=4`); the
pods' processes from containerd (`ctr tasks ls`).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nodedaemons import connect_lines, foreign_connects, wait_until
from nodekit import KUBELET_DIR, healthy_devices
from nodelab import RESOURCE, SUBNET, Node, vf_pod

from sriovkit.host.podresources import SOCKET, PodResources

pytestmark = [pytest.mark.node, pytest.mark.root]

ENV = "PCIDEVICE_" + RESOURCE.upper().replace(".", "_").replace("/", "_")
DEVINFO = Path("var/run/k8s.cni.cncf.io/devinfo/dp")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


def _pod_links(pid: int) -> list[dict[str, Any]]:
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "addr", "show"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return list(json.loads(out))


def _ifindex(name: str) -> int:
    out = subprocess.run(["ip", "-j", "link", "show", "dev", name], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return int(json.loads(out)[0]["ifindex"])


def _start(node: Node, name: str, vfs: int = 1) -> tuple[str, int]:
    pod = node.kubelet.add_pod(vf_pod(name, vfs))
    procs = wait_until(f"pod {pod}'s container to run",
                       lambda: node.containerd.pod_processes(pod).get("main"))  # fmt: skip
    assert isinstance(procs, int)
    return pod, procs


def _stop(node: Node, name: str, pod: str) -> None:
    node.kubelet.remove_pod(name)
    wait_until(f"pod {pod} to be gone", lambda: not node.containerd.pod_processes(pod))
    wait_until("the attachment records to go", lambda: not node.cni.records())


def test_static_pod_gets_a_vf_and_gives_it_back_exactly(node: Node) -> None:
    before = node.cni.snapshot()
    index_of = {pair.vf: _ifindex(pair.name) for pair in node.host.pairs}
    pod, pid = _start(node, "vfpod")

    env = _environ(pid)
    vf = env.get(ENV)
    assert vf in index_of, f"{ENV}={vf!r}; the pool is {sorted(index_of)}"
    info = json.loads(env[f"{ENV}_INFO"])
    assert vf in info

    # What the `sriov` CNI had to go by (its conflist names the pool, not a VF): kubelet's
    # PodResources answer for this pod, the same VF.
    assert PodResources(KUBELET_DIR / SOCKET).devices("default", pod, RESOURCE) == (vf,)

    # The VF is in the pod as eth0, with an address from host-local.
    links = {link["ifindex"]: link for link in _pod_links(pid)}
    assert index_of[vf] in links, f"VF {vf} not in pod {pod}: {sorted(links)}"
    link = links[index_of[vf]]
    assert link["ifname"] == "eth0"
    addrs = [a["local"] for a in link.get("addr_info", []) if a["family"] == "inet"]
    assert len(addrs) == 1 and ipaddress.ip_address(addrs[0]) in ipaddress.ip_network(SUBNET)

    # The device-info file the device plugin wrote at Allocate is on the host.
    files = sorted((node.host.root / DEVINFO).glob(f"*{vf}*"))
    assert files, f"no device-info file for {vf} in {node.host.root / DEVINFO}"
    assert vf in files[0].read_text()

    # kubelet asked the plugin for a preferred allocation, then allocated that VF.
    log = node.kubelet.daemon.log_text()
    assert "Issuing a GetPreferredAllocation call for container" in log
    assert f"Making allocation request for devices [{vf}] for device plugin {RESOURCE}" in log
    assert any(f"{vf}" in r for r in node.cni.records())
    # containerd ran the static C shim the agent installed (an ELF binary, not a script).
    assert node.cni.shim.read_bytes()[:4] == b"\x7fELF"

    _stop(node, "vfpod", pod)
    assert node.cni.snapshot() == before
    assert _ifindex(node.host.pair(vf).name) == index_of[vf]


def test_kubelet_restart_reregisters_the_pool(node: Node) -> None:
    """kubelet deletes the plugin sockets at restart; the agent must register again, and a new
    pod then gets a VF as before (kubelet admits it only with the pool registered)."""
    before = node.kubelet.registrations(RESOURCE)
    node.kubelet.stop()
    node.kubelet.start()
    wait_until("the agent to register again", lambda: node.kubelet.registrations(RESOURCE) > before)
    pool = sorted(pair.vf for pair in node.host.pairs)
    wait_until("kubelet to hold the whole pool as healthy",
               lambda: healthy_devices(RESOURCE) == pool)  # fmt: skip
    snapshot = node.cni.snapshot()
    pod, pid = _start(node, "afterrestart")
    assert _environ(pid).get(ENV) in pool
    _stop(node, "afterrestart", pod)
    assert node.cni.snapshot() == snapshot


def test_vf_losing_carrier_drops_allocatable(node: Node) -> None:
    """A VF whose link loses carrier (the veth peer goes down) is Unhealthy on ListAndWatch:
    kubelet's allocatable count drops by one, and comes back.

    Observable (no API server, so no node status): kubelet's device manager checkpoint
    `RegisteredDevices`, which kubelet writes from the same healthy-device set its allocatable
    is the size of (`nodekit.healthy_devices`); and, as behaviour, kubelet refusing a pod that
    asks for the whole pool while the VF is down (its admission log line)."""
    pool = sorted(pair.vf for pair in node.host.pairs)
    pair = node.host.pairs[-1]
    subprocess.run(["ip", "link", "set", pair.name, "up"], check=True)
    try:
        wait_until("the whole pool healthy", lambda: healthy_devices(RESOURCE) == pool)
        subprocess.run(["ip", "link", "set", pair.peer, "down"], check=True)
        fewer = [vf for vf in pool if vf != pair.vf]
        wait_until(f"kubelet to drop {pair.vf}", lambda: healthy_devices(RESOURCE) == fewer)
        # kubelet admits by that count: a pod asking for the whole pool is refused now.
        refused = (f"requested number of devices unavailable for {RESOURCE}. "
                   f"Requested: {len(pool)}, Available: {len(fewer)}")  # fmt: skip
        node.kubelet.add_pod(vf_pod("wholepool", len(pool)))
        try:
            wait_until("kubelet to refuse the pod",
                       lambda: refused in node.kubelet.daemon.log_text())  # fmt: skip
        finally:
            node.kubelet.remove_pod("wholepool")
        subprocess.run(["ip", "link", "set", pair.peer, "up"], check=True)
        wait_until(f"kubelet to take {pair.vf} back", lambda: healthy_devices(RESOURCE) == pool)
    finally:
        subprocess.run(["ip", "link", "set", pair.peer, "up"], check=False)
        subprocess.run(["ip", "link", "set", pair.name, "down"], check=False)


def test_daemons_connected_to_loopback_only(node: Node) -> None:
    """The network rule: kubelet, containerd (with its shims, runc and the CNI plugins it ran)
    and the agent connected to unix, netlink and loopback sockets only, and every daemon had
    AWS_EC2_METADATA_DISABLED=true in its environment."""
    for daemon in node.daemons:
        pid = daemon.pid
        assert pid is not None, f"{daemon.name} is not running"
        assert _environ(pid).get("AWS_EC2_METADATA_DISABLED") == "true", daemon.name
        assert connect_lines(daemon.trace) > 0, f"nothing traced for {daemon.name}"
        assert foreign_connects(daemon.trace) == [], f"{daemon.name} connected off the machine"
