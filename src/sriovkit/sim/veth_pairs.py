"""The record of a veth-mode simulated host's pairs (`ROOT/.sriovkit-sim/veth.json`).

Apart from sim/veth.py (which makes and removes the pairs) so that the veth-mode netlink seam
can read them without importing the module that builds hosts (no import cycle).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from sriovkit.host.atomicfile import write_file

VETH_MARKER = ".sriovkit-sim/veth.json"
"""Its presence makes a simulated host a veth-mode one (`wiring.open_netlink`)."""


@dataclass(frozen=True, slots=True)
class VethPair:
    """One VF netdev of the tree and the real veth pair standing in for it."""

    pf: str  # PF PCI address
    index: int  # VF index on the PF
    vf: str  # VF PCI address
    name: str  # the VF end: the tree's netdev name
    peer: str  # the other end, kept in the host netns
    mac: str  # the tree's MAC, given to the VF end


def load_pairs(root: Path) -> list[VethPair]:
    """The veth pairs recorded for the host at `root` (none when it is not in veth mode)."""
    try:
        data = json.loads((Path(root) / VETH_MARKER).read_text())
    except FileNotFoundError:
        return []
    return [VethPair(**p) for p in data["pairs"]]


def save_pairs(root: Path, pairs: list[VethPair]) -> None:
    """Record `pairs` for the host at `root` (atomically), with a fresh token."""
    data = {"token": secrets.token_hex(8), "pairs": [asdict(p) for p in pairs]}
    write_file(Path(root) / VETH_MARKER, json.dumps(data, indent=1).encode())


__all__ = ["VETH_MARKER", "VethPair", "load_pairs", "save_pairs"]
