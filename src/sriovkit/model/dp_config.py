"""sriov-network-device-plugin's `config.json`, parsed and validated (pure).

The file is accepted unchanged: the same keys, an object or a list for `selectors`, keys matched
the way Go's `encoding/json` matches them (exact spelling first, then case-insensitively: the
upstream docs themselves show `"IsRdma"`), unknown keys of an entry ignored (the docs show a
stray `"SelectorObj": null`). Where upstream silently accepts a mistake that then selects the
wrong devices (an unknown selector key, `"10CA"` that never matches, `"ens1f0#3-1"`, a selector
of another device type), this parser refuses it with an `InvalidInput` naming the entry and the
field: `invalid resourceList[1] (intel_sriov).selectors.pfNames: 'ens1f0#3-1' has an empty range`.
The YAML form (`dp_config_yaml`) is the same document, validated here the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sriovkit.errors import InvalidInput
from sriovkit.model.dp_config_yaml import ConfigForm, load_yaml
from sriovkit.model.dp_values import (
    FunctionRange,
    Where,
    boolean,
    canonical,
    function_ranges,
    hex_ids,
    kind_of,
    pci_list,
    str_list,
)
from sriovkit.model.pci import PciAddress

DEFAULT_PREFIX = "intel.com"
"""The prefix of a resource without `resourcePrefix`: upstream's `--resource-prefix` default."""


class DeviceType(StrEnum):
    """What kind of device a pool holds (upstream's `deviceType`)."""

    NET_DEVICE = "netDevice"
    ACCELERATOR = "accelerator"
    AUX_NET_DEVICE = "auxNetDevice"


# Selector keys each device type takes, as upstream's NetDeviceSelectors, AccelDeviceSelectors
# and AuxNetDeviceSelectors structs declare them.
_COMMON = ("vendors", "devices", "drivers")
_NET_GENERIC = ("pfNames", "rootDevices", "linkTypes", "isRdma", "acpiIndexes", "needVhostNet")
SELECTOR_KEYS: dict[DeviceType, tuple[str, ...]] = {
    DeviceType.NET_DEVICE: (
        *_COMMON, "pciAddresses", *_NET_GENERIC, "ddpProfiles", "vdpaType", "pKeys",
    ),
    DeviceType.ACCELERATOR: (*_COMMON, "pciAddresses", "acpiIndexes"),
    DeviceType.AUX_NET_DEVICE: (*_COMMON, *_NET_GENERIC, "auxTypes"),
}  # fmt: skip
_ALL_SELECTOR_KEYS = {k.lower(): k for keys in SELECTOR_KEYS.values() for k in keys}
_ENTRY_KEYS = {
    k.lower(): k
    for k in (
        "resourceName", "resourcePrefix", "deviceType", "excludeTopology", "selectors",
        "additionalInfo", "preferredAllocation",
    )
}  # fmt: skip
VDPA_TYPES = ("vhost", "virtio")

PreferredAllocation = Literal["spread", "pack", "none"]
"""sriovkit's own `preferredAllocation` entry key (upstream has no such key and ignores it):
how GetPreferredAllocation picks among equally good VFs. `spread` across PFs, because a bond of
VFs only survives a PF failure when its members sit on different PFs; `pack` fills one PF first,
keeping the others whole for later requests; `none` keeps kubelet's order (the default, what
upstream does)."""
PREFERRED_ALLOCATIONS: tuple[PreferredAllocation, ...] = ("spread", "pack", "none")

# Upstream's own check is ^[a-zA-Z0-9_-]+$; kubelet further wants a qualified name's tail
# (alphanumeric at both ends, at most 63 characters), or registration fails later, far from
# the config. Both are checked here.
_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_PREFIX_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")


