"""The one atomic writer (host/atomicfile.py): mode, no temp left behind, no write through a
symlink, the old file kept when the write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sriovkit.host.atomicfile import temp_name, write_at, write_file


def test_write_file_replaces_with_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "plugin"
    write_file(target, b"one", mode=0o755, parents=True)
    write_file(target, b"two", mode=0o755)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert os.listdir(target.parent) == ["plugin"]


def test_a_planted_temp_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / ".rec.tmp").symlink_to(victim)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileExistsError):
            write_at(dfd, "rec", b"new", temp=".rec.tmp")
    finally:
        os.close(dfd)
    assert victim.read_bytes() == b"keep" and not (tmp_path / "rec").exists()


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path: Path) -> None:
    (tmp_path / "rec").write_bytes(b"old")
    (tmp_path / "rec2").mkdir()  # rename() of a file over a directory fails
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(IsADirectoryError):
            write_at(dfd, "rec2", b"new")
    finally:
        os.close(dfd)
    assert (tmp_path / "rec").read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["rec", "rec2"]


def test_temp_names_are_hidden_and_distinct() -> None:
    a, b = temp_name("x.json"), temp_name("x.json")
    assert a != b and a.startswith(".x.json.") and a.endswith(".tmp")
