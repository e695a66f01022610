"""Choose the seams for a root: the real host, or a simulated one written by `sriovkit.sim`.

Adapters (CLI, agent) call this; ops/ and host/ never look at which kind of host they are on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sriovkit.host.sysfs import Sysfs

if TYPE_CHECKING:  # the netlink protocol pulls in the VF models (~6 ms): inventory needs neither
    from sriovkit.host.netlink import Netlink

SIM_MARKER = ".sriovkit-sim/host.json"


def is_simulated(root: Path) -> bool:
    """True when `root` is a host tree written by `sriovkit sim create`."""
    return (Path(root) / SIM_MARKER).is_file()


def open_sysfs(root: Path) -> Sysfs:
    """The sysfs seam for `root`: kernel-emulating on a simulated host, plain otherwise."""
    if is_simulated(root):
        from sriovkit.sim.kernel import SimSysfs  # noqa: PLC0415 - only simulated hosts need it

        return SimSysfs(Path(root))
    return Sysfs(Path(root))


def open_netlink(root: Path) -> Netlink:
    """FakeNetlink(root) on a simulated host (split with the kernel in veth mode), else the
    pyroute2 seam (the caller closes it)."""
    if is_simulated(root):
        from sriovkit.sim.netlink import FakeNetlink  # noqa: PLC0415
        from sriovkit.sim.veth_netlink import open_veth_netlink  # noqa: PLC0415
        from sriovkit.sim.veth_pairs import VETH_MARKER  # noqa: PLC0415

        if (Path(root) / VETH_MARKER).is_file():
            return open_veth_netlink(Path(root))

        return FakeNetlink(Path(root))
    from sriovkit.host._pyroute2 import Pyroute2Netlink  # noqa: PLC0415 - pyroute2 costs ~140 ms

    return Pyroute2Netlink()