@dataclass(frozen=True, slots=True)
class Selector:
    """One selector object: a device must match every field that is given (None = not given).

    An empty list means "not given", as upstream's filters skip empty lists.
    """

    vendors: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    drivers: tuple[str, ...] | None = None
    pci_addresses: tuple[PciAddress, ...] | None = None
    acpi_indexes: tuple[str, ...] | None = None
    pf_names: tuple[FunctionRange, ...] | None = None
    root_devices: tuple[FunctionRange, ...] | None = None
    link_types: tuple[str, ...] | None = None
    ddp_profiles: tuple[str, ...] | None = None
    pkeys: tuple[str, ...] | None = None
    aux_types: tuple[str, ...] | None = None
    vdpa_type: str | None = None
    is_rdma: bool = False
    need_vhost_net: bool = False

    @property
    def unreadable(self) -> tuple[str, ...]:
        """The given fields that need device facts sriovkit does not read yet."""
        out = []
        if self.ddp_profiles:
            out.append("ddpProfiles")
        if self.pkeys:
            out.append("pKeys")
        if self.vdpa_type:
            out.append("vdpaType")
        if self.aux_types:
            out.append("auxTypes")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    """One `resourceList` entry."""

    resource_name: str
    prefix: str
    device_type: DeviceType
    selectors: tuple[Selector, ...]
    exclude_topology: bool = False
    additional_info: Mapping[str, Mapping[str, str]] | None = None
    preferred_allocation: PreferredAllocation = "none"
    """sriovkit's extension key `preferredAllocation` (see `PreferredAllocation`)."""

    @property
    def full_name(self) -> str:
        """The extended resource name kubelet advertises: `prefix/name`."""
        return f"{self.prefix}/{self.resource_name}"


@dataclass(frozen=True, slots=True)
class DpConfig:
    """The whole file: resources in config order (the first that selects a device gets it)."""

    resources: tuple[ResourceConfig, ...]


def _selector(where: Where, field: str, obj: Any, dtype: DeviceType) -> Selector:
    if not isinstance(obj, dict):
        raise where.error(field, f"expected a selector object, got {kind_of(obj)}")
    raw, unknown = canonical(obj, _ALL_SELECTOR_KEYS)
    if unknown:
        known = ", ".join(SELECTOR_KEYS[dtype])
        raise where.error(f"{field}.{unknown[0]}", f"unknown selector (known: {known})")
    allowed = SELECTOR_KEYS[dtype]
    for key in raw:
        if key not in allowed:
            raise where.error(f"{field}.{key}", f"does not apply to deviceType {dtype}")
    f = f"{field}."
    vdpa = raw.get("vdpaType")
    if vdpa is not None and vdpa not in VDPA_TYPES:
        raise where.error(f + "vdpaType", f"{vdpa!r} is not one of {', '.join(VDPA_TYPES)}")
    sel = Selector(
        vendors=hex_ids(where, f + "vendors", raw.get("vendors")),
        devices=hex_ids(where, f + "devices", raw.get("devices")),
        drivers=str_list(where, f + "drivers", raw.get("drivers")),
        pci_addresses=pci_list(where, f + "pciAddresses", raw.get("pciAddresses")),
        acpi_indexes=str_list(where, f + "acpiIndexes", raw.get("acpiIndexes")),
        pf_names=function_ranges(where, f + "pfNames", raw.get("pfNames"), pci=False),
        root_devices=function_ranges(where, f + "rootDevices", raw.get("rootDevices"), pci=True),
        link_types=str_list(where, f + "linkTypes", raw.get("linkTypes")),
        ddp_profiles=str_list(where, f + "ddpProfiles", raw.get("ddpProfiles")),
        pkeys=str_list(where, f + "pKeys", raw.get("pKeys")),
        aux_types=str_list(where, f + "auxTypes", raw.get("auxTypes")),
        vdpa_type=vdpa or None,
        is_rdma=boolean(where, f + "isRdma", raw.get("isRdma")),
        need_vhost_net=boolean(where, f + "needVhostNet", raw.get("needVhostNet")),
    )
    if sel.is_rdma and sel.vdpa_type:  # upstream's ValidConfig refuses the pair too
        raise where.error(f + "isRdma", "isRdma and vdpaType exclude each other")
    return sel


def _selectors(where: Where, value: Any, dtype: DeviceType) -> tuple[Selector, ...]:
    # Upstream dereferences a missing `selectors` and crashes; an empty list it refuses.
    if value is None:
        raise where.error("selectors", "required: an object or a list of objects")
    if isinstance(value, dict):
        return (_selector(where, "selectors", value, dtype),)
    if not isinstance(value, list):
        raise where.error("selectors", f"expected an object or a list, got {kind_of(value)}")
    if not value:
        raise where.error("selectors", "the list is empty: give at least one selector object")
    return tuple(_selector(where, f"selectors[{i}]", s, dtype) for i, s in enumerate(value))


