"""Issue 10 on real igb VFs: a pod that renames the VF, a pod netns deleted before DEL (with and
without `mac` and `trust`), ADD onto an ifname the pod has, ADD with `mac` and trust off.

Each case ends with the VF back in the host exactly as it was: netdev name, MAC, MTU, admin
state, and every PF-side attribute (admin MAC, VLAN, QoS, spoofchk, trust).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.host.netlink import LinkChange
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.ops.vf import set_num_vfs

pytestmark = pytest.mark.lab

PF = PciAddress.parse("0000:01:00.0")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pod() -> Iterator[str]:
    name = f"hp-{uuid.uuid4().hex[:6]}"
    _ip("netns", "add", name)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


class Vf:
    """One igb VF on PF 0 and the seams to look at it."""

    def __init__(self) -> None:
        from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415

        self.sysfs = Sysfs(Path("/"))
        self.nl = Pyroute2Netlink()
        (self.pf_name,) = self.sysfs.netdev_map()[PF]
        # igb answers VF mailbox requests only while the PF is up
        self.nl.set_link(self.pf_name, LinkChange(up=True))
        vf = set_num_vfs(self.sysfs, PF, 1)[0]
        self.address = str(vf.address)
        (self.name,) = vf.netdevs

    def snapshot(self) -> tuple[Any, ...]:
        link = self.nl.link(self.name)
        info = self.nl.vfs(self.pf_name)[0]
        return (
            link.name, link.mac, link.mtu, link.up, link.parent,
            info.mac, info.vlan, info.qos, info.spoofchk, info.trust,
        )  # fmt: skip

    def close(self) -> None:
        self.nl.close()


@pytest.fixture
def vf() -> Iterator[Vf]:
    v = Vf()
    yield v
    v.close()


def cni(
    command: str, pod: str, conf: dict[str, Any], state: Path, ifname: str = "net1"
) -> tuple[int, dict[str, Any]]:
    from sriovkit.cni.dispatch import execute  # noqa: PLC0415

    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "ctr-hostile",
        "CNI_NETNS": f"/run/netns/{pod}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/usr/lib/cni",
        "SRIOVKIT_STATE_DIR": str(state),
    }
    code, out = execute(env, json.dumps(conf).encode())
    return code, (json.loads(out) if out.strip() else {})


def conf(vf: Vf, **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "lab-hostile",
        "type": "sriov",
        "deviceID": vf.address,
        "vlan": 100,
        "vlanQoS": 2,
        "spoofchk": "on",
        "ipam": {"type": "static", "addresses": [{"address": "10.78.0.1/24"}]},
        **extra,
    }


def ok(result: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    code, out = result
    assert code == 0, out
    return out


def no_records(state: Path) -> bool:
    return not list(state.rglob("*.json"))


@pytest.mark.parametrize(
    "extra",
    [{}, {"mac": "02:5a:00:00:20:01"}, {"mac": "02:5a:00:00:20:02", "trust": "on"}],
    ids=["plain", "mac", "mac-trust"],
)
def test_renamed_vf_in_the_pod_comes_home(
    vf: Vf, pod: str, tmp_path: Path, extra: dict[str, Any]
) -> None:
    before = vf.snapshot()
    c = conf(vf, **extra)
    ok(cni("ADD", pod, c, tmp_path))
    if "mac" in extra:
        assert extra["mac"] in _ip("-n", pod, "link", "show", "net1")
    _ip("-n", pod, "link", "set", "net1", "down")
    _ip("-n", pod, "link", "set", "net1", "name", "foo")
    _ip("-n", pod, "link", "set", "foo", "up")
    ok(cni("DEL", pod, c, tmp_path))
    assert "foo" not in _ip("-n", pod, "-br", "link")
    assert vf.snapshot() == before
    assert no_records(tmp_path)


@pytest.mark.parametrize(
    "extra",
    [{}, {"mac": "02:5a:00:00:21:01"}, {"mac": "02:5a:00:00:21:02", "trust": "on"}],
    ids=["plain", "mac", "mac-trust"],
)
def test_pod_netns_deleted_before_del(
    vf: Vf, pod: str, tmp_path: Path, extra: dict[str, Any]
) -> None:
    before = vf.snapshot()
    c = conf(vf, **extra)
    ok(cni("ADD", pod, c, tmp_path))
    _ip("netns", "del", pod)
    # The kernel returns the VF to the host once the netns cleanup ran; DEL may answer
    # "try again" (11) until then, as a runtime's retry would see.
    deadline = time.monotonic() + 30
    while True:
        code, out = cni("DEL", pod, c, tmp_path)
        if code == 0 or time.monotonic() > deadline:
            break
        assert out.get("code") == 11, out
        time.sleep(0.5)
    assert code == 0, out
    assert vf.snapshot() == before
    assert no_records(tmp_path)


def test_add_onto_an_ifname_the_pod_has_changes_nothing(
    vf: Vf, pod: str, tmp_path: Path
) -> None:
    before = vf.snapshot()
    _ip("-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    _ip("-n", pod, "addr", "add", "192.0.2.7/24", "dev", "eth0")
    code, out = cni("ADD", pod, conf(vf, mac="02:5a:00:00:22:01"), tmp_path, ifname="eth0")
    assert code != 0 and out["code"] == 4 and "eth0" in out["msg"], out
    code, out = cni("ADD", pod, conf(vf), tmp_path, ifname="lo")
    assert code != 0 and out["code"] == 4, out
    assert vf.snapshot() == before
    assert "192.0.2.7/24" in _ip("-n", pod, "-o", "addr", "show", "eth0")
    assert no_records(tmp_path)
    ok(cni("DEL", pod, conf(vf), tmp_path, ifname="eth0"))  # nothing recorded: a no-op
    assert "eth0" in _ip("-n", pod, "-br", "link") and vf.snapshot() == before


def test_mac_without_trust(vf: Vf, pod: str, tmp_path: Path) -> None:
    before = vf.snapshot()
    c = conf(vf, mac="02:5a:00:00:23:01", trust="off")
    res = ok(cni("ADD", pod, c, tmp_path))
    assert res["interfaces"][0]["mac"] == "02:5a:00:00:23:01"
    assert "02:5a:00:00:23:01" in _ip("-n", pod, "link", "show", "net1")
    info = vf.nl.vfs(vf.pf_name)[0]
    assert (info.mac, info.trust) == ("02:5a:00:00:23:01", False)
    ok(cni("DEL", pod, c, tmp_path))
    assert vf.snapshot() == before
    assert no_records(tmp_path)
