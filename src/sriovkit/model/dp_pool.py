"""A device plugin pool: the devices one resource advertises, and those it leaves out (pure).

Every device a pool's selectors pick but the pool does not offer is listed with its reason, so
`sriovkit dp pools` answers "why is my VF not in the pool" without reading logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sriovkit.model.dp_config import DeviceType
from sriovkit.model.pci import PciAddress


class Exclusion(StrEnum):
    """Why a selected device is not offered."""

    NO_DRIVER = "no-driver"
    """Unbound: nothing in a pod could use it (upstream drops it too, with a log line)."""
    PF_WITH_VFS = "pf-with-vfs"
    """A PF with VFs enabled: its VFs are offered, never the PF itself (as upstream)."""
    DEFAULT_ROUTE = "default-route"
    """Carries the host's default route: taking it away cuts the node off (as upstream)."""
    BOND_PORT = "bond-port"
    """A port of a host bond: handing it to a pod breaks the bond."""
    IN_OTHER_POOL = "in-other-pool"
    """An earlier resource in config order already took it: a device joins one pool only."""


@dataclass(frozen=True, slots=True)
class Excluded:
    """A device the pool's selectors pick, and why it is left out."""

    pci: PciAddress
    why: Exclusion
    detail: str
    """The sentence shown to the user, naming the netdev, bond, route or pool involved."""

    @property
    def reason(self) -> str:
        """Same as `detail` (the name the JSON document uses)."""
        return self.detail


@dataclass(frozen=True, slots=True)
class PoolDevice:
    """One device as a pool offers it."""

    pci: PciAddress
    pf_pci: PciAddress | None
    pf_name: str | None
    vf_index: int | None
    vendor: str
    """4-digit lower-case hex, as selectors spell it."""
    device: str
    driver: str
    netdev: str | None
    numa: int | None
    """None when the pool has excludeTopology or the kernel reports no node (-1)."""
    iommu_group: int | None
    link_type: str | None
    """None when unreadable, or not read (`ops.dp_pools.pools(details=False)`)."""
    rdma: bool | None
    """The function has RDMA devices (an `infiniband/` directory); None: not read."""
    vhost_net: bool = False
    """The selector that picked it asks for /dev/vhost-net and /dev/net/tun."""
    selector: int = 0
    """Index of the selector object that picked it."""

    def to_json(self) -> dict[str, Any]:
        """Stable keys for `sriovkit dp pools --json`."""
        return {
            "pci": str(self.pci),
            "pf_pci": None if self.pf_pci is None else str(self.pf_pci),
            "pf_name": self.pf_name,
            "vf_index": self.vf_index,
            "vendor": self.vendor,
            "device": self.device,
            "driver": self.driver,
            "netdev": self.netdev,
            "numa": self.numa,
            "iommu_group": self.iommu_group,
            "link_type": self.link_type,
            "rdma": self.rdma,
            "vhost_net": self.vhost_net,
            "selector": self.selector,
        }


@dataclass(frozen=True, slots=True)
class Pool:
    """What one `resourceList` entry advertises on this host."""

    resource_name: str
    prefix: str
    device_type: DeviceType
    devices: tuple[PoolDevice, ...]
    excluded: tuple[Excluded, ...] = ()
    notes: tuple[str, ...] = ()
    """What sriovkit could not evaluate (a selector on facts it does not read yet)."""

    @property
    def full_name(self) -> str:
        """`prefix/name`, the extended resource kubelet sees."""
        return f"{self.prefix}/{self.resource_name}"

    def to_json(self) -> dict[str, Any]:
        """Stable keys for `sriovkit dp pools --json`."""
        return {
            "resource": self.full_name,
            "resource_name": self.resource_name,
            "prefix": self.prefix,
            "device_type": self.device_type.value,
            "devices": [d.to_json() for d in self.devices],
            "excluded": [
                {"pci": str(e.pci), "why": e.why.value, "reason": e.detail} for e in self.excluded
            ],
            "notes": list(self.notes),
        }


__all__ = ["Excluded", "Exclusion", "Pool", "PoolDevice"]
