"""Which RDMA devices a PCI function has, and their character devices, read from sysfs.

A VF with RDMA (mlx5 and the like) has `<function>/infiniband/<rdma-dev>` (the verbs device's
name, which the device-info file and the `_INFO` env pass on) and one directory per character
device class: `infiniband_verbs/uverbsN`, `infiniband_mad/umadN` and `issmN`. Each names a node
`/dev/infiniband/<same name>`; a container doing RDMA needs those plus the shared connection
manager `/dev/infiniband/rdma_cm`. Read at Allocate time, not at discovery: the nodes come and
go with the driver (and with the RDMA namespace mode), and a stale list would hand the container
a node that no longer exists.

`root` is the host root (a simulated host in tests); the `/dev/...` paths returned are the
container's and the host's view, never prefixed with `root`.
"""

from __future__ import annotations

import os
from pathlib import Path

PCI_DEVICES = "sys/bus/pci/devices"
RDMA_CM = "/dev/infiniband/rdma_cm"
_CHAR_DIRS = (
    ("infiniband_verbs", "uverbs"),
    ("infiniband_mad", "umad"),
    ("infiniband_mad", "issm"),
)


class RdmaReader:
    """RDMA device names and character devices of PCI functions under `root`."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def _list(self, pci: str, sub: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / PCI_DEVICES / pci / sub))
        except OSError:
            return []

    def names(self, pci: str) -> tuple[str, ...]:
        """`mlx5_3`, ...: the function's RDMA devices; empty when it has none."""
        return tuple(self._list(pci, "infiniband"))

    def char_devices(self, pci: str) -> tuple[str, ...]:
        """`/dev/infiniband/uverbs3`, ..., then `rdma_cm`; empty without any verbs device."""
        nodes = [
            f"/dev/infiniband/{entry}"
            for sub, stem in _CHAR_DIRS
            for entry in self._list(pci, sub)
            if entry.startswith(stem) and entry[len(stem):].isdigit()
        ]
        return (*nodes, RDMA_CM) if nodes else ()


__all__ = ["RDMA_CM", "RdmaReader"]
