"""ADD's rollback against a real kernel (veth mode): the VF comes back wherever the failure hit.

The kernel's RTM_NEWLINK handler moves and renames a netdev into the target netns first and sets
MTU/MAC/up afterwards, so a refused MTU (above the driver's maximum, say) fails the request with
the netdev already in the pod. `PartialMove` reproduces that order with the real kernel: it
performs the move + rename, then reports the error a real driver would.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import HostError
from sriovkit.host.ipam import Ipam
from sriovkit.host.netlink import LinkChange, Netlink
from sriovkit.model.attachment import AttachmentKey
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.sim.veth import VethHost, VethPair

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 (netns, veth)", allow_module_level=True)

from attach_lab import (  # noqa: E402
    CNI_DIR,
    Lab,
    drop_netns,
    ip_addrs,
    ip_link,
    leased_ips,
    make_netns,
)

if not (CNI_DIR / "host-local").is_file():
    pytest.skip(f"needs host-local in {CNI_DIR}", allow_module_level=True)


class Wrapped:
    """A Netlink seam passing everything through except what a test overrides."""

    def __init__(self, inner: Netlink) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class PartialMove(Wrapped):
    """The kernel's order: move + rename applied, then MTU refused (EINVAL), once."""

    def __init__(self, inner: Netlink) -> None:
        super().__init__(inner)
        self.done = False

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        if self.done:
            self.inner.move_link(name, netns, change)
            return
        self.done = True
        self.inner.move_link(name, netns, LinkChange(new_name=change.new_name))
        raise HostError(f"failed to move link {name} to {netns}: Invalid argument", errno.EINVAL)


class PodUnreachableOnce(Wrapped):
    """The move succeeds, then opening the pod netns fails once (say a transient EMFILE)."""

    def __init__(self, inner: Netlink) -> None:
        super().__init__(inner)
        self.failed = False

    def in_netns(self, netns: Path) -> Netlink:
        if not self.failed:
            self.failed = True
            raise HostError(f"cannot enter netns {netns}: Too many open files", errno.EMFILE)
        return self.inner.in_netns(netns)


class StuckInPod(Wrapped):
    """Dropping the altname fails, and so does every move out of the pod."""

    def in_netns(self, netns: Path) -> Netlink:
        return _StuckPod(self.inner.in_netns(netns))


class _StuckPod(Wrapped):
    def del_altname(self, name: str, altname: str) -> None:
        raise HostError(f"failed to delete altname {altname} of {name}: Busy", errno.EBUSY)

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        raise HostError(f"failed to move link {name} to {netns}: Busy", errno.EBUSY)


def show(name: str, netns: Path | None = None) -> tuple[object, ...] | None:
    link = ip_link(name, netns)
    if link is None:
        return None
    return (
        link["ifname"], link["mtu"], link["address"], "UP" in link["flags"],
        tuple(link.get("altnames", ())),
    )  # fmt: skip


def with_netlink(lab: Lab, wrap: type[Wrapped]) -> AttachContext:
    ctx = lab.ctx()
    return dataclasses.replace(ctx, netlink=wrap(ctx.netlink))  # type: ignore[arg-type]


def add_altname_and_up(pair: VethPair) -> None:
    dev = pair.name
    subprocess.run(["ip", "link", "property", "add", "dev", dev, "altname", dev + "x"], check=True)
    subprocess.run(["ip", "link", "set", dev, "up"], check=True)


def assert_no_records(lab: Lab) -> None:
    assert lab.store.attachment_keys() == []
    assert list(lab.store.allocations()) == []


def test_move_failing_after_the_netns_change_brings_the_vf_back(
    lab: Lab, host: VethHost, pod: Path
) -> None:
    pair = host.pairs[0]
    add_altname_and_up(pair)
    before = show(pair.name)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, mtu=9000)
    with pytest.raises(HostError, match="Invalid argument"):
        attach.add(with_netlink(lab, PartialMove), env, lab.conf(env, raw), raw)
    assert show("net1", pod) is None
    assert show(pair.name) == before
    assert_no_records(lab)
    # host-local ran alongside the move (it never looks at the pod); its lease went back.
    assert leased_ips(lab.data, lab.network) == []


def test_pod_unreachable_after_the_move_brings_the_vf_back(
    lab: Lab, host: VethHost, pod: Path
) -> None:
    pair = host.pairs[0]
    before = show(pair.name)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, mtu=1400)
    with pytest.raises(HostError, match="Too many open files"):
        attach.add(with_netlink(lab, PodUnreachableOnce), env, lab.conf(env, raw), raw)
    assert show("net1", pod) is None
    assert show(pair.name) == before
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []


