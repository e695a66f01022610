"""The static C shim (`cni/shim.c`) as a process: its config reader, VERSION, and the no-agent
rules, compared with the Python shim byte for byte (no root needed: the config may be owned by
the user running it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cni_agent_version import ENCODED, TRICKY, VERSIONED

from sriovkit.cni import cshim, shim
from sriovkit.cni.install import install_shim
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.journal import decode_entry, entry_name

COMPILER = cshim.find_compiler()
pytestmark = pytest.mark.skipif(COMPILER is None, reason="needs a C compiler (cc) for shim.c")


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shim.c built with the shipped flags plus -Werror: -Wall -Wextra are clean."""
    assert COMPILER is not None
    out = tmp_path_factory.mktemp("cshim") / "shim"
    src = out.with_name("shim.c")
    src.write_bytes(cshim.source())
    proc = subprocess.run(
        [COMPILER, *cshim.cflags(), "-Werror", "-o", str(out), str(src)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def config(socket: Path, state: Path, **extra: str) -> str:
    lines = [f"socket={socket}", f"state_dir={state}", "root=/"]
    lines += [f"{k}={v}" for k, v in extra.items()]
    return "".join(line + "\n" for line in lines)


@pytest.fixture
def static(binary: Path, tmp_path: Path) -> Path:
    """The static shim installed as `bin/sriov` with a config naming a socket nobody serves."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(binary, bin_dir / "sriov")
    conf = bin_dir / cshim.CONFIG_NAME
    conf.write_text(config(tmp_path / "agent.sock", tmp_path / "state"))
    conf.chmod(0o644)
    return bin_dir / "sriov"


def run(plugin: Path, env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    proc = subprocess.run([str(plugin)], input=stdin, env=env, capture_output=True, check=False)
    assert proc.stderr == b""
    return proc.returncode, proc.stdout


# --- VERSION ----------------------------------------------------------------------------------


def expected_version(stdin: bytes) -> bytes:
    answer = shim.version_answer(stdin)
    # What the scanner cannot be sure of goes to the agent; with none and no fallback, both
    # shims answer the newest version.
    return answer if answer is not None else shim.no_agent({b"CNI_COMMAND": b"VERSION"}, b"", "")[1]


UNSURE = [b"[" * 150, b'{"x":' + b"1" * 700 + b"}"]


@pytest.mark.parametrize("stdin", VERSIONED + TRICKY + ENCODED + UNSURE)
def test_version_equals_the_python_shim(static: Path, stdin: bytes) -> None:
    assert run(static, {"CNI_COMMAND": "VERSION"}, stdin) == (0, expected_version(stdin))


SOUP = st.text(max_size=24).map(lambda t: ('{"cniVersion":"0.4.0",' + t).encode())


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=48) | SOUP)
def test_version_equals_the_python_shim_on_any_bytes(static: Path, stdin: bytes) -> None:
    assert run(static, {"CNI_COMMAND": "VERSION"}, stdin) == (0, expected_version(stdin))


# --- the config ---------------------------------------------------------------------------------

BAD_CONFIGS = {
    "unknown key": "socket=/s\nstate_dir=/d\nroot=/\nport=1\n",
    "given twice": "socket=/s\nsocket=/t\nstate_dir=/d\nroot=/\n",
    "relative": "socket=s\nstate_dir=/d\nroot=/\n",
    "missing root": "socket=/s\nstate_dir=/d\n",
    "no newline": "socket=/s\nstate_dir=/d\nroot=/",
    "spaces": "socket = /s\nstate_dir=/d\nroot=/\n",
    "too long": f"socket=/{'s' * 120}\nstate_dir=/d\nroot=/\n",
    "control": "socket=/s\tx\nstate_dir=/d\nroot=/\n",
}


@pytest.mark.parametrize("text", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_a_bad_config_is_refused_naming_it(static: Path, text: str) -> None:
    conf = static.with_name(cshim.CONFIG_NAME)
    conf.write_text(text)
    code, out = run(static, {"CNI_COMMAND": "ADD"}, b"{}")
    error = json.loads(out)
    assert (code, error["code"]) == (1, 999)
    assert str(conf) in error["details"]


def test_a_config_others_may_write_or_a_symlink_is_refused(static: Path, tmp_path: Path) -> None:
    conf = static.with_name(cshim.CONFIG_NAME)
    conf.chmod(0o664)
    assert "writable by root only" in json.loads(run(static, {"CNI_COMMAND": "ADD"}, b"{}")[1])[
        "details"
    ]
    real = tmp_path / "elsewhere.conf"
    real.write_text(config(tmp_path / "a.sock", tmp_path / "state"))
    conf.unlink()
    conf.symlink_to(real)
    assert "symlink" in json.loads(run(static, {"CNI_COMMAND": "ADD"}, b"{}")[1])["details"]


def test_the_config_is_found_beside_the_real_executable(static: Path, tmp_path: Path) -> None:
    """Through a symlink elsewhere (/proc/self/exe is resolved), not from the caller's cwd."""
    link = tmp_path / "other" / "sriov"
    link.parent.mkdir()
    link.symlink_to(static)
    code, out = run(link, {"CNI_COMMAND": "STATUS"}, b"{}")
    assert (code, json.loads(out)["code"]) == (1, 50)
    assert str(tmp_path / "agent.sock") in json.loads(out)["msg"]


# --- no agent, no fallback: both shims alike ------------------------------------------------------


@pytest.fixture
def python_shim(tmp_path: Path) -> Path:
    target, _ = install_shim(
        tmp_path / "pybin", "sriov", tmp_path / "agent.sock",
        state_dir=tmp_path / "pystate", root=Path("/"), kind="python", fallback="none",
    )  # fmt: skip
    return target


CONF = json.dumps({"cniVersion": "1.1.0", "name": "n", "type": "sriov"}).encode()


@pytest.mark.parametrize("command", ["VERSION", "ADD", "CHECK", "STATUS", "GC", "DEL", "BOGUS"])
@pytest.mark.parametrize("ifname", ["net1", "a/b", ""])
def test_no_agent_answers_equal_the_python_shim(
    static: Path, python_shim: Path, command: str, ifname: str
) -> None:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_IFNAME": ifname,
           "CNI_NETNS": "/run/netns/x", "SRIOVKIT_STATE_DIR": "/ignored"}  # fmt: skip
    assert run(static, env, CONF) == run(python_shim, env, CONF)


@pytest.mark.parametrize("ifname", ["net1", "e~x.0", "a%b", "é", "e\\x", "a@b"])
def test_both_shims_journal_a_del_alike(
    static: Path, python_shim: Path, tmp_path: Path, ifname: str
) -> None:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c-1.x_2", "CNI_IFNAME": ifname,
           "CNI_NETNS": "/run/netns/x", "CNI_PATH": "/usr/lib/cni", "PATH": "/bin"}  # fmt: skip
    assert run(static, env, CONF) == (0, b"") == run(python_shim, env, CONF)
    name = entry_name(AttachmentKey("c-1.x_2", ifname))
    assert shim.journal_name(b"c-1.x_2", ifname.encode()) == name
    entries = []
    for state in ("state", "pystate"):
        journal = tmp_path / state / "pending-del"
        assert os.listdir(journal) == [name]
        assert (journal / name).stat().st_mode & 0o777 == 0o600
        entry = decode_entry(name, (journal / name).read_bytes())
        assert entry.env.pop("SRIOVKIT_STATE_DIR") == str(tmp_path / state)
        entries.append(entry)
    assert entries[0] == entries[1]
    assert entries[0].stdin == CONF
    assert entries[0].env["SRIOVKIT_ROOT"] == "/"
    assert "PATH" not in entries[0].env
