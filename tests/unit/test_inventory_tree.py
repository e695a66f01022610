"""`sriovkit inventory` without options: the tree of PFs and VFs a person reads."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sriovkit.cli import cli
from sriovkit.errors import NotFound
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.ops.discover import collect
from sriovkit.sim import create_host


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    create_host(root, ["82576", "e810", "cx5"], vfs=3)
    return root


def _net(sysfs: Sysfs, name: str) -> str:
    info = sysfs.netdev(name)
    state = (info.operstate or "?") + (", no carrier" if info.carrier is False else "")
    return f"{name} {info.mac or '-'} {state}"


def test_tree_shows_every_pf_with_its_vfs_and_the_other_nics(host: Path) -> None:
    sysfs = Sysfs(host)
    inv = collect(sysfs, PciIds())
    res = CliRunner().invoke(cli, ["--root", str(host), "inventory"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"SR-IOV physical functions (simulated host at {host}): {len(inv.pfs)}"
    expected: list[str] = []
    for n, pf in enumerate(inv.pfs):
        last = n == len(inv.pfs) - 1
        names = inv.names[pf.address]
        expected.append(
            f"{'└── ' if last else '├── '}{pf.address} [{pf.vendor_id:04x}:{pf.device_id:04x}] "
            f"{names.vendor} {names.device}"
        )
        indent = "    " if last else "│   "
        assert pf.sriov is not None
        expected.append(
            f"{indent}  driver {pf.driver}  netdev {_net(sysfs, pf.netdevs[0])}  "
            f"NUMA {pf.numa_node}  IOMMU group {pf.iommu_group}"
        )
        expected.append(
            f"{indent}  VFs {pf.sriov.num_vfs}/{pf.sriov.total_vfs}  offset {pf.sriov.offset} "
            f"stride {pf.sriov.stride}  VF device {pf.sriov.vf_device_id:04x}  "
            f"SR-IOV cap at {pf.sriov.cap_offset:#x}"
        )
        vfs = inv.vfs_of(pf.address)
        assert [v.vf_index for v in vfs] == [0, 1, 2]
        for i, vf in enumerate(vfs):
            expected.append(
                f"{indent}{'└── ' if i == len(vfs) - 1 else '├── '}VF {i:>3}  {vf.address} "
                f"[{vf.vendor_id:04x}:{vf.device_id:04x}]  driver {vf.driver}  "
                f"{_net(sysfs, vf.netdevs[0])}  NUMA {vf.numa_node}  IOMMU {vf.iommu_group}"
            )
    assert lines[1 : 1 + len(expected)] == expected
    rest = lines[1 + len(expected) :]
    assert rest[0] == f"Other network functions: {len(inv.other_nics)}"
    assert len(rest) == 1 + len(inv.other_nics) and inv.other_nics
    for line, dev in zip(rest[1:], inv.other_nics, strict=True):
        assert line.startswith(("├── ", "└── ")) and f"{dev.address} [" in line
        assert f"driver {dev.driver}" in line and f"netdev {_net(sysfs, dev.netdevs[0])}" in line
    assert rest[-1].startswith("└── ")


def test_tree_marks_pf_addresses_bold_on_a_terminal(host: Path) -> None:
    # Through rich on a terminal (a pty here); a pipe gets the same text without escapes.
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the pty as its stdout
        os.execv(sys.executable, [sys.executable, "-m", "sriovkit.cli", "--root", str(host),
                                  "inventory"])  # fmt: skip
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    out = b"".join(chunks).decode()
    pf = collect(Sysfs(host), PciIds()).pfs[0]
    assert re.search(rf"\x1b\[1m{re.escape(str(pf.address))}\x1b\[0m \[", out), out[:300]
    piped = subprocess.run(
        [sys.executable, "-m", "sriovkit.cli", "--root", str(host), "inventory"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "\x1b" not in piped
    assert re.sub(r"\x1b\[[0-9;]*m", "", out).replace("\r\n", "\n") == piped


def test_netdev_link_reads_what_netdev_reads(host: Path) -> None:
    sysfs = Sysfs(host)
    for name in sorted(os.listdir(host / "sys/class/net"))[:20]:
        full, brief = sysfs.netdev(name), sysfs.netdev_link(name)
        assert (brief.name, brief.mac, brief.operstate, brief.carrier) == (
            full.name, full.mac, full.operstate, full.carrier,
        )  # fmt: skip
    for bad in ("nosuch0", "../net", "", ".", ".."):
        with pytest.raises(NotFound):
            sysfs.netdev_link(bad)
        with pytest.raises(NotFound):
            sysfs.netdev(bad)
        assert sysfs.netdev_pci(bad) is None
