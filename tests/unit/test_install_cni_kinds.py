"""`sriovkit install-cni --shim auto|static|python`, `--shim-binary`, `--fallback`: what lands
in the bin dir, and the errors that name the option at fault."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sriovkit.cni import cshim

ELF = b"\x7fELF" + b"\0" * 60  # enough to pass for a prebuilt shim


def install(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Through `cli.main` (the CLI's error boundary); (exit code, stdout + stderr)."""
    argv = ["install-cni", "--bin-dir", str(tmp_path / "bin"), "--socket", "/run/x/agent.sock",
            "--state-dir", str(tmp_path / "state"), *args]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "sriovkit.cli", *argv], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_static_with_a_prebuilt_binary_writes_it_and_its_config(tmp_path: Path) -> None:
    binary = tmp_path / "prebuilt"
    binary.write_bytes(ELF)
    code, out = install(tmp_path, "--shim", "static", "--shim-binary", str(binary))
    assert code == 0, out
    plugin = tmp_path / "bin" / "sriov"
    assert plugin.read_bytes() == ELF
    assert stat.S_IMODE(plugin.stat().st_mode) == 0o755
    conf = tmp_path / "bin" / cshim.CONFIG_NAME
    assert conf.read_text().splitlines()[1:] == [
        "socket=/run/x/agent.sock", f"state_dir={tmp_path / 'state'}", "root=/",
    ]  # fmt: skip
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert "installed" in out
    again = install(tmp_path, "--shim", "static", "--shim-binary", str(binary))
    assert again == (0, f"unchanged: {plugin}\n")
    assert [p.name for p in (tmp_path / "bin").iterdir() if p.name.startswith(".")] == []


def test_fallback_is_checked_and_written(tmp_path: Path) -> None:
    binary = tmp_path / "prebuilt"
    binary.write_bytes(ELF)
    code, out = install(tmp_path, "--shim-binary", str(binary), "--fallback", sys.executable)
    assert code == 0, out
    conf = (tmp_path / "bin" / cshim.CONFIG_NAME).read_text()
    assert f"fallback={sys.executable}\n" in conf
    code, out = install(tmp_path, "--shim-binary", str(binary), "--fallback", "/bin/true")
    assert code != 0 and "--fallback /bin/true is not a Python that can import sriovkit" in out


def test_auto_without_a_compiler_installs_the_python_shim(tmp_path: Path) -> None:
    code, out = install(tmp_path, "--shim", "auto", env={"CC": "no-such-cc"})
    assert code == 0, out
    assert (tmp_path / "bin" / "sriov").read_bytes().startswith(b"#!")
    assert not (tmp_path / "bin" / cshim.CONFIG_NAME).exists()


def test_python_shim_without_fallback(tmp_path: Path) -> None:
    code, out = install(tmp_path, "--shim", "python", "--fallback", "none")
    assert code == 0, out
    text = (tmp_path / "bin" / "sriov").read_text()
    assert "FALLBACK = False\n" in text and "SITE: tuple[str, ...] = ()\n" in text


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--shim", "static"], {"CC": "no-such-cc"}, "--shim-binary"),
        (["--shim", "python", "--shim-binary", "/x"], None, "--shim-binary"),
        (["--shim-binary", "/nonexistent/shim"], None, "--shim-binary /nonexistent/shim"),
        (["--fallback", "python3"], None, "--fallback"),
    ],
)
def test_errors_name_the_option(
    tmp_path: Path, args: list[str], env: dict[str, str] | None, words: str
) -> None:
    code, out = install(tmp_path, *args, env=env)
    assert code != 0
    assert words in out and "Traceback" not in out
    assert not (tmp_path / "bin" / "sriov").exists()


def test_a_prebuilt_file_that_is_not_an_executable_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, out = install(tmp_path, "--shim-binary", str(text))
    assert code != 0 and "not an executable" in out
    assert not os.path.exists(tmp_path / "bin" / "sriov")
