"""IPAM delegation against Debian's real Go IPAM plugins (host-local, static).

host-local only writes files under its `dataDir` and static touches nothing, so these need no
root: they run wherever the plugins are installed (containernetworking-plugins, /usr/lib/cni).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sriovkit.errors import InvalidInput, NotFound, Timeout
from sriovkit.host.ipam import Ipam, IpamError, ipam_type

CNI_DIR = Path(os.environ.get("SRIOVKIT_TEST_CNI_DIR", "/usr/lib/cni"))

if not all((CNI_DIR / p).is_file() for p in ("host-local", "static")):
    pytest.skip(
        f"needs the host-local and static IPAM plugins in {CNI_DIR} "
        "(Debian: containernetworking-plugins)",
        allow_module_level=True,
    )


def env(container: str) -> dict[str, str]:
    # host-local never opens the netns, but the plugin skeleton insists on CNI_NETNS for ADD.
    return {
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{container}",
        "CNI_IFNAME": "net1",
        "CNI_ARGS": "",
        "HOME": "/must/not/leak",
    }


def host_local(data: Path, subnet: str = "10.99.0.0/29") -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "sktest",
        "type": "sriov",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(data)},
    }


@pytest.fixture
def ipam() -> Ipam:
    return Ipam([Path("/nonexistent/cni"), CNI_DIR], timeout=10.0)


def test_host_local_add_add_del(ipam: Ipam, tmp_path: Path) -> None:
    conf = host_local(tmp_path / "data")
    first = ipam.add(conf, env("c1"))
    second = ipam.add(conf, env("c2"))
    a1, a2 = first["ips"][0]["address"], second["ips"][0]["address"]
    assert a1 != a2
    assert {a1, a2} <= {f"10.99.0.{n}/29" for n in range(2, 7)}
    assert first["ips"][0]["gateway"] == "10.99.0.1"
    store = tmp_path / "data" / "sktest"
    ip1 = a1.split("/")[0]
    assert (store / ip1).read_text().splitlines()[0] == "c1"

    ipam.delete(conf, env("c1"))
    assert not (store / ip1).exists()
    assert (store / a2.split("/")[0]).exists()
    ipam.delete(conf, env("c1"))  # DEL twice: released already, still success


def test_host_local_exhausted_range(ipam: Ipam, tmp_path: Path) -> None:
    conf = host_local(tmp_path / "data", subnet="10.99.0.0/30")  # one usable address
    ipam.add(conf, env("c1"))
    with pytest.raises(IpamError) as err:
        ipam.add(conf, env("c2"))
    message = str(err.value)
    assert message.startswith("IPAM plugin host-local failed (code 999): ")
    assert "no IP addresses available" in message
    assert err.value.plugin == "host-local"


def test_plugin_error_code_is_kept(ipam: Ipam, tmp_path: Path) -> None:
    # The plugin's own validation: ADD without a netns is "bad environment" (CNI code 4).
    conf = host_local(tmp_path / "data")
    bad = {k: v for k, v in env("c1").items() if k != "CNI_NETNS"}
    with pytest.raises(IpamError) as err:
        ipam.add(conf, bad)
    assert (err.value.code, err.value.cni_code) == (4, 4)
    assert "CNI_NETNS" in str(err.value)


def test_static_returns_configured_address(ipam: Ipam) -> None:
    conf = {
        "cniVersion": "1.0.0",
        "name": "skstatic",
        "type": "sriov",
        "ipam": {
            "type": "static",
            "addresses": [{"address": "10.5.0.7/24", "gateway": "10.5.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    result = ipam.add(conf, env("c1"))
    assert result["ips"] == [{"address": "10.5.0.7/24", "gateway": "10.5.0.1"}]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}]
    ipam.delete(conf, env("c1"))


def test_unknown_type_names_the_searched_dirs(ipam: Ipam) -> None:
    conf = {"cniVersion": "1.0.0", "name": "x", "ipam": {"type": "nosuch-ipam"}}
    with pytest.raises(NotFound) as err:
        ipam.add(conf, env("c1"))
    assert "nosuch-ipam" in str(err.value)
    assert f"/nonexistent/cni, {CNI_DIR}" in str(err.value)


@pytest.mark.parametrize("kind", ["../host-local", "/usr/lib/cni/host-local", "..", "", ".x"])
def test_type_must_be_a_plain_name(ipam: Ipam, kind: str) -> None:
    conf = {"cniVersion": "1.0.0", "name": "x", "ipam": {"type": kind}}
    with pytest.raises(InvalidInput) as err:
        ipam.add(conf, env("c1"))
    assert err.value.field == "ipam.type"


def test_missing_ipam_section() -> None:
    with pytest.raises(InvalidInput) as err:
        ipam_type({"name": "x"})
    assert err.value.field == "ipam"


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_hanging_plugin_times_out_and_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The plugin leaves a grandchild holding stdout: the whole session must be killed.
    script(tmp_path, "hang", f"sleep 60 & echo $! > {pidfile}\nwait\n")
    ipam = Ipam([tmp_path], timeout=0.5)
    conf = {"cniVersion": "1.0.0", "name": "x", "ipam": {"type": "hang"}}
    with pytest.raises(Timeout) as err:
        ipam.add(conf, env("c1"))
    assert str(err.value) == "IPAM plugin hang did not answer ADD within 0.5 s"
    assert not alive(int(pidfile.read_text()))


def alive(pid: int) -> bool:
    """True while `pid` is a live (not dead, not zombie) process; waits out its exit."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.02)  # SIGKILL was sent; the exit itself takes a moment
    return True


