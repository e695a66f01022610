"""Fault injection: the ADD process is killed after each step; DEL or GC then gives the VF back.

The ADD runs in a child process (`attach_lab.py` as a script) whose checkpoint calls
`os._exit(137)` at the chosen step, like a SIGKILL: no rollback, no finally blocks. The test
process then runs DEL (or GC with an empty valid list) and asserts the VF is exactly as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.ops.cni.plugins import SRIOV as attach
from sriovkit.sim.veth import VethHost

pytestmark = pytest.mark.root

if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("needs root and iproute2 (netns, veth)", allow_module_level=True)

from attach_lab import (  # noqa: E402
    CNI_DIR,
    KILLED,
    Lab,
    ip_link,
    leased_ips,
)

from sriovkit.sim.veth import create_veth_host  # noqa: E402

if not (CNI_DIR / "host-local").is_file():
    pytest.skip(f"needs host-local in {CNI_DIR}", allow_module_level=True)

STEPS = ["recorded", "vf-configured", "moved", "ipam", "configured", "announced", "committed"]
HELPER = Path(__file__).with_name("attach_lab.py")
EXTRA: dict[str, Any] = {
    "vlan": 210,
    "vlanQoS": 4,
    "mac": "02:00:00:66:00:01",
    "mtu": 1450,
    "trust": "on",
}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[VethHost]:
    made = create_veth_host(tmp_path / "host", "82576", vfs=1, prefix="skf" + uuid.uuid4().hex[:4])
    try:
        yield made
    finally:
        made.cleanup()


@pytest.mark.parametrize("release", ["del", "gc"])
@pytest.mark.parametrize("step", STEPS)
def test_killed_add_is_undone(
    host: VethHost, pod: Path, tmp_path: Path, step: str, release: str
) -> None:
    pair = host.pairs[0]
    lab = Lab(host.root, tmp_path / "state", tmp_path / "ipam")
    try:
        pf = next(p.netdev for p in host.sim.pfs if p.address == pair.pf) or ""
        link = ip_link(pair.name)
        assert link is not None
        before = (link["address"], link["mtu"], lab.vf_info(pf, pair.index))
        spec = {
            "root": str(host.root),
            "state": str(lab.state),
            "data": str(lab.data),
            "netns": str(pod),
            "vf": pair.vf,
            "container": "victim",
            "step": step,
            "extra": EXTRA,
        }
        child = subprocess.run(
            [sys.executable, str(HELPER), json.dumps(spec)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert child.returncode == KILLED, child.stderr
        assert lab.store.attachment_keys(), "a killed ADD must leave its record behind"

        raw = lab.raw(pair.vf, **EXTRA)
        if release == "del":
            env = lab.env("DEL", "victim", pod)
            attach.delete(lab.ctx(), env, lab.conf(env, raw), raw)
        else:
            nothing_valid: dict[str, Any] = {"cni.dev/valid-attachments": []}
            gc_raw = lab.raw(None, **nothing_valid)
            gc_env = lab.env("GC", "x", None)
            attach.gc(lab.ctx(), lab.conf(gc_env, gc_raw), gc_raw)

        back = ip_link(pair.name)
        assert back is not None, f"{pair.name} is not back in the host netns"
        assert (back["address"], back["mtu"], lab.vf_info(pf, pair.index)) == before
        assert "UP" not in back["flags"]
        assert ip_link("net1", pod) is None
        assert lab.store.attachment_keys() == []
        assert list(lab.store.allocations()) == []
        assert leased_ips(lab.data, lab.network) == []
    finally:
        lab.close()
