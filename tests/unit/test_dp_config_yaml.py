"""The device plugin config's YAML form: the same model as config.json, the same errors, and none
of YAML 1.1's implicit typing (8086 stays an id, `yes` is not a boolean)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_dp_config import README_EXAMPLE

from sriovkit.deviceplugin.pools import read_config
from sriovkit.errors import InvalidInput
from sriovkit.model.dp_config import parse_config
from sriovkit.model.dp_config_yaml import config_form


def _yaml(text: str) -> str:
    with pytest.raises(InvalidInput) as exc:
        parse_config(text, form="yaml")
    return str(exc.value)


def test_the_readme_example_dumped_as_yaml_is_the_same_config() -> None:
    # safe_dump quotes '8086' (it would read back as a number in plain YAML 1.1); the point
    # here is that the document, whatever its spelling, gives the same model.
    text = yaml.safe_dump(json.loads(README_EXAMPLE))
    assert parse_config(text, form="yaml") == parse_config(README_EXAMPLE)


def test_plain_scalars_stay_strings() -> None:
    cfg = parse_config(
        """
# ids unquoted: 8086 and 0010 are ids, not numbers (0010 would be octal 8 in YAML 1.1)
resourceList:
  - resourceName: igb_vfs
    resourcePrefix: example.com
    preferredAllocation: spread
    selectors:
      vendors: [8086]
      devices: [0010, 10ca]
      drivers: [on, igbvf]
      isRdma: false
      needVhostNet: True
""",
        form="yaml",
    )
    (res,) = cfg.resources
    sel = res.selectors[0]
    assert sel.vendors == ("8086",) and sel.devices == ("0010", "10ca")
    assert sel.drivers == ("on", "igbvf")
    assert sel.need_vhost_net and not sel.is_rdma
    assert (res.full_name, res.preferred_allocation) == ("example.com/igb_vfs", "spread")


def test_errors_name_the_entry_and_field_as_for_json() -> None:
    text = "resourceList:\n  - resourceName: a\n    selectors: {pfNames: ['ens1f0#3-1']}\n"
    as_json = json.dumps(yaml.safe_load(text))
    with pytest.raises(InvalidInput) as exc:
        parse_config(as_json)
    assert _yaml(text) == str(exc.value)
    assert _yaml(text) == (
        "invalid resourceList[0] (a).selectors.pfNames: 'ens1f0#3-1' has an empty range"
    )
    assert _yaml("resourceList:\n  - {resourceName: a, selectors: {isRdma: yes}}\n") == (
        "invalid resourceList[0] (a).selectors.isRdma: expected true or false, got 'yes'"
    )


def test_yaml_mistakes_are_refused_with_their_line() -> None:
    assert _yaml("resourceList:\n  - resourceName: a\n    resourceName: b\n") == (
        "invalid config: not valid YAML: key 'resourceName' given twice at line 3, column 5"
    )
    assert "not a string" in _yaml("resourceList:\n  - {null: a}\n")
    assert _yaml("resourceList: [\n").startswith("invalid config: not valid YAML: ")
    assert _yaml("") == "invalid config: expected an object with resourceList, got null"
    two = _yaml("resourceList: []\n---\nresourceList: []\n")
    assert "expected a single document in the stream but found another" in two


def test_the_form_comes_from_the_name_else_the_content(tmp_path: Path) -> None:
    assert config_form("config.yaml", "{}") == "yaml"
    assert config_form("pools.YML", "{}") == "yaml"
    assert config_form("config.json", "resourceList: []") == "json"
    assert config_form("config", b'  {"resourceList": []}') == "json"
    assert config_form("config", "resourceList: []") == "yaml"
    path = tmp_path / "config"
    path.write_text("resourceList:\n  - resourceName: a\n    selectors: {drivers: [igbvf]}\n")
    assert [r.full_name for r in read_config(path).resources] == ["intel.com/a"]
    bad = tmp_path / "config.json"
    bad.write_text("resourceList: []\n")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_config(bad)


_YAML_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "yaml")))
"""


def test_yaml_is_imported_only_when_a_yaml_file_is_read() -> None:
    for module in ("sriovkit.cli", "sriovkit.cni.shim", "sriovkit.cni.dispatch",
                   "sriovkit.deviceplugin.pools"):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-c", _YAML_PROBE, module],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        assert json.loads(proc.stdout) == [], module


def test_a_document_nested_too_deeply_is_an_error_not_a_crash() -> None:
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_config("[" * 100_000, form="json")
    with pytest.raises(InvalidInput, match="nested too deeply"):
        parse_config("[" * 100_000, form="yaml")
