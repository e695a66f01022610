"""`sriovkit vf set|show|reset` on a simulated host: successive calls see earlier changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sriovkit.cli import CliEnv
from sriovkit.commands.vf import vf
from sriovkit.errors import HostError, InvalidInput, NotFound
from sriovkit.sim import create_host

PF = "enp59s0f1"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A simulated host: a dual-port 82576 (igb), 4 VFs per PF, carrier at 1000 Mb/s."""
    host = create_host(tmp_path, ["82576"], vfs=4, extras=False)
    assert host.pfs[1].netdev == PF
    return tmp_path


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(vf, list(args), obj=CliEnv(root=root))


def test_set_then_show_in_a_later_call(root: Path) -> None:
    res = run(root, "set", PF, "3", "--mac", "02:00:00:00:03:03", "--vlan", "10", "--qos", "3")
    assert res.exit_code == 0, res.output
    assert "VF 3 on enp59s0f1: changed vlan 0 -> 10" in res.output
    res = run(root, "show", PF, "3")
    assert res.exit_code == 0
    assert res.output.strip() == (
        "vf 3     link/ether 02:00:00:00:03:03 brd ff:ff:ff:ff:ff:ff, vlan 10, qos 3, "
        "spoof checking on, link-state auto, trust off"
    )


def test_show_json_has_stable_keys(root: Path) -> None:
    res = run(root, "set", PF, "1", "--trust", "on", "--spoofchk", "off", "--max-rate", "200")
    assert res.exit_code == 0, res.output
    data = json.loads(run(root, "show", PF, "--json").output)
    assert data["pf"] == PF
    assert [v["vf"] for v in data["vfs"]] == [0, 1, 2, 3]
    one = data["vfs"][1]
    assert set(one) == {
        "vf", "mac", "vlan", "qos", "proto", "spoofchk", "trust", "link_state",
        "min_tx_rate", "max_tx_rate", "rss_query", "stats",
    }  # fmt: skip
    assert (one["trust"], one["spoofchk"], one["max_tx_rate"]) == (True, False, 200)
    assert one["proto"] == "802.1Q"
    assert one["link_state"] == "auto"


def test_dry_run_changes_nothing(root: Path) -> None:
    res = run(root, "set", PF, "0", "--vlan", "5", "--trust", "on", "--dry-run")
    assert res.exit_code == 0
    assert "would change vlan 0 -> 5" in res.output
    assert "one RTM_SETLINK request carrying vlan, trust" in res.output
    assert json.loads(run(root, "show", PF, "0", "--json").output)["vfs"][0]["vlan"] == 0


def test_refused_attribute_is_reported_and_vf_left_unchanged(root: Path) -> None:
    res = run(root, "set", PF, "2", "--vlan", "7", "--state", "disable")
    assert isinstance(res.exception, HostError)
    assert str(res.exception) == (
        "failed to set VF 2 link-state on enp59s0f1: Operation not supported "
        "(the driver refused link-state; VF left unchanged)"
    )
    assert json.loads(run(root, "show", PF, "2", "--json").output)["vfs"][0]["vlan"] == 0


def test_proto_802_1ad_refused_by_igb(root: Path) -> None:
    res = run(root, "set", PF, "0", "--vlan", "7", "--proto", "802.1ad")
    assert isinstance(res.exception, HostError)
    assert res.exception.errno == 93


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--vlan", "4095"], "vlan"),
        (["--qos", "3"], "qos"),
        (["--mac", "01:00:5e:00:00:01"], "mac"),
        (["--proto", "qinq", "--vlan", "3"], "proto"),
        (["--min-rate", "300", "--max-rate", "100"], "min-rate"),
    ],
)
def test_validation_errors(root: Path, args: list[str], field: str) -> None:
    res = run(root, "set", PF, "0", *args)
    assert isinstance(res.exception, InvalidInput)
    assert res.exception.field == field


def test_usage_errors(root: Path) -> None:
    assert run(root, "set", PF, "0").exit_code == 2  # nothing to set
    assert run(root, "set", PF, "0", "--spoofchk", "maybe").exit_code == 2
    assert isinstance(run(root, "show", PF, "9").exception, NotFound)


def test_reset(root: Path) -> None:
    run(root, "set", PF, "1", "--mac", "02:00:00:00:00:11", "--vlan", "9", "--trust", "on")
    res = run(root, "reset", PF, "1")
    assert res.exit_code == 0
    assert "changed trust on -> off" in res.output
    line = run(root, "show", PF, "1").output.strip()
    assert line == (
        "vf 1     link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff, "
        "spoof checking on, link-state auto, trust off"
    )
    assert "nothing to change" in run(root, "reset", PF, "1").output
