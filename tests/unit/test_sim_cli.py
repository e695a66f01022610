"""`sriovkit sim profiles` and `sriovkit sim create`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sriovkit.cli import cli, main
from sriovkit.sim import profile_names


def test_profiles_lists_every_profile() -> None:
    result = CliRunner().invoke(cli, ["sim", "profiles"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == profile_names()
    assert "ice/iavf" in result.output


def test_create_writes_a_host(tmp_path: Path) -> None:
    target = tmp_path / "h"
    result = CliRunner().invoke(
        cli,
        [
            "sim",
            "create",
            str(target),
            "--profile",
            "x710",
            "--profile",
            "cx5",
            "--vfs",
            "3",
            "--seed",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (target / ".sriovkit-sim/host.json").is_file()
    assert "4 PFs, 12 VFs" in result.output


def test_create_unknown_profile_names_the_field(tmp_path: Path, capsys) -> None:
    code = main(["sim", "create", str(tmp_path / "h"), "--profile", "bogus"])
    assert code == 2
    assert "invalid profile" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()
