"""The agent image, run as the DaemonSet runs it, serves podman's `sriov` networks on the host.

The image's `sriovkit agent` runs in a privileged container (host network and PID, /sys, /dev
and /run/netns of the host) against a veth-mode simulated 82576 made on the host. At start it
installs the static shim into a host bin dir. podman (CNI backend) on the host then runs
containers whose network is the `sriov` plugin: podman executes the installed static shim, the
shim talks to the agent in its container, and the agent moves the VF into the container.

Then the agent container is stopped: DELs are journaled by the shim (no agent, no fallback),
and the restarted agent replays them before it serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cnikit import CNI_BIN, CniLab, ip_links
from imagekit import SHIM_IN_IMAGE, AgentContainer
from podmankit import Podman, PodmanBase, RuntimeLab, _shared_libraries, containers_conf
from test_podman_sriov import assert_attached, pf_vf

from sriovkit.cni.cshim import CONFIG_NAME
from sriovkit.sim.veth import create_veth_host

pytestmark = [pytest.mark.root, pytest.mark.image]

SUBNET = ("10.61.0.0/24", "10.62.0.0/24", "10.63.0.0/24")


@pytest.fixture
def base() -> Iterator[Path]:
    """The test's node directories; a short path (unix sockets: 107 bytes)."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    made = Path(tempfile.mkdtemp(prefix="skia", dir="/tmp"))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def agent(image_podman: Podman, base: Path) -> Iterator[AgentContainer]:
    """The agent container (created, not started) for a veth-mode 82576 host under `base`."""
    host = create_veth_host(base / "host", "82576", vfs=2, prefix="ski" + uuid.uuid4().hex[:4])
    try:
        # host-local: podman's CNI_PATH names it in /usr/lib/cni, where the agent execs it.
        made = AgentContainer.create(
            image_podman, base, host.root, extra_mounts=(f"{CNI_BIN}:{CNI_BIN}:ro",)
        )
        made.host = host  # type: ignore[attr-defined]
        try:
            yield made
        finally:
            made.remove()
    finally:
        host.cleanup()


@pytest.fixture
def rt(agent: AgentContainer, base: Path, workload_podman: PodmanBase) -> Iterator[RuntimeLab]:
    """podman whose CNI plugins are the agent's bin dir, then Debian's (host-local)."""
    net_dir = base / "net.d"
    net_dir.mkdir()
    conf = base / "containers.conf"
    conf.write_text(containers_conf(workload_podman.dir, net_dir, [agent.bin_dir, CNI_BIN]))
    host = agent.host  # type: ignore[attr-defined]
    cni = CniLab(host, agent.state, base / "ipam", agent.bin_dir / "sriov", agent.socket)
    # Mode "image": the agent's log is the container's (`served` below reads it).
    lab = RuntimeLab(host, cni, workload_podman.podman(conf), net_dir, "image", None)
    try:
        yield lab
    finally:
        lab.cleanup()


def served(agent: AgentContainer, command: str, pod_id: str, ifname: str) -> bool:
    return f"{command} {pod_id}/{ifname} -> 0" in agent.logs()


def journal(agent: AgentContainer) -> list[str]:
    d = agent.state / "pending-del"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def test_image_agent_installs_the_static_shim_and_serves_podman(
    agent: AgentContainer, rt: RuntimeLab
) -> None:
    before = rt.cni.snapshot()
    agent.start()
    shim = agent.bin_dir / "sriov"
    # The image's static shim, byte for byte, with the agent's settings beside it.
    assert shim.read_bytes() == agent.cat(SHIM_IN_IMAGE)
    assert _shared_libraries(shim) == []  # static: runs with no libc of the host's
    settings = (agent.bin_dir / CONFIG_NAME).read_text()
    assert str(agent.socket) in settings and str(agent.state) in settings
    assert str(rt.host.root) in settings

    # Round trip: the VF is the container's eth0 with its address; rm gives it back exactly.
    vf0 = rt.vf(0)
    rt.network("skimg0", vf0, SUBNET[0], mtu=1400, vlan=100, spoofchk="off")
    pod = rt.run("--network", "skimg0")
    cidr = assert_attached(rt, pod, vf0, "eth0", "skimg0")
    assert cidr.startswith("10.61.0.")
    assert pf_vf(rt, vf0)[1] == 100
    assert served(agent, "ADD", pod.id, "eth0"), agent.logs()
    rt.rm(pod)
    assert served(agent, "DEL", pod.id, "eth0"), agent.logs()
    assert rt.cni.snapshot() == before

    # Two more containers, each with a VF; then the agent goes away.
    vf1, vf2 = rt.vf(1), rt.vf(2)
    rt.network("skimg1", vf1, SUBNET[1], vlan=11, trust="on")
    rt.network("skimg2", vf2, SUBNET[2], vlan=12, mtu=1300)
    removed = rt.run("--network", "skimg1")
    kept = rt.run("--network", "skimg2")
    assert_attached(rt, removed, vf1, "eth0", "skimg1")
    assert_attached(rt, kept, vf2, "eth0", "skimg2")
    agent.stop()
    assert not agent.socket.exists()
    attached = rt.cni.snapshot()

    # The removal of a container and a disconnect (its netns lives on), with no agent: the shim
    # journals each DEL and succeeds, and nothing is given back yet.
    rt.rm(removed)
    rt.podman("network", "disconnect", "skimg2", kept.name)
    assert journal(agent) == sorted([f"{removed.id}@eth0.del", f"{kept.id}@eth0.del"])
    now = rt.cni.snapshot()
    assert now["vfs"] == attached["vfs"] and now["records"] == attached["records"]
    assert "eth0" in rt.pod_links(kept)  # still in the container

    # The agent comes back: it replays both before it serves.
    agent.start()
    logs = agent.logs()
    assert f"pending DEL {removed.id}@eth0.del replayed" in logs
    assert f"pending DEL {kept.id}@eth0.del replayed" in logs
    assert journal(agent) == []
    after = rt.cni.snapshot()
    # The disconnected VF is back exactly: the very netdev in the host, as it was.
    assert "eth0" not in rt.pod_links(kept)
    assert after["netdevs"][vf2] == before["netdevs"][vf2]
    assert ip_links()[rt.host.pair(vf2).name]["ifindex"] == rt.original_ifindex[vf2]
    # The removed container's netns is gone. A real VF comes back to the host by itself; its
    # veth stand-in died with the netns (the veth-mode caveat). Everything else is back exactly.
    assert after["vfs"] == before["vfs"]
    assert (after["records"], after["leases"]) == ([], [])
    assert after["netdevs"][vf1] is None
    assert {k: v for k, v in after["netdevs"].items() if k != vf1} == {
        k: v for k, v in before["netdevs"].items() if k != vf1
    }
