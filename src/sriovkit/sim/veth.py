"""Veth mode: a simulated host whose VF netdevs are real veth ends in the host netns.

The integration tier needs what only a kernel does (netns moves, renames, MTU, MAC, addresses,
routes, IPAM) without SR-IOV hardware. `create_veth_host()` writes a simulated host tree
(`create_host`) and, for every VF netdev the tree names, creates a real veth pair: the VF end
carries the tree's netdev name and MAC, its peer (`<base>r<index>`, brought up so the VF end
gets carrier once it is up) stays in the host netns. `SplitNetlink` (`sim/veth_netlink.py`)
then sends PF-side VF operations (`vfs`, `set_vf`) and anything about the tree's own netdevs
(PFs) to the fake netlink with the driver's capability table, and every other
link/netns/address/route request to the kernel. `wiring.open_netlink()` picks it when
`ROOT/.sriovkit-sim/veth.json` exists.

How the tree and the kernel stay coherent:

- The tree is the host's view at VF creation. `sys/bus/pci/devices/<vf>/net/<name>` and
  `sys/class/net/<name>` keep the original name (and the real ifindex, written at creation)
  even while the veth end sits renamed in a pod netns. A real host's sysfs would hide a netdev
  that left the netns, so code must not use sysfs to learn where an attached VF is: it maps VF
  PCI address -> netdev name through sysfs *before* ADD and keeps that name in its attachment
  record, which is what DEL/CHECK/GC use afterwards.
- The fake's records of VF netdevs (name, netns, MTU, ...) are not consulted in veth mode: the
  kernel is the only truth for links. The fake keeps only the PF side (VF MAC/VLAN/QoS/...).
- The PF's VF MAC and the veth end's MAC are independent (a real VF driver may pick up the
  PF-assigned MAC on reset; a veth never does): attachment code sets the netdev MAC itself.
- Deleting a netns destroys a veth end still in it, with its peer (a real VF returns to the host
  netns instead); `VethHost.cleanup()` tolerates pairs that are already gone.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sriovkit.errors import HostError, InvalidInput, NotFound
from sriovkit.sim.host import SimHost, create_host
from sriovkit.sim.machine import HOST_JSON
from sriovkit.sim.spec import decode, encode
from sriovkit.sim.veth_pairs import VETH_MARKER, VethPair, load_pairs, save_pairs

if TYPE_CHECKING:
    from sriovkit.sim.veth_netlink import SplitNetlink

_PREFIX = re.compile(r"[a-z][a-z0-9]{0,7}")
_IFNAMSIZ = 15


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which("ip") is None:
        raise HostError("veth mode needs iproute2's `ip`, which is not installed")
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise HostError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _alias(name: str) -> str | None:
    """The ifalias of link `name` in the host netns ("" if unset), None if there is no such link."""
    proc = _ip("-j", "link", "show", "dev", name, check=False)
    if proc.returncode != 0:
        return None
    found: list[dict[str, str]] = json.loads(proc.stdout or "[]")
    return found[0].get("ifalias", "") if found else None


def _tag(root: Path) -> str:
    # Both ends carry this ifalias (it travels with a netdev across netns), so cleanup deletes
    # only links this host made, never one that merely has the same name.
    token = json.loads((Path(root) / VETH_MARKER).read_text())["token"]
    return f"sriovkit-veth {token}"


class VethHost:
    """A simulated host in veth mode at `root`; use as a context manager or call `cleanup()`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.sim = SimHost(self.root)
        self.pairs = load_pairs(self.root)

    def __enter__(self) -> VethHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def pair(self, vf: str) -> VethPair:
        """The pair standing in for the VF at PCI address `vf`."""
        for pair in self.pairs:
            if pair.vf == vf:
                return pair
        raise NotFound(f"no veth stands in for VF {vf} on the simulated host at {self.root}")

    def netlink(self) -> SplitNetlink:
        """The split netlink seam for this host (close it when done)."""
        from sriovkit.sim.veth_netlink import open_veth_netlink  # noqa: PLC0415 - pyroute2

        return open_veth_netlink(self.root)

    def cleanup(self) -> None:
        """Delete every veth pair (idempotent); the tree stays."""
        remove_veths(self.root)


