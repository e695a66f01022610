"""What the device plugin advertises: the pools of `ops/dp_pools.py` as resource feeds.

The agent builds its feeds once at start, from the config file and the host's inventory, before
the plugin service starts: so the first ListAndWatch answer after an agent restart already has
the right capacity. Re-discovery (VF count, driver and netdev changes, config changes) and
health from link events are not here yet: a device is advertised Healthy.
"""

from __future__ import annotations

from pathlib import Path

from sriovkit.deviceplugin.model import Device, ResourceFeed
from sriovkit.errors import HostError, NotFound
from sriovkit.host.netfacts import NetFacts
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.dp_config import DEFAULT_PREFIX, DpConfig, parse_config
from sriovkit.model.dp_pool import Pool
from sriovkit.ops import discover
from sriovkit.ops.dp_pools import pools as find_pools

DEFAULT_CONFIG = Path("etc/pcidp/config.json")
"""sriov-network-device-plugin's default config file, under the host root."""


def feeds_from_pools(pools: list[Pool], config: DpConfig) -> list[ResourceFeed]:
    """One feed per pool; each device with its NUMA node, PF, driver, IOMMU group, whether its
    selector asked for needVhostNet, and the entry's additionalInfo (the device's own entry,
    else `*`)."""
    infos = {r.full_name: r.additional_info or {} for r in config.resources}
    feeds = []
    for pool in pools:
        info = infos.get(pool.full_name, {})
        devices = [
            Device(
                id=str(d.pci),
                numa=d.numa,
                pf=d.pf_name,
                driver=d.driver,
                iommu_group=None if d.iommu_group is None else str(d.iommu_group),
                extra=dict(info.get(str(d.pci)) or info.get("*") or {}),
                vhost_net=d.vhost_net,
            )
            for d in pool.devices
        ]
        feeds.append(ResourceFeed(pool.full_name, devices))
    return feeds


def load_feeds(root: Path, config_path: Path, prefix: str = DEFAULT_PREFIX) -> list[ResourceFeed]:
    """Read the config, discover the host at `root`, and return the feeds to serve."""
    try:
        text = config_path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"device plugin config {config_path} not found") from None
    except OSError as exc:
        raise HostError(f"cannot read device plugin config {config_path}: {exc.strerror}") from exc
    config = parse_config(text, default_prefix=prefix)
    facts = NetFacts(root)
    inventory = discover.collect(Sysfs(root), PciIds())
    pools = find_pools(
        inventory,
        config,
        facts=facts,
        bond_ports=facts.bond_ports(),
        default_route=facts.default_route_links(),
    )
    return feeds_from_pools(pools, config)


__all__ = ["DEFAULT_CONFIG", "feeds_from_pools", "load_feeds"]
