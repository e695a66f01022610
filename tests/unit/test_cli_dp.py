"""`sriovkit dp pools` through `sriovkit.cli.main` on a simulated host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sriovkit.cli import main
from sriovkit.sim import create_host

CONFIG = {
    "resourceList": [
        {"resourceName": "igbvf", "selectors": {"pfNames": ["enp59s0f0#0-1"]}},
        {
            "resourceName": "vfs",
            "resourcePrefix": "example.com",
            "excludeTopology": True,
            "selectors": [{"devices": ["10ca"]}],
        },
    ]
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    create_host(tmp_path / "host", ["82576"], vfs=2, extras=False)
    return tmp_path / "host"


def write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_text(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "config.json", CONFIG)
    assert main(["--root", str(root), "dp", "pools", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out == (
        "intel.com/igbvf (netDevice): 2 devices\n"
        "  PCI           PF         VF  DRIVER  NETDEV       NUMA\n"
        "  0000:3b:10.0  enp59s0f0  0   igbvf   enp59s0f0v0  0\n"
        "  0000:3b:10.2  enp59s0f0  1   igbvf   enp59s0f0v1  0\n"
        "\n"
        "example.com/vfs (netDevice): 2 devices\n"
        "  PCI           PF         VF  DRIVER  NETDEV       NUMA\n"
        "  0000:3b:10.1  enp59s0f1  0   igbvf   enp59s0f1v0  -\n"
        "  0000:3b:10.3  enp59s0f1  1   igbvf   enp59s0f1v1  -\n"
        "  left out:\n"
        "    0000:3b:10.0  already in pool intel.com/igbvf\n"
        "    0000:3b:10.2  already in pool intel.com/igbvf\n"
    )


def test_json_and_default_path(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(root / "etc/pcidp/config.json", CONFIG)
    assert main(["--root", str(root), "dp", "pools", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    first, second = doc["pools"]
    assert list(first) == [
        "resource", "resource_name", "prefix", "device_type", "devices", "excluded", "notes",
    ]  # fmt: skip
    assert first["resource"] == "intel.com/igbvf"
    assert first["devices"][0] == {
        "pci": "0000:3b:10.0",
        "pf_pci": "0000:3b:00.0",
        "pf_name": "enp59s0f0",
        "vf_index": 0,
        "vendor": "8086",
        "device": "10ca",
        "driver": "igbvf",
        "netdev": "enp59s0f0v0",
        "numa": 0,
        "iommu_group": first["devices"][0]["iommu_group"],
        "link_type": "ether",
        "rdma": False,
        "vhost_net": False,
        "selector": 0,
    }
    assert second["excluded"] == [
        {
            "pci": "0000:3b:10.0",
            "why": "in-other-pool",
            "reason": "already in pool intel.com/igbvf",
        },
        {
            "pci": "0000:3b:10.2",
            "why": "in-other-pool",
            "reason": "already in pool intel.com/igbvf",
        },
    ]


def test_resource_prefix_option(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.json", {"resourceList": [CONFIG["resourceList"][0]]})
    args = ["--root", str(root), "dp", "pools", "--config", str(cfg), "--json"]
    assert main([*args, "--resource-prefix", "acme.com"]) == 0
    assert json.loads(capsys.readouterr().out)["pools"][0]["resource"] == "acme.com/igbvf"


def test_bad_config_is_one_line_exit_2(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {"resourceList": [{"resourceName": "intel_sriov", "selectors": {"pfNames": ["a#3-1"]}}]}
    cfg = write(tmp_path / "bad.json", bad)
    assert main(["--root", str(root), "dp", "pools", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "sriovkit: error: invalid resourceList[0] (intel_sriov).selectors.pfNames: "
        "'a#3-1' has an empty range\n"
    )
    (tmp_path / "notjson.json").write_text("{")
    assert (
        main(["--root", str(root), "dp", "pools", "--config", str(tmp_path / "notjson.json")]) == 2
    )
    assert capsys.readouterr().err.startswith("sriovkit: error: invalid config: not valid JSON: ")


def test_missing_config(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "dp", "pools"]) == 3
    assert capsys.readouterr().err == (
        f"sriovkit: error: device plugin config {root}/etc/pcidp/config.json not found "
        "(give one with --config)\n"
    )


def test_dp_does_not_import_grpc(root: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "config.json", CONFIG)
    code = (
        "import sys; from sriovkit.cli import main\n"
        f"rc = main(['--root', {str(root)!r}, 'dp', 'pools', '--config', {str(cfg)!r}])\n"
        "assert rc == 0, rc\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('grpc', 'pyroute2')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


CONFIG_YAML = """\
# The same pools as CONFIG, in the YAML form: same keys, comments, ids unquoted.
resourceList:
  - resourceName: igbvf
    selectors: {pfNames: ["enp59s0f0#0-1"]}   # a '#' after a space starts a comment
  - resourceName: vfs
    resourcePrefix: example.com
    excludeTopology: true
    selectors:
      - devices: [10ca]
"""


def test_a_yaml_config_gives_the_same_pools_as_the_json(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    as_json = write(tmp_path / "config.json", CONFIG)
    as_yaml = tmp_path / "pools.yaml"
    as_yaml.write_text(CONFIG_YAML)
    outs = []
    for cfg in (as_json, as_yaml):
        assert main(["--root", str(root), "dp", "pools", "--config", str(cfg), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0] == outs[1]
    assert [p["resource"] for p in outs[1]["pools"]] == ["intel.com/igbvf", "example.com/vfs"]
    assert [len(p["devices"]) for p in outs[1]["pools"]] == [2, 2]


def test_a_yaml_mistake_is_one_line_naming_the_entry_and_field(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("resourceList:\n  - resourceName: a\n    selectors: {vendors: [0x8086]}\n")
    assert main(["--root", str(root), "dp", "pools", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err == (
        "sriovkit: error: invalid resourceList[0] (a).selectors.vendors: '0x8086' is not a "
        "4-digit hex id like '8086'\n"
    )
