"""Bad input through the real shim: the right CNI code, one JSON error on stdout, host unchanged.

Every case runs the installed shim as a process with real env and stdin, once in-process (no
agent listening) and once through a real `sriovkit agent`. After each case the host must be as
it was: every VF netdev still in the host netns with its name, MAC, MTU and admin state, the
PF-side VF attributes equal, no attachment or allocation record, no IPAM lease.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cnikit import (
    NO_AGENT,
    AgentProcess,
    CniLab,
    cni_plugins_missing,
    install_shim,
    running_agent,
    short_dir,
)

pytestmark = pytest.mark.root

if os.geteuid() != 0 or cni_plugins_missing():
    pytest.skip(cni_plugins_missing() or "needs root for netns and veth", allow_module_level=True)

from sriovkit.sim.veth import create_veth_host  # noqa: E402

VF = "0000:3b:10.0"  # the first VF of the 82576 profile's first port


# (id, change to the config: dict merged / None keys removed / bytes replaces stdin,
#  change to the env: str set / None removed, expected CNI code)
Case = tuple[str, "dict[str, Any] | bytes", "dict[str, str | None]", int]

CASES: list[Case] = [
    # malformed JSON (6)
    ("json-garbage", b"{not json", {}, 6),
    ("json-empty", b"", {}, 6),
    ("json-array", b"[1, 2]", {}, 6),
    ("json-truncated", b'{"cniVersion": "1.0.0", "name": "x"', {}, 6),
    # wrong types (7)
    ("type-vlan-string", {"vlan": "100"}, {}, 7),
    ("type-mtu-string", {"mtu": "1500"}, {}, 7),
    ("type-spoofchk-int", {"spoofchk": 1}, {}, 7),
    ("type-ipam-string", {"ipam": "host-local"}, {}, 7),
    ("type-name-int", {"name": 5}, {}, 7),
    ("type-deviceid-list", {"deviceID": [VF]}, {}, 7),
    # a config for a plugin sriovkit does not serve (the dispatch table has no such type)
    ("type-unknown-plugin", {"type": "macvlan"}, {}, 7),
    # out of range (7)
    ("range-vlan-4096", {"vlan": 4096}, {}, 7),
    ("range-vlan-negative", {"vlan": -1}, {}, 7),
    ("range-qos-8", {"vlan": 10, "vlanQoS": 8}, {}, 7),
    ("range-mtu-67", {"mtu": 67}, {}, 7),
    ("range-mtu-70000", {"mtu": 70000}, {}, 7),
    ("range-min-over-max", {"min_tx_rate": 200, "max_tx_rate": 100}, {}, 7),
    ("range-rate-negative", {"max_tx_rate": -1}, {}, 7),
    ("range-link-state", {"link_state": "sideways"}, {}, 7),
    # bad MAC (7)
    ("mac-garbage", {"mac": "not-a-mac"}, {}, 7),
    ("mac-too-long", {"mac": "02:00:00:00:00:00:01"}, {}, 7),
    ("mac-zero", {"mac": "00:00:00:00:00:00"}, {}, 7),
    ("mac-runtime-config", {"runtimeConfig": {"mac": "02:00:zz:00:00:01"}}, {}, 7),
    ("mac-cni-args", {}, {"CNI_ARGS": "IgnoreUnknown=1;MAC=02:00:00:00:00"}, 7),
    # QoS / 802.1ad need a VLAN (7)
    ("qos-without-vlan", {"vlanQoS": 3}, {}, 7),
    ("proto-without-vlan", {"vlanProto": "802.1ad"}, {}, 7),
    # names that would become paths (4)
    ("containerid-dotdot", {}, {"CNI_CONTAINERID": "../../etc"}, 4),
    ("containerid-slash", {}, {"CNI_CONTAINERID": "abc/def"}, 4),
    ("ifname-slash", {}, {"CNI_IFNAME": "net/1"}, 4),
    ("ifname-dotdot", {}, {"CNI_IFNAME": ".."}, 4),
    ("netns-relative", {}, {"CNI_NETNS": "run/netns/x"}, 4),
    # missing / unknown environment (4)
    ("missing-command", {}, {"CNI_COMMAND": None}, 4),
    ("missing-ifname", {}, {"CNI_IFNAME": None}, 4),
    ("missing-netns", {}, {"CNI_NETNS": None}, 4),
    ("missing-containerid", {}, {"CNI_CONTAINERID": None}, 4),
    ("unknown-command", {}, {"CNI_COMMAND": "FROB"}, 4),
    # versions (1)
    ("version-unknown", {"cniVersion": "9.9.9"}, {}, 1),
    ("version-missing", {"cniVersion": None}, {}, 1),
    ("version-gc-too-old", {"cni.dev/valid-attachments": []}, {"CNI_COMMAND": "GC"}, 1),
    # the VF (7)
    ("deviceid-missing", {"deviceID": None}, {}, 7),
    ("deviceid-garbage", {"deviceID": "0000:zz:10.0"}, {}, 7),
    ("deviceid-no-domain", {"deviceID": "3b:10.0"}, {}, 7),
    (
        "device-info-missing",
        {"deviceID": None, "runtimeConfig": {"CNIDeviceInfoFile": "/nonexistent/x.json"}},
        {},
        7,
    ),
    # other fields (7)
    ("ipam-type-path", {"ipam": {"type": "../../bin/sh"}}, {}, 7),
    ("loglevel-unknown", {"logLevel": "chatty"}, {}, 7),
    ("check-without-prevresult", {}, {"CNI_COMMAND": "CHECK"}, 7),
]


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with short_dir() as directory, running_agent(directory) as running:
        yield running


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CniLab]:
    tmp = tmp_path_factory.mktemp("badinput")
    host = create_veth_host(tmp / "host", "82576", vfs=2, prefix="sb" + uuid.uuid4().hex[:4])
    try:
        made = CniLab(
            host, tmp / "state", tmp / "ipam",
            install_shim(tmp / "bin", NO_AGENT, tmp / "state", host.root), NO_AGENT,
        )  # fmt: skip
    except BaseException:
        host.cleanup()  # real veth pairs: never leak them when set-up fails half-way
        raise
    try:
        assert host.pairs[0].vf == VF
        yield made
    finally:
        made.cleanup()
        host.cleanup()


@pytest.fixture(scope="module")
def pod(lab: CniLab) -> Path:
    return lab.new_netns()


def stdin_for(lab: CniLab, change: dict[str, Any] | bytes) -> bytes:
    if isinstance(change, bytes):
        return change
    conf = lab.conf(VF)
    for key, value in change.items():
        if value is None:
            conf.pop(key, None)
        else:
            conf[key] = value
    return json.dumps(conf).encode()


@pytest.mark.parametrize("mode", ["in-process", "agent"])
@pytest.mark.parametrize(
    ("case", "conf_change", "env_change", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input(
    lab: CniLab,
    pod: Path,
    mode: str,
    shim_kind: str,
    request: pytest.FixtureRequest,
    case: str,
    conf_change: dict[str, Any] | bytes,
    env_change: dict[str, str | None],
    code: int,
) -> None:
    lab.agent_socket = request.getfixturevalue("agent").socket if mode == "agent" else NO_AGENT
    # The socket is fixed at install: one shim per mode (and kind).
    lab.shim = install_shim(lab.state.parent / f"bin-{mode}-{shim_kind}", lab.agent_socket,
                            lab.state, lab.host.root, shim_kind)  # fmt: skip
    before = lab.snapshot()
    env = lab.env("ADD", uuid.uuid4().hex, pod)
    for key, value in env_change.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    out = lab.run(env, stdin_for(lab, conf_change))
    assert out.code != 0, out.stdout
    error = json.loads(out.stdout)  # the whole of stdout is the one JSON error object
    assert isinstance(error, dict)
    assert error["code"] == code, error
    assert isinstance(error["msg"], str) and error["msg"]
    assert "Traceback" not in out.stderr.decode(errors="replace")
    assert out.stderr == b""
    assert lab.snapshot() == before
    assert lab.records() == []
