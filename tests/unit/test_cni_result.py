"""CNI results across spec versions: rendering for the asked version and reading any version back.

The JSON documents below are written from the CNI SPEC.md result sections of each version
(0.3.x/0.4.0 `ips[].version`; 1.1.0 interface `mtu`/`pciID`/`socketPath` and route
`mtu`/`advmss`/`priority`/`table`/`scope`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sriovkit.errors import Busy, InvalidInput
from sriovkit.model.cni_result import (
    CNI_VERSIONS,
    CniResult,
    Dns,
    IncompatibleVersion,
    Interface,
    IpConfig,
    Route,
    error_dict,
    error_from,
    parse_result,
    to_version,
    version_dict,
)

RESULT_1_1: dict[str, Any] = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {
            "name": "net1",
            "mac": "02:00:00:aa:bb:01",
            "mtu": 9000,
            "sandbox": "/var/run/netns/pod1",
            "pciID": "0000:3b:02.1",
        }
    ],
    "ips": [
        {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
        {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 0},
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.1.0.1",
            "mtu": 1500,
            "advmss": 1460,
            "priority": 100,
            "table": 200,
            "scope": 0,
        },
        {"dst": "2001:db8:1::/48"},
    ],
    "dns": {
        "nameservers": ["10.1.0.53"],
        "domain": "example.com",
        "search": ["svc.example.com"],
        "options": ["ndots:5"],
    },
}

RESULT_1_0: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "net1", "mac": "02:00:00:aa:bb:01", "sandbox": "/var/run/netns/pod1"},
    ],
    "ips": [
        {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
        {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "2001:db8:1::/48"}],
    "dns": RESULT_1_1["dns"],
}


def old(version: str) -> dict[str, Any]:
    doc = copy.deepcopy(RESULT_1_0)
    doc["cniVersion"] = version
    doc["ips"][0] = {"version": "4", **doc["ips"][0]}
    doc["ips"][1] = {"version": "6", **doc["ips"][1]}
    return doc


def test_model_of_1_1_result() -> None:
    r = parse_result(RESULT_1_1)
    assert r.interfaces == (
        Interface(
            name="net1",
            mac="02:00:00:aa:bb:01",
            mtu=9000,
            sandbox="/var/run/netns/pod1",
            pci_id="0000:3b:02.1",
        ),
    )
    assert [ip.version for ip in r.ips] == ["4", "6"]
    assert r.routes[0] == Route(
        dst="0.0.0.0/0", gw="10.1.0.1", mtu=1500, advmss=1460, priority=100, table=200, scope=0
    )
    assert r.dns == Dns(
        nameservers=("10.1.0.53",),
        domain="example.com",
        search=("svc.example.com",),
        options=("ndots:5",),
    )


def test_1_1_renders_itself() -> None:
    assert to_version(parse_result(RESULT_1_1), "1.1.0") == RESULT_1_1


def test_down_to_1_0_drops_1_1_fields() -> None:
    assert to_version(parse_result(RESULT_1_1), "1.0.0") == RESULT_1_0


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_down_to_0_x_adds_ip_version(version: str) -> None:
    assert to_version(parse_result(RESULT_1_1), version) == old(version)


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_up_from_0_x(version: str) -> None:
    r = parse_result(old(version))
    assert to_version(r, "1.0.0") == RESULT_1_0
    up = to_version(r, "1.1.0")
    assert up["ips"] == RESULT_1_0["ips"]
    assert up["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("version", CNI_VERSIONS)
def test_round_trip_every_version(version: str) -> None:
    doc = to_version(parse_result(RESULT_1_1), version)
    again = json.loads(json.dumps(doc)).copy()
    assert to_version(parse_result(again), version) == doc


def test_ipam_result_from_bytes_without_interfaces() -> None:
    # What host-local prints for a 0.3.1 config: no interfaces, no interface index.
    raw = (
        b'{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.0.7/24",'
        b'"gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}'
    )
    r = parse_result(raw, "IPAM result")
    assert r.interfaces == ()
    assert r.ips == (IpConfig(address="10.1.0.7/24", gateway="10.1.0.1"),)
    assert to_version(r, "1.1.0") == {
        "cniVersion": "1.1.0",
        "ips": [{"address": "10.1.0.7/24", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


def test_unknown_fields_in_result_ignored() -> None:
    doc = copy.deepcopy(RESULT_1_1)
    doc["interfaces"][0]["futureField"] = 1
    doc["somethingNew"] = {"a": 1}
    assert to_version(parse_result(doc), "1.1.0") == RESULT_1_1


def test_empty_result() -> None:
    assert to_version(CniResult(), "0.4.0") == {"cniVersion": "0.4.0"}


BAD_RESULTS: dict[str, tuple[Any, str]] = {
    "not json": (b"{", "IPAM result"),
    "array": ([], "IPAM result"),
    "no version": ({"ips": []}, "cniVersion"),
    "version 0.2.0": ({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/24"}}, "cniVersion"),
    "ip without prefix": ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}, "prefix"),
    "bad ip": ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.256/24"}]}, "address"),
    "bad gateway": (
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "gateway": "gw"}]},
        "gateway",
    ),
    "negative index": (
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": -1}]},
        "interface",
    ),
    "bad route": ({"cniVersion": "1.0.0", "routes": [{"dst": "default"}]}, "dst"),
    "interfaces not list": ({"cniVersion": "1.0.0", "interfaces": {}}, "interfaces"),
    "family mismatch": (
        {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/24"}]},
        "version",
    ),
}


@pytest.mark.parametrize("case", BAD_RESULTS, ids=list(BAD_RESULTS))
def test_bad_results_refused(case: str) -> None:
    data, word = BAD_RESULTS[case]
    with pytest.raises(InvalidInput) as info:
        parse_result(data, "IPAM result")
    assert info.value.cni_code == 7
    assert word in str(info.value)


def test_unsupported_output_version() -> None:
    with pytest.raises(IncompatibleVersion) as info:
        to_version(CniResult(), "0.2.0")
    assert info.value.cni_code == 1


def test_error_documents() -> None:
    assert error_dict(7, "invalid vlan: 5000 is outside 0-4094", version="0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 7,
        "msg": "invalid vlan: 5000 is outside 0-4094",
    }
    assert error_from(Busy("VF 0000:3b:02.1 is locked"), "1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 11,
        "msg": "VF 0000:3b:02.1 is locked",
    }
    internal = error_from(KeyError("x"), "9.9")
    assert internal["code"] == 999
    assert internal["cniVersion"] == "1.1.0"
    assert internal["details"] == "KeyError: 'x'"


def test_version_document() -> None:
    assert version_dict() == {
        "cniVersion": "1.1.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }
    assert version_dict("0.4.0")["cniVersion"] == "0.4.0"
