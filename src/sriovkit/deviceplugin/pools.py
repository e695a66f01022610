"""What the device plugin advertises: the pools of `ops/dp_pools.py` as resource feeds.

The agent builds its feeds once at start, from the config file and the host's inventory, before
the plugin service starts: so the first ListAndWatch answer after an agent restart already has
the right capacity. Re-discovery and health (`discovery.Discovery`) re-run `host_pools` when
the host or the config changes.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from sriovkit.deviceplugin.model import Device, Policy, ResourceFeed
from sriovkit.errors import HostError, NotFound
from sriovkit.host.netfacts import NetFacts
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.dp_config import DEFAULT_PREFIX, DpConfig, parse_config
from sriovkit.model.dp_config_yaml import config_form
from sriovkit.model.dp_pool import Pool
from sriovkit.model.pci import PciAddress
from sriovkit.ops import discover
from sriovkit.ops.discover import Inventory
from sriovkit.ops.dp_pools import pools as find_pools

DEFAULT_CONFIG = Path("etc/pcidp/config.json")
"""sriov-network-device-plugin's default config file, under the host root."""


def pool_devices(pool: Pool, config: DpConfig) -> list[Device]:
    """The devices of `pool` as advertised: each with its NUMA node, PF, driver, IOMMU group,
    whether its selector asked for needVhostNet, and the entry's additionalInfo (the device's
    own entry, else `*`)."""
    infos = {r.full_name: r.additional_info or {} for r in config.resources}
    info = infos.get(pool.full_name, {})
    return [
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


def pool_policy(name: str, config: DpConfig) -> Policy:
    """The GetPreferredAllocation policy of resource `name` (`prefix/name`): its entry's
    `preferredAllocation`, `none` for a resource the config no longer has."""
    for res in config.resources:
        if res.full_name == name:
            return res.preferred_allocation
    return "none"


def feeds_from_pools(pools: list[Pool], config: DpConfig) -> list[ResourceFeed]:
    """One feed per pool (see `pool_devices`), with its entry's preferred-allocation policy."""
    return [
        ResourceFeed(
            pool.full_name, pool_devices(pool, config), policy=pool_policy(pool.full_name, config)
        )
        for pool in pools
    ]


def read_config(
    config_path: Path, prefix: str = DEFAULT_PREFIX, *, option: str = "--dp-config"
) -> DpConfig:
    """The parsed config file, or NotFound / HostError / the parser's error naming the entry.

    JSON or YAML by the file's name, else by its content (`dp_config_yaml.config_form`).

    `option` is the command-line option that names another file (said when there is none)."""
    try:
        text = config_path.read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"device plugin config {config_path} not found (give one with {option})"
        ) from None
    except OSError as exc:
        raise HostError(f"cannot read device plugin config {config_path}: {exc.strerror}") from exc
    form = config_form(config_path.name, text)
    return parse_config(text, default_prefix=prefix, form=form)


def host_pools(
    root: Path,
    config: DpConfig,
    only: Collection[PciAddress] | None = None,
    *,
    details: bool = True,
) -> tuple[Inventory, list[Pool]]:
    """Discover the host at `root` and evaluate the pools of `config` on it; with `only`, on
    those functions and the VFs of the PFs among them (every pool rule is decided per function,
    from it, its PF and host-wide facts: see `deviceplugin/members.py`). `details`: see
    `ops.dp_pools.pools` (the agent advertises no link type or RDMA flag)."""
    facts = NetFacts(root)
    inventory = discover.collect(Sysfs(root), PciIds(), only)
    found = find_pools(
        inventory,
        config,
        facts=facts,
        bond_ports=facts.bond_ports(),
        default_route=facts.default_route_links(),
        details=details,
    )
    return inventory, found


def load_feeds(root: Path, config_path: Path, prefix: str = DEFAULT_PREFIX) -> list[ResourceFeed]:
    """Read the config, discover the host at `root`, and return the feeds to serve."""
    config = read_config(config_path, prefix)
    return feeds_from_pools(host_pools(root, config)[1], config)


__all__ = [
    "DEFAULT_CONFIG", "feeds_from_pools", "host_pools", "load_feeds", "pool_devices",
    "pool_policy", "read_config",
]  # fmt: skip
