"""`host/filewatch.FileWatch`: a config file's changes seen through inotify on its directories,
including a Kubernetes ConfigMap volume's `..data` symlink swap."""

from __future__ import annotations

import os
import select
import shutil
from pathlib import Path

from sriovkit.host.events import Event
from sriovkit.host.filewatch import FileWatch


def _events(watch: FileWatch) -> list[Event]:
    """What the watch has after the kernel queued it (the bound only guards a broken watch)."""
    ready, _, _ = select.select([watch.fileno()], [], [], 10)
    return watch.read() if ready else []


def _quiet(watch: FileWatch) -> bool:
    ready, _, _ = select.select([watch.fileno()], [], [], 0)
    return not ready and watch.read() == []


def _configmap_version(volume: Path, stamp: str, text: str) -> None:
    """What kubelet's atomic writer does: a new directory, `..data_tmp` pointing at it, renamed
    over `..data`, the old directory removed."""
    new = volume / f"..{stamp}"
    new.mkdir()
    (new / "config.yaml").write_text(text)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.symlink(new.name, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")
    if old is not None:
        shutil.rmtree(volume / old)


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    volume = tmp_path / "pcidp"
    volume.mkdir()
    _configmap_version(volume, "2026_12_03_17_00_00.1", "resourceList: []\n")
    os.symlink("..data/config.yaml", volume / "config.yaml")
    watch = FileWatch(volume / "config.yaml")
    try:
        assert set(watch.watched) == {volume, volume / "..2026_12_03_17_00_00.1"}
        assert _quiet(watch)
        _configmap_version(volume, "2026_12_03_17_01_00.2", "resourceList: [{}]\n")
        assert _events(watch) == [Event("config", str(volume / "config.yaml"))]
        # Re-armed on the new version's directory; the next swap is seen too.
        assert set(watch.watched) == {volume, volume / "..2026_12_03_17_01_00.2"}
        _configmap_version(volume, "2026_12_03_17_02_00.3", "resourceList: []\n")
        assert _events(watch) != []
    finally:
        watch.close()


def test_edits_in_place_and_by_rename_are_seen(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    watch = FileWatch(config)
    try:
        assert watch.watched == [tmp_path]
        with config.open("a") as f:
            f.write(" ")
        assert _events(watch) != []
        (tmp_path / "config.json.new").write_text('{"resourceList": []}')
        os.rename(tmp_path / "config.json.new", config)
        assert _events(watch) != []
        assert _quiet(watch)
    finally:
        watch.close()


def test_a_directory_removed_and_made_again_is_watched_again(tmp_path: Path) -> None:
    conf_dir = tmp_path / "pcidp"
    conf_dir.mkdir()
    (conf_dir / "config.json").write_text("{}")
    watch = FileWatch(conf_dir / "config.json")
    try:
        shutil.rmtree(conf_dir)
        assert _events(watch) != []
        assert watch.watched == [tmp_path]  # waiting for it to come back
        conf_dir.mkdir()
        assert _events(watch) != []
        assert watch.watched == [conf_dir]
        (conf_dir / "config.json").write_text("{}")
        assert _events(watch) != []
    finally:
        watch.close()
