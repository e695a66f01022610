"""The `sriov` CNI plugin on real igb VFs: into two pods on the two ports, traffic, and back."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sriovkit.host.netlink import LinkChange
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.pci import PciAddress
from sriovkit.ops.vf import set_num_vfs

pytestmark = pytest.mark.lab

PFS = (PciAddress.parse("0000:01:00.0"), PciAddress.parse("0000:01:00.1"))


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pods() -> Iterator[tuple[str, str]]:
    names = (f"pa-{uuid.uuid4().hex[:6]}", f"pb-{uuid.uuid4().hex[:6]}")
    for n in names:
        _ip("netns", "add", n)
    yield names
    for n in names:
        subprocess.run(["ip", "netns", "del", n], check=False)


def _cni(command: str, netns: str, container: str, conf: dict[str, object], state: Path) -> dict:
    from sriovkit.cni.dispatch import execute  # noqa: PLC0415

    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": "net1",
        "CNI_PATH": "/usr/lib/cni",
        "SRIOVKIT_STATE_DIR": str(state),
    }
    code, out = execute(env, json.dumps(conf).encode())
    assert code == 0, out.decode()
    return json.loads(out) if out.strip() else {}


def _conf(vf: PciAddress, address: str, mac: str) -> dict[str, object]:
    return {
        "cniVersion": "1.1.0",  # the result carries pciID and mtu only from 1.1.0 on
        "name": "lab-sriov",
        "type": "sriov",
        "deviceID": str(vf),
        "vlan": 100,
        "vlanQoS": 3,
        "spoofchk": "on",
        "trust": "on",
        "mac": mac,
        "ipam": {"type": "static", "addresses": [{"address": address}]},
    }


def test_vfs_on_both_ports_into_pods_talk_and_come_back(
    pods: tuple[str, str], tmp_path: Path
) -> None:
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415

    sysfs = Sysfs(Path("/"))
    nl = Pyroute2Netlink()
    try:
        vfs, pf_names, before = [], [], []
        for pf in PFS:
            (pf_name,) = sysfs.netdev_map()[pf]
            # igb answers VF mailbox requests only while the PF is up; carrier comes from the hub.
            nl.set_link(pf_name, LinkChange(up=True))
            vf = set_num_vfs(sysfs, pf, 1)[0]
            vfs.append(vf)
            pf_names.append(pf_name)
            (vf_name,) = vf.netdevs
            link = nl.link(vf_name)
            before.append((vf_name, link.mac, link.mtu, nl.vfs(pf_name)[0]))

        addrs = ("10.77.0.1/24", "10.77.0.2/24")
        macs = ("02:5a:00:00:10:01", "02:5a:00:00:10:02")
        confs = [_conf(vf.address, a, m) for vf, a, m in zip(vfs, addrs, macs, strict=True)]
        results = [
            _cni("ADD", pod, f"ctr{i}", conf, tmp_path)
            for i, (pod, conf) in enumerate(zip(pods, confs, strict=True))
        ]
        for i, (pod, res) in enumerate(zip(pods, results, strict=True)):
            assert res["interfaces"][0]["name"] == "net1"
            assert res["interfaces"][0]["pciID"] == str(vfs[i].address)
            assert res["interfaces"][0]["mac"] == macs[i]
            assert "net1" in _ip("-n", pod, "-br", "link")
            vf_state = nl.vfs(pf_names[i])[0]
            assert (vf_state.vlan, vf_state.qos, vf_state.spoofchk, vf_state.trust) == (
                100, 3, True, True,
            )
            assert before[i][0] not in _ip("-br", "link"), "the VF netdev left the host netns"

        # the two ports share QEMU's hub: VF on port 0 <-> VF on port 1, tagged VLAN 100
        ping = subprocess.run(
            ["ip", "netns", "exec", pods[0], "ping", "-c", "3", "-W", "3", "10.77.0.2"],
            capture_output=True, text=True, check=False,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr

        for i, (pod, conf) in enumerate(zip(pods, confs, strict=True)):
            _cni("DEL", pod, f"ctr{i}", conf, tmp_path)
            name, mac, mtu, vf_before = before[i]
            link = nl.link(name)
            assert (link.mac, link.mtu) == (mac, mtu), "VF netdev back with its name, MAC, MTU"
            after = nl.vfs(pf_names[i])[0]
            assert (after.mac, after.vlan, after.qos, after.spoofchk, after.trust) == (
                vf_before.mac, vf_before.vlan, vf_before.qos, vf_before.spoofchk,
                vf_before.trust,
            )  # fmt: skip
        assert not list((tmp_path).rglob("*.json")), "no attachment or allocation record left"
    finally:
        nl.close()