def remove_veths(root: Path) -> None:
    """Delete the veth pairs of the host at `root`, including ones a failed run left behind."""
    pairs = load_pairs(root)
    if not pairs:
        return
    tag = _tag(root)
    errors = []
    for pair in pairs:
        # Deleting either end deletes both; the peer is the end that stays in the host netns.
        for end in (pair.peer, pair.name):
            if _alias(end) != tag:
                continue  # gone (or moved away) or someone else's link of the same name
            proc = _ip("link", "del", "dev", end, check=False)
            if proc.returncode != 0 and _alias(end) is not None:
                errors.append(f"{end}: {proc.stderr.strip()}")
            break
    if errors:
        raise HostError(f"cannot delete veth pairs of {root}: {'; '.join(errors)}")


def create_veth_host(
    root: Path,
    profile: str = "82576",
    vfs: int = 2,
    *,
    prefix: str | None = None,
    extras: bool = True,
    seed: int = 0,
) -> VethHost:
    """A simulated host with one `profile` card, `vfs` VFs per PF, each VF netdev a real veth.

    VF netdevs are named `<prefix><pf>v<index>` (a random `sk????` prefix by default, so
    concurrent or leftover hosts never clash); the peers `<prefix><pf>r<index>`. If creating a
    pair fails, the pairs made so far are deleted before the error propagates.
    """
    prefix = prefix if prefix is not None else "sk" + secrets.token_hex(2)
    if not _PREFIX.fullmatch(prefix):
        raise InvalidInput("prefix", f"{prefix!r} is not 1-8 lowercase letters/digits")
    if vfs < 1:
        raise InvalidInput("vfs", f"veth mode needs at least one VF, got {vfs}")
    root = Path(root)
    create_host(root, [profile], vfs=None, extras=extras, seed=seed)
    # Name the VF netdevs before the VFs exist: the kernel emulation names them from the PF's
    # vf_name_base when it creates them, so the tree and the veths agree from the start.
    spec = decode((root / HOST_JSON).read_bytes())
    for number, pf in enumerate(spec.pfs):
        pf.vf_name_base = f"{prefix}{number}"
        if len(f"{pf.vf_name_base}r{pf.total_vfs - 1}") > _IFNAMSIZ:
            raise InvalidInput("prefix", f"{prefix!r} makes VF netdev names over 15 characters")
    (root / HOST_JSON).write_bytes(encode(spec))
    sim = SimHost(root)
    planned = []
    for number, pf in enumerate(spec.pfs):
        sim.set_num_vfs(pf.address, min(vfs, pf.total_vfs))
        for index, vf in enumerate(sim.vfs(pf.address)):
            name = f"{prefix}{number}v{index}"
            if not (root / "sys/class/net" / name).exists():
                raise HostError(f"simulated VF {vf} has no netdev {name} in {root}")
            planned.append(
                VethPair(pf.address, index, vf, name, f"{prefix}{number}r{index}", pf.vf_mac(index))
            )
    save_pairs(root, planned)  # first, so a crash half-way still knows what to delete
    try:
        for pair in planned:
            _make_pair(root, pair)
    except BaseException:
        remove_veths(root)
        raise
    return VethHost(root)


def _make_pair(root: Path, pair: VethPair) -> None:
    _ip("link", "add", pair.name, "address", pair.mac, "type", "veth", "peer", "name", pair.peer)
    try:
        tag = _tag(root)
        # `ip link add ... alias` is silently ignored for veth: tag each end with its own request.
        _ip("link", "set", "dev", pair.name, "alias", tag)
        _ip("link", "set", "dev", pair.peer, "up", "alias", tag)
    except BaseException:
        _ip("link", "del", "dev", pair.name, check=False)  # just made, not tagged yet
        raise
    # Give the tree the kernel's ifindex, so sysfs and netlink name the same interface.
    index = Path(f"/sys/class/net/{pair.name}/ifindex").read_text().strip()
    netdev = root / "sys/class/net" / pair.name
    (netdev / "ifindex").write_text(index + "\n")


__all__ = [
    "VETH_MARKER",
    "VethHost",
    "VethPair",
    "create_veth_host",
    "load_pairs",
    "remove_veths",
]
