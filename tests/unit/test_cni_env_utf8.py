"""CNI_* variables whose bytes are not UTF-8: code 4 naming the variable, never an internal error.

The shim and the agent carry the environment's raw bytes as surrogate escapes
(`bytes.decode("utf-8", "surrogateescape")`), which is what these values are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sriovkit.cni.dispatch import execute
from sriovkit.model.cni_env import BadEnv, CniEnv

BAD = b"net\xff".decode("utf-8", "surrogateescape")


def env_for(command: str, **change: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "net1",
        "CNI_NETNS": "/run/netns/pod",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": "K8S_POD_NAME=p",
    }
    env.update(change)
    return env


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CNI_IFNAME", BAD),
        ("CNI_CONTAINERID", b"c\xc3(".decode("utf-8", "surrogateescape")),
        ("CNI_NETNS", "/run/netns/" + BAD),
        ("CNI_ARGS", "K8S_POD_NAME=" + BAD),
        ("CNI_PATH", "/usr/lib/cni:/" + BAD),
    ],
)
def test_attaching_verbs_refuse_bytes_that_are_not_utf8(command: str, var: str, value: str) -> None:
    with pytest.raises(BadEnv) as info:
        CniEnv.from_env(env_for(command, **{var: value}))
    assert info.value.var == var
    assert "not valid UTF-8" in str(info.value)
    assert "\\xff" in str(info.value) or "\\xc3" in str(info.value)  # the bytes, shown


def test_gc_and_status_look_at_cni_path_only() -> None:
    for command in ("GC", "STATUS"):
        CniEnv.from_env(env_for(command, CNI_IFNAME=BAD, CNI_CONTAINERID=BAD))  # unused: fine
        with pytest.raises(BadEnv, match="CNI_PATH"):
            CniEnv.from_env(env_for(command, CNI_PATH="/" + BAD))


def test_version_answers_whatever_else_is_set() -> None:
    env = dict.fromkeys(("CNI_IFNAME", "CNI_CONTAINERID", "CNI_PATH", "CNI_ARGS"), BAD)
    assert CniEnv.from_env({"CNI_COMMAND": "VERSION", **env}).command == "VERSION"


def test_a_lone_surrogate_that_was_never_a_byte_is_refused_too() -> None:
    with pytest.raises(BadEnv, match=r"CNI_IFNAME.*\\ud800"):
        CniEnv.from_env(env_for("ADD", CNI_IFNAME="net\ud800"))


def test_execute_answers_code_4_naming_the_variable(tmp_path: Path) -> None:
    env = env_for("ADD", CNI_IFNAME=BAD, SRIOVKIT_STATE_DIR=str(tmp_path / "state"))
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "sriov", "deviceID": "0000:3b:10.0"}
    code, out = execute(env, json.dumps(conf).encode())
    error = json.loads(out)
    assert (code, error["code"]) == (1, 4), error
    assert error["msg"].startswith("invalid CNI_IFNAME: not valid UTF-8")
    assert not (tmp_path / "state").exists()  # refused before anything was looked at
