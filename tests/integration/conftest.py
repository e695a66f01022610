"""Fixtures shared by the integration tier: a veth-mode simulated host, its CNI state, a pod netns.

A module that needs another shape (fewer VFs, a CNI shim lab) defines its own fixture of the same
name, which takes precedence over these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from attach_lab import Lab, drop_netns, make_netns
from cnikit import SHIM_KINDS

from sriovkit.sim.veth import VethHost, create_veth_host


@pytest.fixture(params=SHIM_KINDS)
def shim_kind(request: pytest.FixtureRequest) -> str:
    """Which installed shim a CNI process-level test runs through: the Python one or the
    static C one (`cnikit.install_shim`)."""
    return str(request.param)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[VethHost]:
    """A dual-port 82576 with 2 VFs per port whose VF netdevs are real veth ends."""
    made = create_veth_host(tmp_path / "host", "82576", vfs=2, prefix="ski" + uuid.uuid4().hex[:4])
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def lab(host: VethHost, tmp_path: Path) -> Iterator[Lab]:
    """CNI state dir, host-local data dir and the seams on `host`."""
    made = Lab(host.root, tmp_path / "state", tmp_path / "ipam")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pod() -> Iterator[Path]:
    """A fresh named network namespace, deleted afterwards."""
    path = make_netns()
    try:
        yield path
    finally:
        drop_netns(path)


@pytest.fixture
def pods() -> Iterator[list[Path]]:
    """Network namespaces a test makes with `attach_lab.new_pod(pods)`, deleted afterwards."""
    made: list[Path] = []
    try:
        yield made
    finally:
        for path in made:
            drop_netns(path)
