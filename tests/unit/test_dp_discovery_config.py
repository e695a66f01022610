"""Discovery following config edits in-process: resources added and removed (feeds, listeners),
and a refused config keeping the previous one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sriovkit.deviceplugin.discovery import Discovery
from sriovkit.deviceplugin.model import ResourceFeed
from sriovkit.sim import create_host
from sriovkit.sim.netlink import FakeNetlink

PORT0 = {"resourceName": "port0", "selectors": {"pfNames": ["enp59s0f0"]}}
PORT1 = {"resourceName": "port1", "selectors": {"pfNames": ["enp59s0f1"]}}


def _write(config: Path, *entries: object) -> None:
    config.write_text(json.dumps({"resourceList": list(entries)}))


def _ids(feed: ResourceFeed) -> set[str]:
    return {d.id for d in feed.current().devices}


def test_resources_added_and_removed_reach_the_listeners(tmp_path: Path) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    _write(config, PORT0)
    d = Discovery(host, config, FakeNetlink(host))
    told: list[tuple[list[str], list[str]]] = []
    d.subscribe_resources(lambda a, r: told.append(([f.name for f in a], [f.name for f in r])))
    port0 = d.feeds[0]

    _write(config, PORT1, PORT0)
    assert d.full_pass(config_changed=True) == []  # port0's list is the same: no push
    assert told == [(["intel.com/port1"], [])]
    assert [f.name for f in d.feeds] == ["intel.com/port1", "intel.com/port0"]  # config order
    assert d.feeds[1] is port0  # kept, not rebuilt: its streams go on
    assert _ids(d.feeds[0]) == {"0000:3b:10.1", "0000:3b:10.3"}

    generation = port0.current().generation
    _write(config, {**PORT1, "resourcePrefix": "example.com"})
    d.full_pass(config_changed=True)
    assert told[1] == (["example.com/port1"], ["intel.com/port1", "intel.com/port0"])
    assert [f.name for f in d.feeds] == ["example.com/port1"]
    # A removed feed is emptied first: its ListAndWatch streams tell kubelet the devices left.
    assert _ids(port0) == set() and port0.current().generation == generation + 1


def test_a_refused_config_keeps_the_previous_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    _write(config, PORT0)
    d = Discovery(host, config, FakeNetlink(host))
    told: list[object] = []
    d.subscribe_resources(lambda a, r: told.append((a, r)))
    before = d.feeds[0].current()
    _write(config, {**PORT0, "selectors": {"pfNames": ["enp59s0f1"]}}, {"resourceName": "x"})
    with caplog.at_level(logging.ERROR, logger="sriovkit.agent"):
        assert d.full_pass(config_changed=True) == []
    assert d.feeds[0].current() == before and told == []
    (record,) = caplog.records
    assert record.getMessage() == (
        f"device plugin: config {config} refused, still serving the previous one: invalid "
        "resourceList[1] (x).selectors: required: an object or a list of objects"
    )
    config.unlink()
    with caplog.at_level(logging.ERROR, logger="sriovkit.agent"):
        d.full_pass(config_changed=True)
    assert "not found" in caplog.records[-1].getMessage()
    assert d.feeds[0].current() == before
