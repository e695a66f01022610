"""sriov-network-device-plugin's config.json: every selector, ranges, order, and exact errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sriovkit.errors import InvalidInput
from sriovkit.model.dp_config import (
    DeviceType,
    FunctionRange,
    Selector,
    config_from_obj,
    parse_config,
)
from sriovkit.model.pci import PciAddress

# The README's example (upstream k8snetworkplumbingwg/sriov-network-device-plugin), with the
# trailing comma after brcm_sriov_bnxt's selectors removed: Go's decoder refuses that too.
README_EXAMPLE = """
{
    "resourceList": [{
            "resourceName": "intel_sriov_netdevice",
            "selectors": [{
                "vendors": ["8086"],
                "devices": ["154c", "10ed", "1889"],
                "drivers": ["i40evf", "ixgbevf", "iavf"]
            }]
        },
        {
            "resourceName": "intel_sriov_dpdk",
            "resourcePrefix": "intel.com",
            "selectors": [{
                "vendors": ["8086"],
                "devices": ["154c", "10ed", "1889"],
                "drivers": ["vfio-pci"],
                "pfNames": ["enp0s0f0","enp2s2f1"],
                "needVhostNet": true
            }]
        },
        {
            "resourceName": "mlnx_sriov_rdma",
            "resourcePrefix": "mellanox.com",
            "selectors": [{
                "vendors": ["15b3"],
                "devices": ["1018"],
                "drivers": ["mlx5_ib"],
                "isRdma": true
            }]
        },
        {
            "resourceName": "infiniband_rdma_netdevs",
            "selectors": [{
                "linkTypes": ["infiniband"],
                "isRdma": true
            }]
        },
        {
            "resourceName": "ct6dx_vdpa_vhost",
            "selectors": [{
                "vendors": ["15b3"],
                "devices": ["101e"],
                "drivers": ["mlx5_core"],
                "vdpaType": "vhost"
            }]
        },
        {
            "resourceName": "intel_fpga",
            "deviceType": "accelerator",
            "selectors": [{
                    "vendors": ["8086"],
                    "devices": ["0d90"]
            }]
        },
        {
            "resourceName": "bf2_sf",
            "resourcePrefix": "nvidia.com",
            "deviceType": "auxNetDevice",
            "selectors": [{
                "vendors": ["15b3"],
                "devices": ["a2d6"],
                "pfNames": ["p0#1-5"],
                "auxTypes": ["sf"]
            }]
        },
        {
          "resourceName": "intel_sriov_netdevice_additional_env",
          "selectors": [{
            "vendors": ["8086"],
            "devices": ["154c", "10ed", "1889"],
            "drivers": ["i40evf", "ixgbevf", "iavf"]
          }],
          "additionalInfo": {
             "*": {
               "token": "3e49019f-412f-4f02-824e-4cd195944205"
             }
          }
        },
        {
            "resourceName": "brcm_sriov_bnxt",
            "resourcePrefix": "broadcom.com",
            "selectors": [{
                "vendors": ["14e4"],
                "devices": ["1750"],
                "drivers": ["bnxt_en"]
            }]
        },
        {
          "resourceName": "old_selectors_syntax_example",
          "selectors": {
            "vendors": ["8086"],
            "devices": ["154c", "10ed", "1889"],
            "drivers": ["i40evf", "ixgbevf", "iavf"]
          }
        }
    ]
}
"""

# From upstream docs/config-file/README.md: Go-style capitalised keys and a stray SelectorObj.
NODE_CONFIG = (
    '{"resourceList":[{"resourceName":"sriovnics","selectors":{"pfNames":["ens785f0#0-4",'
    '"ens785f1#0-9"],"IsRdma":false,"NeedVhostNet":false},"SelectorObj":null}]}'
)


def one(selectors: Any, **entry: Any) -> Selector:
    doc = {"resourceList": [{"resourceName": "r", "selectors": selectors, **entry}]}
    return config_from_obj(doc).resources[0].selectors[0]


def error(doc: Any) -> str:
    with pytest.raises(InvalidInput) as exc:
        config_from_obj(doc)
    return str(exc.value)


def test_readme_example() -> None:
    cfg = parse_config(README_EXAMPLE)
    names = [r.full_name for r in cfg.resources]
    assert names == [
        "intel.com/intel_sriov_netdevice",
        "intel.com/intel_sriov_dpdk",
        "mellanox.com/mlnx_sriov_rdma",
        "intel.com/infiniband_rdma_netdevs",
        "intel.com/ct6dx_vdpa_vhost",
        "intel.com/intel_fpga",
        "nvidia.com/bf2_sf",
        "intel.com/intel_sriov_netdevice_additional_env",
        "broadcom.com/brcm_sriov_bnxt",
        "intel.com/old_selectors_syntax_example",
    ]
    dpdk = cfg.resources[1].selectors[0]
    assert dpdk.pf_names == (FunctionRange("enp0s0f0"), FunctionRange("enp2s2f1"))
    assert dpdk.need_vhost_net and not dpdk.is_rdma
    assert cfg.resources[2].selectors[0].is_rdma
    assert cfg.resources[4].selectors[0].vdpa_type == "vhost"
    assert cfg.resources[5].device_type is DeviceType.ACCELERATOR
    assert cfg.resources[6].device_type is DeviceType.AUX_NET_DEVICE
    assert cfg.resources[6].selectors[0].pf_names == (FunctionRange("p0", ((1, 5),)),)
    assert cfg.resources[7].additional_info == {
        "*": {"token": "3e49019f-412f-4f02-824e-4cd195944205"}
    }
    old = cfg.resources[9].selectors
    assert len(old) == 1 and old[0].drivers == ("i40evf", "ixgbevf", "iavf")


def test_node_config_with_go_spelling() -> None:
    cfg = parse_config(NODE_CONFIG)
    sel = cfg.resources[0].selectors[0]
    assert sel.pf_names == (
        FunctionRange("ens785f0", ((0, 4),)),
        FunctionRange("ens785f1", ((0, 9),)),
    )
    assert cfg.resources[0].device_type is DeviceType.NET_DEVICE


def test_every_selector() -> None:
    sel = one(
        {
            "vendors": ["8086", "15B3"],
            "devices": ["10ca"],
            "drivers": ["igbvf", "vfio-pci"],
            "pciAddresses": ["0000:3b:10.0"],
            "acpiIndexes": ["101"],
            "pfNames": ["ens1f0#0,2-7,9", "ens1f1"],
            "rootDevices": ["0000:86:00.0#0-1,3,4"],
            "linkTypes": ["ether"],
            "ddpProfiles": ["GTPv1-C/U IPv4/IPv6 payload"],
            "pKeys": ["0x1"],
            "isRdma": True,
            "needVhostNet": True,
        }
    )
    assert sel.vendors == ("8086", "15b3")
    assert sel.devices == ("10ca",)
    assert sel.drivers == ("igbvf", "vfio-pci")
    assert sel.pci_addresses == (PciAddress(0, 0x3B, 0x10, 0),)
    assert sel.acpi_indexes == ("101",)
    assert sel.pf_names == (
        FunctionRange("ens1f0", ((0, 0), (2, 7), (9, 9))),
        FunctionRange("ens1f1"),
    )
    assert sel.root_devices == (FunctionRange("0000:86:00.0", ((0, 1), (3, 3), (4, 4))),)
    assert sel.link_types == ("ether",)
    assert sel.unreadable == ("ddpProfiles", "pKeys")
    assert sel.is_rdma and sel.need_vhost_net


def test_ranges_select() -> None:
    r = FunctionRange("ens1f0", ((0, 0), (2, 7)))
    assert [i for i in range(10) if r.selects(i)] == [0, 2, 3, 4, 5, 6, 7]
    assert not r.selects(None)  # the PF itself is never selected by name
    assert FunctionRange("ens1f0").selects(63)


def test_defaults_and_empty_lists() -> None:
    doc = {"resourceList": [{"resourceName": "a", "selectors": {"vendors": [], "drivers": []}}]}
    res = config_from_obj(doc).resources[0]
    assert res.prefix == "intel.com" and res.device_type is DeviceType.NET_DEVICE
    assert not res.exclude_topology
    assert res.selectors[0] == Selector()  # empty lists filter nothing, as upstream
    res = config_from_obj(doc, default_prefix="example.com").resources[0]
    assert res.full_name == "example.com/a"


def test_list_order_kept() -> None:
    doc = {
        "resourceList": [
            {
                "resourceName": "a",
                "excludeTopology": True,
                "selectors": [{"vendors": ["8086"], "needVhostNet": True}, {"devices": ["154c"]}],
            }
        ]
    }
    res = config_from_obj(doc).resources[0]
    assert res.exclude_topology
    assert [s.need_vhost_net for s in res.selectors] == [True, False]


def test_same_name_other_prefix_is_fine() -> None:
    doc = {
        "resourceList": [
            {"resourceName": "10G", "resourcePrefix": "acme.com", "selectors": {}},
            {"resourceName": "10G", "resourcePrefix": "example.com", "selectors": {}},
        ]
    }
    assert len(config_from_obj(doc).resources) == 2


def test_no_resource_list_is_empty() -> None:
    assert config_from_obj({}).resources == ()


def test_preferred_allocation_is_ours_and_defaults_to_none() -> None:
    doc = {"resourceList": [
        {"resourceName": "a", "selectors": {}},
        {"resourceName": "b", "selectors": {}, "preferredAllocation": "spread"},
        {"resourceName": "c", "selectors": {}, "PreferredAllocation": "pack"},
        {"resourceName": "d", "selectors": {}, "preferredAllocation": None},
    ]}  # fmt: skip
    got = [r.preferred_allocation for r in config_from_obj(doc).resources]
    assert got == ["none", "spread", "pack", "none"]


@pytest.mark.parametrize(
    ("value", "shown"), [("Spread", "'Spread'"), ("balanced", "'balanced'"), (1, "1")]
)
def test_a_bad_preferred_allocation_names_entry_and_field(value: Any, shown: str) -> None:
    doc = {"resourceList": [{"resourceName": "bond", "selectors": {},
                             "preferredAllocation": value}]}  # fmt: skip
    assert error(doc) == (
        f"invalid resourceList[0] (bond).preferredAllocation: {shown} is not one of "
        "spread, pack, none"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"resourceName": "intel_sriov", "selectors": {"pfNames": ["ens1f0#3-1"]}},
            "invalid resourceList[1] (intel_sriov).selectors.pfNames: "
            "'ens1f0#3-1' has an empty range",
        ),
        (
            {"resourceName": "x", "selectors": [{}, {"pfNames": ["ens1f0#"]}]},
            "invalid resourceList[1] (x).selectors[1].pfNames: "
            "'ens1f0#' has no VF indexes after '#'",
        ),
        (
            {"resourceName": "x", "selectors": {"pfNames": ["ens1f0#1,a"]}},
            "invalid resourceList[1] (x).selectors.pfNames: "
            "'ens1f0#1,a': 'a' is not a VF index or a range like '2-7'",
        ),
        (
            {"resourceName": "x", "selectors": {"pfNames": ["#1"]}},
            "invalid resourceList[1] (x).selectors.pfNames: '#1' has no PF name before '#'",
        ),
        (
            {"resourceName": "x", "selectors": {"pfNames": ["a#1#2"]}},
            "invalid resourceList[1] (x).selectors.pfNames: 'a#1#2' has more than one '#'",
        ),
        (
            {"resourceName": "x", "selectors": {"rootDevices": ["86:00.0#1"]}},
            "invalid resourceList[1] (x).selectors.rootDevices: "
            "'86:00.0#1': '86:00.0' is not a PCI address like '0000:86:00.0'",
        ),
        (
            {"resourceName": "x", "selectors": {"vendors": ["0x8086"]}},
            "invalid resourceList[1] (x).selectors.vendors: "
            "'0x8086' is not a 4-digit hex id like '8086'",
        ),
        (
            {"resourceName": "x", "selectors": {"devices": "10ca"}},
            "invalid resourceList[1] (x).selectors.devices: "
            "expected a list of strings, got a string",
        ),
        (
            {"resourceName": "x", "selectors": {"pciAddresses": ["3b:10.0"]}},
            "invalid resourceList[1] (x).selectors.pciAddresses: "
            "'3b:10.0' is not a PCI address like '0000:03:02.0'",
        ),
        (
            {"resourceName": "x", "selectors": {"isRdma": "yes"}},
            "invalid resourceList[1] (x).selectors.isRdma: expected true or false, got 'yes'",
        ),
        (
            {"resourceName": "x", "selectors": {"vendor": ["8086"]}},
            "invalid resourceList[1] (x).selectors.vendor: unknown selector (known: vendors, "
            "devices, drivers, pciAddresses, pfNames, rootDevices, linkTypes, isRdma, "
            "acpiIndexes, needVhostNet, ddpProfiles, vdpaType, pKeys)",
        ),
        (
            {"resourceName": "x", "deviceType": "accelerator", "selectors": {"pfNames": ["a"]}},
            "invalid resourceList[1] (x).selectors.pfNames: "
            "does not apply to deviceType accelerator",
        ),
        (
            {"resourceName": "x", "selectors": {"vdpaType": "vhost", "isRdma": True}},
            "invalid resourceList[1] (x).selectors.isRdma: isRdma and vdpaType exclude each other",
        ),
        (
            {"resourceName": "x", "selectors": {"vdpaType": "other"}},
            "invalid resourceList[1] (x).selectors.vdpaType: 'other' is not one of vhost, virtio",
        ),
        (
            {"resourceName": "x"},
            "invalid resourceList[1] (x).selectors: required: an object or a list of objects",
        ),
        (
            {"resourceName": "x", "selectors": []},
            "invalid resourceList[1] (x).selectors: "
            "the list is empty: give at least one selector object",
        ),
        (
            {"resourceName": "x", "selectors": [1]},
            "invalid resourceList[1] (x).selectors[0]: expected a selector object, got a number",
        ),
        (
            {"selectors": {}},
            "invalid resourceList[1].resourceName: required: a non-empty string",
        ),
        (
            {"resourceName": "a/b", "selectors": {}},
            "invalid resourceList[1] (a/b).resourceName: 'a/b' must be letters, digits, '_' or "
            "'-', start and end with a letter or digit, at most 63 characters",
        ),
        (
            {"resourceName": "x", "resourcePrefix": "Intel.com", "selectors": {}},
            "invalid resourceList[1] (x).resourcePrefix: "
            "'Intel.com' is not a DNS name like 'example.com'",
        ),
        (
            {"resourceName": "x", "deviceType": "gpu", "selectors": {}},
            "invalid resourceList[1] (x).deviceType: "
            "'gpu' is not one of netDevice, accelerator, auxNetDevice",
        ),
        (
            {"resourceName": "x", "excludeTopology": 1, "selectors": {}},
            "invalid resourceList[1] (x).excludeTopology: expected true or false, got 1",
        ),
        (
            {"resourceName": "x", "selectors": {}, "additionalInfo": {"*": {"a": 1}}},
            "invalid resourceList[1] (x).additionalInfo.*.a: expected a string, got 1",
        ),
        (
            {"resourceName": "x", "selectors": {}, "additionalInfo": {"eth0": {}}},
            "invalid resourceList[1] (x).additionalInfo.eth0: keys are '*' or a PCI address",
        ),
        (
            {"resourceName": "first", "selectors": {}},
            "invalid resourceList[1] (first).resourceName: "
            "intel.com/first is already defined by resourceList[0]",
        ),
    ],
)
def test_errors_name_entry_and_field(entry: dict[str, Any], message: str) -> None:
    doc = {"resourceList": [{"resourceName": "first", "selectors": {}}, entry]}
    assert error(doc) == message


def test_document_errors() -> None:
    assert error([]) == "invalid config: expected an object with resourceList, got a list"
    assert error({"resourceList": {}}) == "invalid resourceList: expected a list, got an object"
    with pytest.raises(InvalidInput, match=r"^invalid config: not valid JSON: "):
        parse_config("{")
    # The README's example as published has a trailing comma: refused, as Go refuses it.
    broken = README_EXAMPLE.replace('"drivers": ["bnxt_en"]\n            }]', '"x": 1}],')
    with pytest.raises(InvalidInput):
        parse_config(broken)


def test_exact_key_wins_over_case_folded() -> None:
    text = json.dumps({"resourceList": [{"resourceName": "a", "selectors": {}}]})
    text = text.replace('"selectors": {}', '"selectors": {}, "SELECTORS": [1]')
    assert len(parse_config(text).resources[0].selectors) == 1
