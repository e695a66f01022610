"""`sriovkit bond ...` on a simulated host: the whole life of a bond of two VFs through the CLI.

Every call is a separate `cli.main` run (as a user types them), so what `delete` gives back comes
from what `create` recorded under the host root, not from memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sriovkit import cli
from sriovkit.host.bondrecords import BONDS_DIR
from sriovkit.model.bond import BondMode, LacpRate
from sriovkit.model.bond_status import parse_bond_status
from sriovkit.sim import create_host
from sriovkit.wiring import open_netlink

P0, P1 = "enp59s0f0v0", "enp59s0f1v0"  # VF 0 of each port of a dual-port 82576
FIXTURES = Path(__file__).parent.parent / "fixtures" / "bonding"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    create_host(tmp_path, ["82576"], vfs=2, extras=False)
    return tmp_path


def sk(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--root", str(root), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def links(root: Path) -> dict[str, tuple[str, int, bool, int | None]]:
    netlink = open_netlink(root)
    try:
        return {lk.name: (lk.mac, lk.mtu, lk.up, lk.master) for lk in netlink.links()}
    finally:
        netlink.close()


def test_create_show_render_delete_gives_the_vfs_back(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = links(root)
    code, out, err = sk(root, capsys, "bond", "create", "bond0", "--mode", "active-backup",
                        "--port", P0, "--port", P1, "-o", "miimon=100",
                        "-o", f"primary={P0}")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[1] == f"  options miimon=100 primary={P0}"
    assert f"  port {P0} (VF 0 of PF 0000:3b:00.0): " in out
    assert f"  port {P1} (VF 0 of PF 0000:3b:00.1): " in out
    assert (root / BONDS_DIR / "bond0.json").is_file()
    bond_index = links(root)["bond0"]
    assert bond_index is not None

    code, out, err = sk(root, capsys, "bond", "show", "bond0", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["mode"], shown["options"]["miimon"], shown["options"]["primary"]) == (
        "active-backup", 100, P0,
    )  # fmt: skip
    assert [(p["name"], p["pf"], p["vf"]) for p in shown["ports"]] == [
        (P0, "0000:3b:00.0", 0), (P1, "0000:3b:00.1", 0),
    ]  # fmt: skip

    code, out, err = sk(root, capsys, "bond", "list")
    assert out == f"bond0            active-backup  UP    ports {P0},{P1}\n"

    code, out, err = sk(root, capsys, "bond", "render", "bond0", "--format", "ifcfg")
    assert code == 0, err
    assert f'BONDING_OPTS="mode=active-backup miimon=100 primary={P0}"' in out
    assert f"# --- ifcfg-{P1}" in out and "MASTER=bond0" in out

    code, out, err = sk(root, capsys, "bond", "delete", "bond0")
    assert code == 0, err
    assert links(root) == before  # MAC, MTU, admin state and no master: as before create
    assert not (root / BONDS_DIR / "bond0.json").exists()


def test_dry_run_and_bad_input_change_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = links(root)
    code, out, _ = sk(root, capsys, "bond", "create", "bond0", "--mode", "802.3ad",
                      "--port", P0, "--port", P1, "-o", "lacp_rate=fast", "--dry-run")  # fmt: skip
    assert code == 0
    assert out.splitlines()[0] == "create bond bond0 mode 802.3ad mtu 1500 lacp_rate=fast"
    bad = [
        (["--mode", "active-backup", "--port", P0, "-o", "lacp_rate=fast"], "lacp_rate"),
        (["--mode", "turbo", "--port", P0], "invalid mode"),
        (["--mode", "active-backup", "--port", "nosuch0"], "nosuch0"),
        (["--mode", "active-backup", "--port", P0, "-o", "miimon=100", "-o", "updelay=250"],
         "updelay"),
        (["--mode", "active-backup", "--port", P0, "-o", "bogus=1"], "invalid bogus"),
        (["--mode", "active-backup", "--port", f"{P0},queue_id=x"], "--port queue_id"),
    ]  # fmt: skip
    for args, field in bad:
        code, out, err = sk(root, capsys, "bond", "create", "bond0", *args)
        assert code != 0, args
        assert err.startswith("sriovkit: error: ") and field in err, (args, err)
        assert "Traceback" not in err
    assert links(root) == before
    assert not (root / BONDS_DIR).exists() or not list((root / BONDS_DIR).iterdir())


def test_ports_added_and_removed_come_back(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = links(root)
    assert sk(root, capsys, "bond", "create", "bond0", "--mode", "balance-xor",
              "--port", P0, "-o", "miimon=100")[0] == 0  # fmt: skip
    code, out, err = sk(root, capsys, "bond", "add-port", "bond0", f"{P1},queue_id=2")
    assert code == 0, err
    assert f"port {P1}" in out and "queue 2" in out
    code, out, err = sk(root, capsys, "bond", "add-port", "bond0", P1)
    assert code != 0 and f"{P1} is already a port of bond0" in err
    code, out, err = sk(root, capsys, "bond", "remove-port", "bond0", P1)
    assert code == 0, err
    assert links(root)[P1] == before[P1]
    assert sk(root, capsys, "bond", "set", "bond0", "-o", "xmit_hash_policy=layer2+3")[0] == 0
    code, out, _ = sk(root, capsys, "bond", "show", "bond0")
    assert "xmit_hash_policy=layer2+3" in out
    assert sk(root, capsys, "bond", "delete", "bond0")[0] == 0
    assert links(root) == before


def test_show_a_saved_proc_text(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixture = FIXTURES / "active-backup.proc.txt"
    code, out, err = sk(root, capsys, "bond", "show", "--from-file", str(fixture), "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["mode"] == "active-backup"
    assert len(status["slaves"]) == 2
    code, out, err = sk(root, capsys, "bond", "show", "--from-file", str(root / "nothing"))
    assert code == 2 and "invalid --from-file: cannot read" in err


def test_the_simulated_driver_publishes_proc_text_like_the_kernel(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--port", P0, "--port", P1, "-o", "lacp_rate=fast", "-o", "ad_actor_sys_prio=100"]
    assert sk(root, capsys, "bond", "create", "bond7", "--mode", "802.3ad", *args)[0] == 0
    proc = root / "proc/net/bonding/bond7"
    status = parse_bond_status(proc.read_text(), name="bond7")
    assert status.mode is BondMode.IEEE_802_3AD
    assert status.ad is not None
    assert (status.ad.lacp_rate, status.ad.system_priority) == (LacpRate.FAST, 100)
    assert [s.name for s in status.slaves] == [P0, P1]
    assert (root / "sys/class/net/bonding_masters").read_text() == "bond7\n"
    code, out, _ = sk(root, capsys, "bond", "show", "--from-file", str(proc), "bond7")
    assert code == 0 and out.startswith("mode 802.3ad, mii down")
    assert sk(root, capsys, "bond", "delete", "bond7")[0] == 0
    assert not proc.exists()
    assert (root / "sys/class/net/bonding_masters").read_text() == "\n"