def test_plugin_sees_clean_env_and_whole_config(tmp_path: Path) -> None:
    dump = tmp_path / "seen"
    script(
        tmp_path,
        "spy",
        f'env | sort > {dump}.env\ncat > {dump}.json\necho \'{{"cniVersion":"1.0.0","ips":[]}}\'\n',
    )
    ipam = Ipam([tmp_path], timeout=5.0)
    conf = {"cniVersion": "1.0.0", "name": "x", "type": "sriov", "ipam": {"type": "spy"}}
    assert ipam.add(conf, env("c9")) == {"cniVersion": "1.0.0", "ips": []}
    names = {line.split("=", 1)[0] for line in Path(f"{dump}.env").read_text().splitlines()}
    assert {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "PATH"} <= names
    assert "HOME" not in names
    assert "CNI_COMMAND=ADD" in Path(f"{dump}.env").read_text()

    assert json.loads(Path(f"{dump}.json").read_text()) == conf


def test_crashing_plugin_without_json(tmp_path: Path) -> None:
    script(tmp_path, "crash", "echo 'boom: disk on fire' >&2\nexit 3\n")
    ipam = Ipam([tmp_path], timeout=5.0)
    conf = {"cniVersion": "1.0.0", "name": "x", "ipam": {"type": "crash"}}
    with pytest.raises(IpamError) as err:
        ipam.delete(conf, env("c1"))
    assert str(err.value) == (
        "IPAM plugin crash failed (code 999): DEL exited with status 3: boom: disk on fire"
    )


def test_a_1_1_0_config_reaches_a_plugin_that_knows_only_1_0_0(ipam: Ipam) -> None:
    conf = {
        "cniVersion": "1.1.0",
        "name": "skstatic11",
        "type": "sriov",
        "ipam": {"type": "static", "addresses": [{"address": "10.5.1.7/24"}]},
    }
    version = subprocess.run(
        ["/usr/lib/cni/static"], env={"CNI_COMMAND": "VERSION"}, input=b"{}",
        capture_output=True, check=False,
    )  # fmt: skip
    if b'"1.1.0"' in version.stdout:
        pytest.skip("this static plugin knows 1.1.0 itself: no fallback to exercise")
    result = ipam.add(conf, env("c11"))
    assert result["ips"] == [{"address": "10.5.1.7/24"}]
    ipam.delete(conf, env("c11"))
    with pytest.raises(IpamError) as err:  # other versions are not second-guessed
        ipam.add({**conf, "cniVersion": "9.9.9"}, env("c12"))
    assert err.value.code == 1


def test_gc_reaches_the_plugin_and_a_plugin_without_gc_is_not_an_error(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    script(
        tmp_path,
        "gcaware",
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        '  echo \'{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}\'; exit 0\nfi\n'
        f'echo "$CNI_COMMAND" >> {seen}; cat >> {seen}\n',
    )
    conf = {
        "cniVersion": "1.1.0",
        "name": "n",
        "type": "sriov",
        "ipam": {"type": "gcaware"},
        "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "net1"}],
    }
    assert Ipam([tmp_path]).gc(conf, {}) is True
    lines = seen.read_text().splitlines()
    assert lines[0] == "GC" and json.loads(lines[1])["cni.dev/valid-attachments"]
    # Debian 12's host-local predates GC: it refuses 1.1.0 (code 1), which is not a failure
    real = Ipam([Path("/usr/lib/cni")])
    version = subprocess.run(["/usr/lib/cni/host-local"], env={"CNI_COMMAND": "VERSION"},
                             input=b"{}", capture_output=True, check=False)  # fmt: skip
    if b'"1.1.0"' not in version.stdout:
        local = {**conf, "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
        assert real.gc(local, {}) is False


def test_status_is_passed_on_and_a_not_ready_plugin_makes_the_sriov_plugin_not_ready(
    tmp_path: Path,
) -> None:
    from sriovkit.cni.dispatch import execute  # noqa: PLC0415

    script(
        tmp_path,
        "notready",
        'if [ "$CNI_COMMAND" = VERSION ]; then\n'
        '  echo \'{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}\'; exit 0\nfi\n'
        'echo \'{"cniVersion":"1.1.0","code":51,"msg":"no addresses left"}\'; exit 1\n',
    )
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "sriov", "ipam": {"type": "notready"}}
    with pytest.raises(IpamError) as err:
        Ipam([tmp_path]).status(conf, {})
    assert err.value.cni_code == 51
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(tmp_path),
           "SRIOVKIT_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    code, out = execute(env, json.dumps(conf).encode())
    assert code == 1 and json.loads(out)["code"] == 51
    # host-local predates STATUS: nothing is asked, the plugin is ready
    local = {**conf, "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
    env["CNI_PATH"] = "/usr/lib/cni"
    assert execute(env, json.dumps(local).encode())[0] == 0