def test_failed_move_back_keeps_the_records_and_del_finishes(
    lab: Lab, host: VethHost, pod: Path
) -> None:
    pair = host.pairs[1]
    add_altname_and_up(pair)
    before = show(pair.name)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf, mtu=1400)
    with pytest.raises(HostError, match="keeps its record") as err:
        attach.add(with_netlink(lab, StuckInPod), env, lab.conf(env, raw), raw)
    assert "moving the VF back" in str(err.value)
    assert show("net1", pod) is not None  # still in the pod, and DEL can find it
    assert lab.store.attachment_keys() == [AttachmentKey("c1", "net1")]
    attach.delete(lab.ctx(), lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    assert show("net1", pod) is None
    assert show(pair.name) == before
    assert_no_records(lab)


def test_failed_add_returns_the_vf_up_and_with_its_altnames(
    lab: Lab, host: VethHost, pod: Path
) -> None:
    # A range of one address: the first ADD takes it, the second fails at IPAM after the move.
    lab.ipam_range = {"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.5", "rangeEnd": "10.77.0.5"}
    first, second = host.pairs[0], host.pairs[1]
    other = make_netns()
    try:
        env1 = lab.env("ADD", "c1", other)
        raw1 = lab.raw(first.vf)
        attach.add(lab.ctx(), env1, lab.conf(env1, raw1), raw1)
        add_altname_and_up(second)
        before = show(second.name)
        env2 = lab.env("ADD", "c2", pod)
        raw2 = lab.raw(second.vf, mtu=1280)
        with pytest.raises(HostError, match="host-local"):
            attach.add(lab.ctx(), env2, lab.conf(env2, raw2), raw2)
        assert show(second.name) == before
        assert show("net1", pod) is None
        assert lab.store.attachment_keys() == [AttachmentKey("c1", "net1")]
        assert leased_ips(lab.data, lab.network) == ["10.77.0.5"]
    finally:
        drop_netns(other)


class FailingMove(Wrapped):
    """The kernel refuses the move outright (nothing moved), as for a name taken in the pod."""

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        raise HostError(f"failed to move link {name} to {netns}: File exists", errno.EEXIST)


class SlowIpam(Ipam):
    """host-local, but slow to answer ADD: the move fails while the plugin still runs."""

    finished = threading.Event()

    def add(self, netconf: Any, env: Any) -> dict[str, Any]:
        try:
            time.sleep(0.3)
            return super().add(netconf, env)
        finally:
            self.finished.set()


def test_move_refused_while_ipam_still_runs_releases_the_lease_it_then_took(
    lab: Lab, host: VethHost, pod: Path
) -> None:
    # IPAM DEL must wait for the overlapped ADD: a DEL that overtook it would free nothing and
    # leak the address the ADD takes afterwards.
    pair = host.pairs[0]
    before = show(pair.name)
    env = lab.env("ADD", "c1", pod)
    raw = lab.raw(pair.vf)
    ipam = SlowIpam([CNI_DIR])
    ctx = dataclasses.replace(with_netlink(lab, FailingMove), ipam=ipam)
    with pytest.raises(HostError, match="File exists"):
        attach.add(ctx, env, lab.conf(env, raw), raw)
    assert ipam.finished.wait(10)  # had ADD's rollback not waited for it, it would end now
    assert show(pair.name) == before
    assert_no_records(lab)
    assert leased_ips(lab.data, lab.network) == []


class TimedMove(Wrapped):
    """Notes when (wall clock, ns) the move into the pod returned."""

    moved_ns = 0

    def move_link(self, name: str, netns: Path, change: LinkChange) -> None:
        self.inner.move_link(name, netns, change)
        self.moved_ns = time.time_ns()


def test_an_ipam_plugin_that_needs_the_pod_runs_once_the_vf_is_in_it(
    lab: Lab, host: VethHost, pod: Path, tmp_path: Path
) -> None:
    # Only plugins known to ignore the pod (host-local, static, whereabouts) overlap the move;
    # any other (dhcp runs its client on CNI_IFNAME in CNI_NETNS) must find the interface.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "needs-pod"
    started = tmp_path / "started"
    plugin.write_text(
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        'if [ "$CNI_COMMAND" != ADD ]; then exit 0; fi\n'
        f"date +%s%N >{started}\n"
        'if ! nsenter --net="$CNI_NETNS" ip link show "$CNI_IFNAME" >/dev/null 2>&1; then\n'
        '  echo \'{"cniVersion":"1.0.0","code":11,"msg":"no interface in the pod yet"}\'\n'
        "  exit 1\n"
        "fi\n"
        'echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.9/24"}]}\'\n'
    )
    plugin.chmod(0o755)
    pair = host.pairs[1]
    env = lab.env("ADD", "c1", pod)
    raw = {**lab.raw(pair.vf, ipam=False), "ipam": {"type": "needs-pod"}}
    ctx = dataclasses.replace(with_netlink(lab, TimedMove), ipam=Ipam([bin_dir]))
    result = attach.add(ctx, env, lab.conf(env, raw), raw)
    assert int(started.read_text()) >= ctx.netlink.moved_ns  # type: ignore[attr-defined]
    assert [ip.address for ip in result.ips] == ["10.88.0.9/24"]
    assert ip_addrs("net1", pod) == ["10.88.0.9/24"]
    attach.delete(ctx, lab.env("DEL", "c1", pod), lab.conf(env, raw), raw)
    assert show("net1", pod) is None
    assert_no_records(lab)