def _additional_info(where: Where, value: Any) -> dict[str, dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise where.error("additionalInfo", f"expected an object, got {kind_of(value)}")
    out: dict[str, dict[str, str]] = {}
    for key, info in value.items():
        field = f"additionalInfo.{key}"
        if key != "*" and PciAddress.try_parse(key) is None:
            raise where.error(field, "keys are '*' or a PCI address")
        if not isinstance(info, dict):
            raise where.error(field, f"expected an object of strings, got {kind_of(info)}")
        for k, v in info.items():
            if not isinstance(v, str):
                raise where.error(f"{field}.{k}", f"expected a string, got {v!r}")
        out[key] = dict(info)
    return out


def _preferred(where: Where, value: Any) -> PreferredAllocation:
    """The `preferredAllocation` key: absent or null is upstream's behaviour, `none`."""
    if value is None:
        return "none"
    for policy in PREFERRED_ALLOCATIONS:
        if value == policy:
            return policy
    known = ", ".join(PREFERRED_ALLOCATIONS)
    raise where.error("preferredAllocation", f"{value!r} is not one of {known}")


def _resource(index: int, obj: Any, default_prefix: str) -> ResourceConfig:
    if not isinstance(obj, dict):
        raise Where(index, None).error("", f"expected an object, got {kind_of(obj)}")
    raw, _ignored = canonical(obj, _ENTRY_KEYS)  # unknown entry keys: ignored, as upstream
    name = raw.get("resourceName")
    where = Where(index, name if isinstance(name, str) and name else None)
    if not isinstance(name, str) or not name:
        raise where.error("resourceName", "required: a non-empty string")
    if not _NAME_RE.fullmatch(name):
        raise where.error(
            "resourceName",
            f"{name!r} must be letters, digits, '_' or '-', start and end with a letter or "
            "digit, at most 63 characters",
        )
    prefix = raw.get("resourcePrefix") or default_prefix
    if not isinstance(prefix, str) or len(prefix) > 253 or not _PREFIX_RE.fullmatch(prefix):
        raise where.error("resourcePrefix", f"{prefix!r} is not a DNS name like 'example.com'")
    dtype_raw = raw.get("deviceType") or DeviceType.NET_DEVICE.value
    try:
        dtype = DeviceType(dtype_raw)
    except ValueError:
        known = ", ".join(t.value for t in DeviceType)
        raise where.error("deviceType", f"{dtype_raw!r} is not one of {known}") from None
    return ResourceConfig(
        resource_name=name,
        prefix=prefix,
        device_type=dtype,
        selectors=_selectors(where, raw.get("selectors"), dtype),
        exclude_topology=boolean(where, "excludeTopology", raw.get("excludeTopology")),
        additional_info=_additional_info(where, raw.get("additionalInfo")),
        preferred_allocation=_preferred(where, raw.get("preferredAllocation")),
    )


def config_from_obj(doc: Any, *, default_prefix: str = DEFAULT_PREFIX) -> DpConfig:
    """Validate an already decoded document (`{"resourceList": [...]}`)."""
    if not isinstance(doc, dict):
        raise InvalidInput("config", f"expected an object with resourceList, got {kind_of(doc)}")
    raw, _ignored = canonical(doc, {"resourcelist": "resourceList"})
    entries = raw.get("resourceList")
    if entries is None:  # Go leaves the list empty: no pools
        entries = []
    if not isinstance(entries, list):
        raise InvalidInput("resourceList", f"expected a list, got {kind_of(entries)}")
    resources = tuple(_resource(i, e, default_prefix) for i, e in enumerate(entries))
    seen: dict[str, int] = {}
    for i, res in enumerate(resources):
        # Unique per prefix, as upstream: acme.com/10G and example.com/10G may both exist.
        if res.full_name in seen:
            raise Where(i, res.resource_name).error(
                "resourceName",
                f"{res.full_name} is already defined by resourceList[{seen[res.full_name]}]",
            )
        seen[res.full_name] = i
    return DpConfig(resources)


def parse_config(
    text: str | bytes, *, default_prefix: str = DEFAULT_PREFIX, form: ConfigForm = "json"
) -> DpConfig:
    """Parse and validate a config file's text: `config.json`, or with `form="yaml"` the same
    document in YAML (`dp_config_yaml`: PyYAML is imported only then)."""
    try:
        doc = load_yaml(text) if form == "yaml" else json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput("config", f"not valid JSON: {exc}") from None
    except RecursionError:  # both decoders recurse per level: "[[[[..." must not crash the agent
        raise InvalidInput("config", "nested too deeply") from None
    return config_from_obj(doc, default_prefix=default_prefix)


__all__ = [
    "DEFAULT_PREFIX",
    "PREFERRED_ALLOCATIONS",
    "SELECTOR_KEYS",
    "VDPA_TYPES",
    "DeviceType",
    "DpConfig",
    "FunctionRange",
    "PreferredAllocation",
    "ResourceConfig",
    "Selector",
    "config_from_obj",
    "parse_config",
]
