"""The pending-DEL journal: its names and entries (model), its files (host), its replay (agent)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sriovkit.agent.replay import replay_pending
from sriovkit.cni import shim
from sriovkit.cni.dispatch import host_context
from sriovkit.host.journal import Journal
from sriovkit.model.attachment import AttachmentKey
from sriovkit.model.journal import BadEntry, decode_entry, encode_entry, entry_name, key_of

KEYS = [("c1", "net1"), ("A.b-c_d", "eth0"), ("x" * 200, "e~x.0"), ("c", "é"), ("c", "a%b@c")]


@pytest.mark.parametrize(("cid", "ifname"), KEYS)
def test_a_name_reads_back_as_its_key_and_the_shim_builds_the_same(cid: str, ifname: str) -> None:
    key = AttachmentKey(cid, ifname)
    name = entry_name(key)
    assert key_of(name) == key
    assert shim.journal_name(cid.encode(), ifname.encode()) == name
    assert "/" not in name and not name.startswith(".")


@pytest.mark.parametrize(
    "name",
    ["", "c1.del", "c1@net1.json", "..@net1.del", "c1@..del", "c1@%2E%2E.del", "c1@a%2Fb.del",
     "c1@net%31.del", "-c@net1.del", "c1@net1.del.tmp", "c1@" + "n" * 16 + ".del"],
)  # fmt: skip
def test_names_that_are_no_canonical_attachment_are_refused(name: str) -> None:
    with pytest.raises(BadEntry):
        key_of(name)


@pytest.mark.parametrize(("cid", "ifname"), [("../x", "net1"), ("c1", "a/b"), ("c1", ".."),
                                             ("", "net1"), ("c1", "x" * 16), ("c1", "a b")])
def test_the_shim_refuses_the_same_bad_keys(cid: str, ifname: str) -> None:
    assert shim.journal_name(cid.encode(), ifname.encode()) is None


ENV = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "net1",
       "CNI_NETNS": "/run/netns/p", "SRIOVKIT_STATE_DIR": "/s",
       "SRIOVKIT_DEADLINE": "1.0"}  # fmt: skip


def test_an_entry_decodes_to_its_del_without_the_deadline() -> None:
    data = encode_entry(ENV, b'{"cniVersion":"1.0.0"}')
    entry = decode_entry("c1@net1.del", data)
    assert entry.key == AttachmentKey("c1", "net1")
    assert entry.stdin == b'{"cniVersion":"1.0.0"}'
    assert "SRIOVKIT_DEADLINE" not in entry.env and entry.env["CNI_NETNS"] == "/run/netns/p"
    # The shim's own encoder writes the same bytes.
    framed = shim.encode_request({k.encode(): v.encode() for k, v in ENV.items()
                                  if k != "SRIOVKIT_DEADLINE"}, entry.stdin)  # fmt: skip
    assert framed == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"SKC1", "shorter"),
        (b"XXXX" + encode_entry(ENV, b"{}")[4:], "bad magic"),
        (encode_entry(ENV, b"{}") + b"x", "its head says"),
        (encode_entry({**ENV, "CNI_COMMAND": "ADD"}, b"{}"), "not DEL"),
        (encode_entry({**ENV, "CNI_IFNAME": "net2"}, b"{}"), "not of c1/net1"),
    ],
)
def test_entries_that_are_not_this_del_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(BadEntry, match=why):
        decode_entry("c1@net1.del", data)


# --- the files ----------------------------------------------------------------------------------


def write(state: Path, name: str, data: bytes) -> Path:
    (state / "pending-del").mkdir(parents=True, exist_ok=True)
    path = state / "pending-del" / name
    path.write_bytes(data)
    return path


def test_no_state_dir_or_no_journal_is_nothing_pending(tmp_path: Path) -> None:
    with Journal(tmp_path / "absent").held() as dfd:
        assert dfd is None
    (tmp_path / "state").mkdir()
    with Journal(tmp_path / "state").held() as dfd:
        assert dfd is None
    assert not (tmp_path / "absent").exists()


def test_entries_symlinks_fifos_and_foreign_files_are_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    good = encode_entry(ENV, b"{}")
    write(state, "c1@net1.del", good)
    outside = tmp_path / "outside"
    outside.write_bytes(encode_entry({**ENV, "CNI_CONTAINERID": "c2"}, b"{}"))
    (state / "pending-del" / "c2@net1.del").symlink_to(outside)
    os.mkfifo(state / "pending-del" / "c3@net1.del")
    write(state, "notes.txt", b"x")
    write(state, ".c4@net1.del.1.2.tmp", b"half")  # a shim's temp: neither run nor refused
    journal = Journal(state)
    with journal.held() as dfd:
        assert dfd is not None
        pending, refused = journal.entries(dfd)
    assert [p.key for p in pending] == [AttachmentKey("c1", "net1")]
    why = {r.name: r.why for r in refused}
    assert sorted(why) == ["c2@net1.del", "c3@net1.del", "notes.txt"]
    assert "symlink" in why["c2@net1.del"] and "regular file" in why["c3@net1.del"]
    assert (state / "locks" / "pending-del.lock").is_file()


def test_a_symlinked_journal_directory_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (state / "pending-del").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(Exception, match="symlink"), Journal(state).held():
        pass


# --- the replay ---------------------------------------------------------------------------------


def test_replay_removes_what_ran_and_keeps_what_failed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    envs = {c: {**ENV, "CNI_CONTAINERID": c, "SRIOVKIT_STATE_DIR": str(state)} for c in "abc"}
    for c, env in envs.items():
        write(state, f"{c}@net1.del", encode_entry(env, b"{}"))
    wrong = {**ENV, "CNI_CONTAINERID": "d", "SRIOVKIT_STATE_DIR": "/other"}
    write(state, "d@net1.del", encode_entry(wrong, b"{}"))
    ran: list[Mapping[str, str]] = []

    def fake(env: Mapping[str, str], stdin: bytes, **_: Any) -> tuple[int, bytes]:
        ran.append(env)
        if env["CNI_CONTAINERID"] == "b":
            return 1, json.dumps({"code": 11, "msg": "VF busy"}).encode()
        return 0, b""

    report = replay_pending({"SRIOVKIT_STATE_DIR": str(state)}, host_context, fake)
    assert report.replayed == ["a@net1.del", "c@net1.del"]
    assert [name for name, _ in report.failed] == ["b@net1.del"]
    assert [r.name for r in report.refused] == ["d@net1.del"]
    assert sorted(os.listdir(state / "pending-del")) == ["b@net1.del", "d@net1.del"]
    assert [e["CNI_CONTAINERID"] for e in ran] == ["a", "b", "c"]
    assert all(e["SRIOVKIT_STATE_DIR"] == str(state) and e["CNI_COMMAND"] == "DEL" for e in ran)
