"""CNI input: environment and network config validation, with the spec's error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sriovkit.errors import SriovkitError
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.cni import (
    BadEnv,
    CniCommand,
    CniEnv,
    DecodeFailure,
    IncompatibleVersion,
    parse_cni_args,
    parse_device_info,
    parse_netconf,
)
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import LinkState, VlanProto

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "3f2a9c_pod.1-x",
    "CNI_NETNS": "/var/run/netns/pod1",
    "CNI_IFNAME": "net1",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}
BASE: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "sriov-net",
    "type": "sriov",
    "deviceID": "0000:3b:02.1",
}


def env(**changes: str | None) -> dict[str, str]:
    out = dict(ENV)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def conf(**changes: Any) -> bytes:
    out = dict(BASE)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return json.dumps(out).encode()


def parse(data: bytes, e: dict[str, str] | None = None) -> Any:
    return parse_netconf(data, CniEnv.from_env(e or ENV))


# --- environment -------------------------------------------------------------------------


def test_env_add_parsed() -> None:
    e = CniEnv.from_env(env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web-0;MAC=02:00:00:00:00:07"))
    assert e.command is CniCommand.ADD
    assert e.key == AttachmentKey("3f2a9c_pod.1-x", "net1")
    assert e.netns == "/var/run/netns/pod1"
    assert e.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert e.args == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web-0", "MAC": "02:00:00:00:00:07"}


def test_del_tolerates_missing_netns() -> None:
    e = CniEnv.from_env(env(CNI_COMMAND="DEL", CNI_NETNS=None))
    assert e.netns is None
    assert e.key == AttachmentKey("3f2a9c_pod.1-x", "net1")


@pytest.mark.parametrize("command", ["VERSION", "STATUS", "GC"])
def test_commands_without_attachment_need_no_ids(command: str) -> None:
    e = CniEnv.from_env({"CNI_COMMAND": command})
    assert e.command == command
    assert e.container_id is None
    assert e.ifname is None


def test_version_ignores_other_variables() -> None:
    e = CniEnv.from_env(
        env(CNI_COMMAND="VERSION", CNI_CONTAINERID="../x", CNI_NETNS="rel", CNI_ARGS="junk")
    )
    assert e.command is CniCommand.VERSION
    assert (e.container_id, e.netns, e.args) == (None, None, {})


def test_cni_args_values_may_hold_equals() -> None:
    assert parse_cni_args("A=b=c;;B=") == {"A": "b=c", "B": ""}


BAD_ENV = {
    "no command": env(CNI_COMMAND=None),
    "unknown command": env(CNI_COMMAND="ATTACH"),
    "lower-case command": env(CNI_COMMAND="add"),
    "add without container id": env(CNI_CONTAINERID=None),
    "add without ifname": env(CNI_IFNAME=None),
    "add without netns": env(CNI_NETNS=None),
    "check without netns": env(CNI_COMMAND="CHECK", CNI_NETNS=None),
    "del without container id": env(CNI_COMMAND="DEL", CNI_CONTAINERID=None),
    "add without CNI_PATH": env(CNI_PATH=None),
    "container id with ../": env(CNI_CONTAINERID="../etc"),
    "container id with /": env(CNI_CONTAINERID="a/b"),
    "container id starting with .": env(CNI_CONTAINERID=".hidden"),
    "container id with @": env(CNI_CONTAINERID="a@b"),
    "container id too long": env(CNI_CONTAINERID="a" * 201),
    "ifname with /": env(CNI_IFNAME="a/b"),
    "ifname ..": env(CNI_IFNAME=".."),
    "ifname .": env(CNI_IFNAME="."),
    "ifname with ../": env(CNI_IFNAME="../x"),
    "ifname with colon": env(CNI_IFNAME="eth0:1"),
    "ifname with space": env(CNI_IFNAME="eth 0"),
    "ifname 16 chars": env(CNI_IFNAME="a" * 16),
    "relative netns": env(CNI_NETNS="netns/pod1"),
    "CNI_ARGS without =": env(CNI_ARGS="IgnoreUnknown"),
    "CNI_ARGS bad key": env(CNI_ARGS="A B=1"),
}


@pytest.mark.parametrize("case", BAD_ENV, ids=list(BAD_ENV))
def test_bad_env_is_code_4(case: str) -> None:
    with pytest.raises(BadEnv) as info:
        CniEnv.from_env(BAD_ENV[case])
    assert info.value.cni_code == 4


def test_ifname_15_chars_ok() -> None:
    assert CniEnv.from_env(env(CNI_IFNAME="a" * 15)).ifname == "a" * 15


# --- network config ----------------------------------------------------------------------


def test_full_config() -> None:
    c = parse(
        conf(
            vlan=100,
            vlanQoS=5,
            vlanProto="802.1ad",
            mac="02:AA:BB:CC:DD:EE",
            spoofchk="off",
            trust="on",
            link_state="enable",
            min_tx_rate=100,
            max_tx_rate=1000,
            mtu=9000,
            ipam={"type": "host-local", "subnet": "10.1.0.0/24"},
            dns={"nameservers": ["10.1.0.1"], "search": ["svc.local"]},
            logLevel="Debug",
            logFile="/var/log/sriov.log",
            somethingUnknown={"x": 1},
        )
    )
    s = c.settings
    assert c.device_id == PciAddress(0, 0x3B, 2, 1)
    assert (s.vlan, s.qos, s.proto) == (100, 5, VlanProto.DOT1AD)
    assert s.mac == "02:aa:bb:cc:dd:ee"
    assert (s.spoofchk, s.trust, s.link_state) == (False, True, LinkState.ENABLE)
    assert (s.min_tx_rate, s.max_tx_rate) == (100, 1000)
    assert c.mtu == 9000
    assert c.ipam_type == "host-local"
    assert c.dns is not None
    assert c.dns.nameservers == ("10.1.0.1",)
    assert (c.log_level, c.log_file) == ("debug", "/var/log/sriov.log")


def test_minimal_config_leaves_vf_alone() -> None:
    c = parse(conf())
    assert c.settings.empty
    assert c.ipam is None
    assert c.mtu is None


def test_bool_spoofchk_and_empty_ipam() -> None:
    c = parse(conf(spoofchk=True, trust=False, ipam={}))
    assert (c.settings.spoofchk, c.settings.trust) == (True, False)
    assert c.ipam is None


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_supported_version(version: str) -> None:
    assert parse(conf(cniVersion=version)).cni_version == version


def test_mac_precedence_config_then_cni_args_then_runtime_config() -> None:
    with_args = env(CNI_ARGS="IgnoreUnknown=1;MAC=02:00:00:00:00:02")
    assert parse(conf(mac="02:00:00:00:00:01")).settings.mac == "02:00:00:00:00:01"
    assert parse(conf(mac="02:00:00:00:00:01"), with_args).settings.mac == "02:00:00:00:00:02"
    both = conf(mac="02:00:00:00:00:01", runtimeConfig={"mac": "02:00:00:00:00:03"})
    assert parse(both, with_args).settings.mac == "02:00:00:00:00:03"


def test_device_id_from_runtime_config_wins() -> None:
    c = parse(conf(runtimeConfig={"deviceID": "0000:af:10.3"}))
    assert c.device_id == PciAddress(0, 0xAF, 0x10, 3)
    c = parse(conf(deviceID=None, runtimeConfig={"deviceID": "0000:af:10.3"}))
    assert c.device_id == PciAddress(0, 0xAF, 0x10, 3)


def test_device_id_from_device_info_file() -> None:
    path = "/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov-0000:af:10.3-device.json"
    c = parse(conf(deviceID=None, runtimeConfig={"CNIDeviceInfoFile": path}))
    assert c.device_id is None
    assert c.device_info_file == path
    info = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:af:10.3"}}
    assert c.with_device_info(json.dumps(info).encode()).device_id == PciAddress(0, 0xAF, 0x10, 3)


@pytest.mark.parametrize(
    "data",
    [b"{", b'{"type": "vdpa", "vdpa": {}}', b'{"type": "pci", "pci": {"pci-address": "zz"}}'],
)
def test_bad_device_info(data: bytes) -> None:
    with pytest.raises(SriovkitError) as info:
        parse_device_info(data, "/x.json")
    assert info.value.cni_code == 7


def test_del_and_gc_need_no_device_id() -> None:
    assert parse(conf(deviceID=None), env(CNI_COMMAND="DEL")).device_id is None
    gc = conf(
        cniVersion="1.1.0",
        deviceID=None,
        **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "net1"}]},
    )
    c = parse_netconf(gc, CniEnv.from_env({"CNI_COMMAND": "GC"}))
    assert c.valid_attachments == (AttachmentKey("c1", "net1"),)


def test_check_keeps_prev_result() -> None:
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.5/24"}]}
    c = parse(conf(cniVersion="0.4.0", prevResult=prev), env(CNI_COMMAND="CHECK"))
    assert c.prev_result is not None
    assert c.prev_result.ips[0].address == "10.1.0.5/24"


GC_ENV = {"CNI_COMMAND": "GC"}
BAD_CONF: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    # name: (stdin, env, expected code, a field/word the message must name)
    "malformed json": (b'{"cniVersion": "1.0.0",', ENV, 6, "decode"),
    "not json": (b"cniVersion=1.0.0", ENV, 6, "decode"),
    "json array": (b"[]", ENV, 6, "decode"),
    "json string": (b'"sriov"', ENV, 6, "decode"),
    "empty stdin": (b"", ENV, 6, "decode"),
    "unknown cniVersion": (conf(cniVersion="2.0.0"), ENV, 1, "2.0.0"),
    "old cniVersion": (conf(cniVersion="0.2.0"), ENV, 1, "0.2.0"),
    "missing cniVersion": (conf(cniVersion=None), ENV, 1, "cniVersion"),
    "numeric cniVersion": (conf(cniVersion=1.0), ENV, 7, "cniVersion"),
    "check in 0.3.1": (
        conf(cniVersion="0.3.1", prevResult={"cniVersion": "0.3.1"}),
        env(CNI_COMMAND="CHECK"),
        1,
        "CHECK",
    ),
    "gc in 1.0.0": (
        conf(**{"cni.dev/valid-attachments": []}),
        GC_ENV,
        1,
        "GC",
    ),
    "missing name": (conf(name=None), ENV, 7, "name"),
    "missing type": (conf(type=None), ENV, 7, "type"),
    "missing deviceID": (conf(deviceID=None), ENV, 7, "deviceID"),
    "check missing deviceID": (
        conf(deviceID=None, prevResult={"cniVersion": "1.0.0"}),
        env(CNI_COMMAND="CHECK"),
        7,
        "deviceID",
    ),
    "bad deviceID": (conf(deviceID="eth0"), ENV, 7, "deviceID"),
    "short deviceID": (conf(deviceID="3b:02.1"), ENV, 7, "deviceID"),
    "bad runtimeConfig deviceID": (conf(runtimeConfig={"deviceID": "x"}), ENV, 7, "deviceID"),
    "deviceID number": (conf(deviceID=5), ENV, 7, "deviceID"),
    "vlan string": (conf(vlan="100"), ENV, 7, "vlan"),
    "vlan bool": (conf(vlan=True), ENV, 7, "vlan"),
    "vlan float": (conf(vlan=1.5), ENV, 7, "vlan"),
    "vlan 4095": (conf(vlan=4095), ENV, 7, "vlan"),
    "vlan 5000": (conf(vlan=5000), ENV, 7, "5000"),
    "vlan negative": (conf(vlan=-1), ENV, 7, "vlan"),
    "qos 8": (conf(vlan=10, vlanQoS=8), ENV, 7, "vlanQoS"),
    "qos without vlan": (conf(vlanQoS=3), ENV, 7, "vlanQoS"),
    "qos with vlan 0": (conf(vlan=0, vlanQoS=3), ENV, 7, "vlanQoS"),
    "802.1ad without vlan": (conf(vlanProto="802.1ad"), ENV, 7, "vlanProto"),
    "802.1ad with vlan 0": (conf(vlan=0, vlanProto="802.1ad"), ENV, 7, "vlanProto"),
    "unknown vlanProto": (conf(vlan=5, vlanProto="802.1x"), ENV, 7, "vlanProto"),
    "bad mac": (conf(mac="02:00:00:00:00"), ENV, 7, "mac"),
    "mac with dashes": (conf(mac="02-00-00-00-00-01"), ENV, 7, "mac"),
    "multicast mac": (conf(mac="01:00:5e:00:00:01"), ENV, 7, "mac"),
    "zero mac": (conf(mac="00:00:00:00:00:00"), ENV, 7, "mac"),
    "mac number": (conf(mac=12), ENV, 7, "mac"),
    "bad CNI_ARGS MAC": (conf(), env(CNI_ARGS="MAC=nope"), 7, "CNI_ARGS MAC"),
    "bad runtimeConfig mac": (conf(runtimeConfig={"mac": "x"}), ENV, 7, "runtimeConfig.mac"),
    "runtimeConfig not object": (conf(runtimeConfig=[]), ENV, 7, "runtimeConfig"),
    "spoofchk maybe": (conf(spoofchk="maybe"), ENV, 7, "spoofchk"),
    "trust number": (conf(trust=1), ENV, 7, "trust"),
    "bad link_state": (conf(link_state="up"), ENV, 7, "link_state"),
    "negative min rate": (conf(min_tx_rate=-5), ENV, 7, "min_tx_rate"),
    "rate string": (conf(max_tx_rate="fast"), ENV, 7, "max_tx_rate"),
    "min above max": (conf(min_tx_rate=500, max_tx_rate=100), ENV, 7, "min_tx_rate"),
    "mtu too small": (conf(mtu=67), ENV, 7, "mtu"),
    "mtu too big": (conf(mtu=65536), ENV, 7, "mtu"),
    "mtu string": (conf(mtu="9000"), ENV, 7, "mtu"),
    "ipam not object": (conf(ipam="host-local"), ENV, 7, "ipam"),
    "ipam without type": (conf(ipam={"subnet": "10.0.0.0/24"}), ENV, 7, "ipam.type"),
    "ipam type path": (conf(ipam={"type": "../../bin/sh"}), ENV, 7, "ipam.type"),
    "ipam type absolute": (conf(ipam={"type": "/bin/sh"}), ENV, 7, "ipam.type"),
    "dns bad nameserver": (conf(dns={"nameservers": ["dns.local"]}), ENV, 7, "dns"),
    "dns wrong type": (conf(dns={"nameservers": "10.0.0.1"}), ENV, 7, "dns.nameservers"),
    "bad logLevel": (conf(logLevel="verbose"), ENV, 7, "logLevel"),
    "relative logFile": (conf(logFile="sriov.log"), ENV, 7, "logFile"),
    "check without prevResult": (conf(), env(CNI_COMMAND="CHECK"), 7, "prevResult"),
    "prevResult bad version": (
        conf(prevResult={"cniVersion": "7"}),
        env(CNI_COMMAND="DEL"),
        7,
        "prevResult",
    ),
    "prevResult bad address": (
        conf(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}),
        env(CNI_COMMAND="DEL"),
        7,
        "ips.address",
    ),
    "gc without valid-attachments": (conf(cniVersion="1.1.0"), GC_ENV, 7, "valid-attachments"),
    "gc attachment with ../": (
        conf(
            cniVersion="1.1.0",
            **{"cni.dev/valid-attachments": [{"containerID": "../x", "ifname": "net1"}]},
        ),
        GC_ENV,
        7,
        "containerID",
    ),
    "gc attachment bad ifname": (
        conf(
            cniVersion="1.1.0",
            **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "a/b"}]},
        ),
        GC_ENV,
        7,
        "ifname",
    ),
}


@pytest.mark.parametrize("case", BAD_CONF, ids=list(BAD_CONF))
def test_bad_config_corpus(case: str) -> None:
    data, e, code, word = BAD_CONF[case]
    with pytest.raises(SriovkitError) as info:
        parse(data, e)
    assert info.value.cni_code == code, str(info.value)
    assert word in str(info.value)


def test_error_classes_carry_codes() -> None:
    assert DecodeFailure("x").cni_code == 6
    assert IncompatibleVersion("x").cni_code == 1
    assert BadEnv("CNI_IFNAME", "x").cni_code == 4


def test_vlan_out_of_range_message_names_field_and_value() -> None:
    with pytest.raises(SriovkitError, match=r"invalid vlan: 5000 is outside 0-4094"):
        parse(conf(vlan=5000))


# --- resourceName: the VF from kubelet's PodResources (no Multus) ------------------------------

POD_ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1"


def test_resource_name_stands_in_for_the_device_id() -> None:
    c = parse(conf(deviceID=None, resourceName="intel.com/sriov_net"), env(CNI_ARGS=POD_ARGS))
    assert (c.device_id, c.resource_name) == (None, "intel.com/sriov_net")
    # With a deviceID as well, the deviceID is the VF (resourceName is then only a label).
    c = parse(conf(resourceName="openshift.io/intel.nics-1"), env(CNI_ARGS=POD_ARGS))
    assert c.device_id == PciAddress(0, 0x3B, 0x02, 1)
    # CHECK and DEL work from the record: no pod arguments needed.
    check = {"CNI_COMMAND": "CHECK"}
    c = parse(
        conf(deviceID=None, resourceName="intel.com/sriov_net", prevResult={"cniVersion": "1.0.0"}),
        env(**check),
    )
    assert c.resource_name == "intel.com/sriov_net"


@pytest.mark.parametrize(
    "name",
    ["sriov_net", "intel.com/", "/sriov", "Intel.com/x", "intel.com/a/b", "intel.com/-x",
     "intel..com/x", "x" * 254 + "/y", "intel.com/" + "a" * 64],
)  # fmt: skip
def test_bad_resource_names(name: str) -> None:
    with pytest.raises(SriovkitError) as info:
        parse(conf(deviceID=None, resourceName=name), env(CNI_ARGS=POD_ARGS))
    assert info.value.cni_code == 7
    assert "invalid resourceName" in str(info.value)


def test_resource_name_add_needs_the_pod_in_cni_args() -> None:
    with pytest.raises(BadEnv, match="K8S_POD_NAMESPACE and K8S_POD_NAME not set") as info:
        parse(conf(deviceID=None, resourceName="intel.com/sriov_net"))
    assert info.value.cni_code == 4
    with pytest.raises(BadEnv, match=r"K8S_POD_NAME not set: .* intel\.com/sriov_net"):
        parse(
            conf(deviceID=None, resourceName="intel.com/sriov_net"),
            env(CNI_ARGS="K8S_POD_NAMESPACE=default"),
        )


def test_no_device_id_no_resource_name_says_both() -> None:
    with pytest.raises(SriovkitError, match=r"VF's PCI address \(or a resourceName\)"):
        parse(conf(deviceID=None))
