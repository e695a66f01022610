"""The CNI plugin `sriov`'s input: the CNI_* environment and the network config on stdin.

Pure: no OS access. Everything is validated here, before the host is touched, and every failure
carries the CNI spec's code: 1 incompatible version, 4 bad environment, 6 undecodable config,
7 invalid config (InvalidInput). Results and error/VERSION documents are in `cni_result`.

MAC precedence follows sriov-cni (and the reference plugins): the config's `mac` is the default,
`CNI_ARGS` `MAC=` overrides it, and `runtimeConfig.mac` (the runtime's `mac` capability) overrides
both. The VF comes from `runtimeConfig.deviceID` (the CNI `deviceID` capability), else the
config's `deviceID` (which Multus fills from the device plugin), else the device plugin's
device-info file named by `runtimeConfig.CNIDeviceInfoFile` (read by the caller, parsed here),
else, without Multus, one of the devices of the config's `resourceName` (`prefix/name`, the
extended resource the pod requested) that kubelet's PodResources API says the pod in CNI_ARGS
(K8S_POD_NAMESPACE, K8S_POD_NAME) holds (chosen by ops/cni/vf/podres.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from sriovkit.errors import InvalidInput
from sriovkit.model.attachment import AttachmentKey, check_container_id, check_ifname
from sriovkit.model.cni_env import BadEnv, CniCommand, CniEnv, parse_cni_args
from sriovkit.model.cni_result import (
    CNI_VERSIONS,
    CURRENT_VERSION,
    CniResult,
    DecodeFailure,
    Dns,
    IncompatibleVersion,
    parse_result,
    version_tuple,
)
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import ZERO_MAC, LinkState, VfSettings, VlanProto, normalize_mac

# --- network config -------------------------------------------------------------------------

# Verbs and the first spec version that has them (a config of an older version cannot ask).
_SINCE = {CniCommand.CHECK: (0, 4, 0), CniCommand.STATUS: (1, 1, 0), CniCommand.GC: (1, 1, 0)}
_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_LOG_LEVELS = frozenset({"panic", "error", "warning", "info", "debug"})
# kubelet's extended resource names: a DNS subdomain prefix, then a qualified name's tail.
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_RESOURCE_NAME = re.compile(
    rf"(?=[^/]{{1,253}}/){_DNS_LABEL}(\.{_DNS_LABEL})*/[A-Za-z0-9]([A-Za-z0-9_.-]{{0,61}}[A-Za-z0-9])?"
)
POD_ARGS = ("K8S_POD_NAMESPACE", "K8S_POD_NAME")
"""The CNI_ARGS keys naming the pod whose devices a `resourceName` config looks up."""
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,254}")
MIN_MTU, MAX_MTU = 68, 65535  # ETH_MIN_MTU (IPv4 needs 68); above 64 KiB no netdev goes


class _VersionOnly(msgspec.Struct):
    cniVersion: Any = None


class _RuntimeConfig(
    msgspec.Struct, kw_only=True, rename={"device_info_file": "CNIDeviceInfoFile"}
):
    mac: str | None = None
    deviceID: str | None = None
    device_info_file: str | None = None


class _ValidAttachment(msgspec.Struct, kw_only=True):
    containerID: str
    ifname: str


class _RawConf(
    msgspec.Struct,
    kw_only=True,
    rename={
        "cni_version": "cniVersion",
        "device_id": "deviceID",
        "resource_name": "resourceName",
        "vlan_qos": "vlanQoS",
        "vlan_proto": "vlanProto",
        "log_level": "logLevel",
        "log_file": "logFile",
        "runtime_config": "runtimeConfig",
        "prev_result": "prevResult",
        "valid_attachments": "cni.dev/valid-attachments",
    },
):
    cni_version: str
    name: str
    type: str
    device_id: str | None = None
    resource_name: str | None = None
    vlan: int | None = None
    vlan_qos: int | None = None
    vlan_proto: str | None = None
    mac: str | None = None
    spoofchk: str | bool | None = None
    trust: str | bool | None = None
    link_state: str | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mtu: int | None = None
    ipam: dict[str, Any] | None = None
    dns: Dns | None = None
    log_level: str | None = None
    log_file: str | None = None
    runtime_config: _RuntimeConfig | None = None
    prev_result: dict[str, Any] | None = None
    valid_attachments: list[_ValidAttachment] | None = None


@dataclass(frozen=True, slots=True)
class NetConf:
    """A validated `sriov` network config (plus the CNI_ARGS MAC), ready for ops/.

    `settings` holds only what the config asks for (None = leave as is); `device_id` is None
    only when the VF must still be read from `device_info_file` (see `with_device_info`) or
    chosen among the pod's devices of `resource_name`.
    """

    cni_version: str
    name: str
    type: str
    device_id: PciAddress | None
    settings: VfSettings
    mtu: int | None = None
    ipam: Mapping[str, Any] | None = None
    dns: Dns | None = None
    device_info_file: str | None = None
    resource_name: str | None = None
    prev_result: CniResult | None = None
    valid_attachments: tuple[AttachmentKey, ...] | None = None
    log_level: str | None = None
    log_file: str | None = None

    @property
    def ipam_type(self) -> str | None:
        """The IPAM plugin to run, or None when the config has no IPAM."""
        return None if self.ipam is None else str(self.ipam["type"])

    def with_device_info(self, data: bytes) -> NetConf:
        """This config with `device_id` from the device plugin's device-info file contents."""
        return replace(self, device_id=parse_device_info(data, self.device_info_file or ""))


def _on_off(value: str | bool | None, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    word = value.strip().lower()
    if word not in {"on", "off"}:
        raise InvalidInput(name, f"{value!r} is not on or off")
    return word == "on"


def _mac(value: str, name: str) -> str:
    mac = normalize_mac(value, name)
    if mac == ZERO_MAC:
        raise InvalidInput(name, "00:00:00:00:00:00 is not a usable interface address")
    return mac


# VfSettings names fields the way `ip link` does; the config's names are these.
_SETTINGS_FIELD = {
    "qos": "vlanQoS",
    "proto": "vlanProto",
    "link-state": "link_state",
    "min-tx-rate": "min_tx_rate",
    "max-tx-rate": "max_tx_rate",
    "min-rate": "min_tx_rate",
}


def _settings(raw: _RawConf, env: CniEnv | None) -> VfSettings:
    mac = _mac(raw.mac, "mac") if raw.mac is not None else None
    if env is not None and "MAC" in env.args:
        mac = _mac(env.args["MAC"], "CNI_ARGS MAC")
    if raw.runtime_config is not None and raw.runtime_config.mac:
        mac = _mac(raw.runtime_config.mac, "runtimeConfig.mac")
    proto = None
    if raw.vlan_proto is not None:
        try:
            proto = VlanProto.parse(raw.vlan_proto)
        except InvalidInput as exc:
            raise InvalidInput("vlanProto", exc.reason) from None
    link_state = None
    if raw.link_state is not None:
        try:
            link_state = LinkState.parse(raw.link_state)
        except InvalidInput as exc:
            raise InvalidInput("link_state", exc.reason) from None
    vlan = raw.vlan
    if vlan is None and (raw.vlan_qos is not None or proto is not None):
        vlan = 0  # like sriov-cni: QoS/proto without a VLAN means VLAN 0, refused below
    try:
        return VfSettings(
            mac=mac,
            vlan=vlan,
            qos=raw.vlan_qos,
            proto=proto,
            spoofchk=_on_off(raw.spoofchk, "spoofchk"),
            trust=_on_off(raw.trust, "trust"),
            link_state=link_state,
            min_tx_rate=raw.min_tx_rate,
            max_tx_rate=raw.max_tx_rate,
        )
    except InvalidInput as exc:
        name = _SETTINGS_FIELD.get(exc.field, exc.field)
        raise InvalidInput(name, exc.reason) from None


def _decode(data: bytes) -> _RawConf:
    try:
        head = msgspec.json.decode(data, type=_VersionOnly)
    except msgspec.ValidationError as exc:
        raise DecodeFailure(f"failed to decode network config: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DecodeFailure(f"failed to decode network config: {exc}") from None
    except RecursionError:
        # Thousands of nested arrays exhaust the decoder's stack: malformed input, code 6.
        raise DecodeFailure("failed to decode network config: nested too deeply") from None
    version = head.cniVersion
    if version is None:
        raise IncompatibleVersion(
            "incompatible CNI version: the network config has no cniVersion "
            f"(supported: {', '.join(CNI_VERSIONS)})"
        )
    if not isinstance(version, str):
        raise InvalidInput("cniVersion", f"{version!r} is not a string")
    version_tuple(version)  # raises IncompatibleVersion (code 1)
    try:
        return msgspec.json.decode(data, type=_RawConf)
    except RecursionError:
        raise DecodeFailure("failed to decode network config: nested too deeply") from None
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at `$.")
        missing = _MISSING.fullmatch(reason)
        if missing and not path:
            raise InvalidInput(missing[1], "missing (required)") from None
        reason = reason.replace(" | null", "")  # every optional field is nullable; say the type
        raise InvalidInput(path.rstrip("`") or "network config", reason) from None


def parse_netconf(data: bytes, env: CniEnv | None = None) -> NetConf:
    """Decode and validate the network config `data` for the command in `env`.

    Raises DecodeFailure (6), IncompatibleVersion (1) or InvalidInput (7, naming the field).
    ADD and CHECK need a VF (deviceID, runtimeConfig.deviceID or a device-info file); CHECK
    needs a prevResult; GC needs `cni.dev/valid-attachments`.
    """
    raw = _decode(data)
    command = env.command if env is not None else None
    version = version_tuple(raw.cni_version)
    if command in _SINCE and version < _SINCE[command]:
        raise IncompatibleVersion(
            f"incompatible CNI version: {command} needs cniVersion >= "
            f"{'.'.join(map(str, _SINCE[command]))}, the config has {raw.cni_version}"
        )
    if not raw.name:
        raise InvalidInput("name", "must not be empty")
    if not raw.type:
        raise InvalidInput("type", "must not be empty")
    settings = _settings(raw, env)
    if raw.mtu is not None and not MIN_MTU <= raw.mtu <= MAX_MTU:
        raise InvalidInput("mtu", f"{raw.mtu} is out of range {MIN_MTU}-{MAX_MTU}")
    rc = raw.runtime_config or _RuntimeConfig()
    device_text, device_field = (
        (rc.deviceID, "runtimeConfig.deviceID") if rc.deviceID else (raw.device_id, "deviceID")
    )
    device = PciAddress.parse(device_text, device_field) if device_text else None
    if device is not None and PciAddress.try_parse(device_text or "") is None:
        # lspci's short BB:SS.F form names domain 0; sysfs and the device plugin never use it.
        raise InvalidInput(device_field, f"{device_text!r} needs a domain, like 0000:3b:02.1")
    resource = _resource_name(raw.resource_name)
    if command in {CniCommand.ADD, CniCommand.CHECK} and device is None and not rc.device_info_file:
        if resource is None:
            raise InvalidInput(
                "deviceID", f"missing: {command} needs the VF's PCI address (or a resourceName)"
            )
        if command is CniCommand.ADD and env is not None:
            pod_of(env, resource)
    if command is CniCommand.CHECK and raw.prev_result is None:
        raise InvalidInput("prevResult", "missing: CHECK needs the result of the ADD")
    if command is CniCommand.GC and raw.valid_attachments is None:
        raise InvalidInput("cni.dev/valid-attachments", "missing: GC needs the list to keep")
    ipam = _ipam(raw.ipam)
    if raw.log_level is not None and raw.log_level.lower() not in _LOG_LEVELS:
        raise InvalidInput(
            "logLevel", f"{raw.log_level!r} is not one of {', '.join(sorted(_LOG_LEVELS))}"
        )
    if raw.log_file is not None and (not raw.log_file.startswith("/") or "\0" in raw.log_file):
        raise InvalidInput("logFile", f"{raw.log_file!r} is not an absolute path")
    return NetConf(
        cni_version=raw.cni_version,
        name=raw.name,
        type=raw.type,
        device_id=device,
        settings=settings,
        mtu=raw.mtu,
        ipam=ipam,
        dns=raw.dns,
        device_info_file=rc.device_info_file or None,
        resource_name=resource,
        prev_result=(
            parse_result(raw.prev_result, "prevResult") if raw.prev_result is not None else None
        ),
        valid_attachments=_valid_attachments(raw.valid_attachments),
        log_level=raw.log_level.lower() if raw.log_level is not None else None,
        log_file=raw.log_file,
    )


def _resource_name(text: str | None) -> str | None:
    """`prefix/name` as kubelet advertises an extended resource (`intel.com/sriov_net`)."""
    if text is None:
        return None
    if not _RESOURCE_NAME.fullmatch(text):
        raise InvalidInput(
            "resourceName", f"{text!r} is not <prefix>/<name> like 'intel.com/sriov_net'"
        )
    return text


def pod_of(env: CniEnv, resource: str) -> tuple[str, str]:
    """(namespace, name) of the pod in CNI_ARGS, which every Kubernetes runtime passes: a
    resourceName ADD without them has no pod to ask kubelet about (BadEnv, code 4)."""
    missing = [k for k in POD_ARGS if not env.args.get(k)]
    if missing:
        raise BadEnv(
            "CNI_ARGS",
            f"{' and '.join(missing)} not set: needed to find the pod's device of {resource}",
        )
    return env.args[POD_ARGS[0]], env.args[POD_ARGS[1]]


def check_plugin_name(kind: object, field: str = "ipam.type") -> str:
    """A plugin `type`, which names an executable looked up in CNI_PATH: never a path."""
    if not isinstance(kind, str) or not kind:
        raise InvalidInput(field, "missing or not a string")
    if not _PLUGIN_NAME.fullmatch(kind) or ".." in kind:
        raise InvalidInput(field, f"{kind!r} is not a plain plugin name")
    return kind


def _ipam(ipam: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ipam:
        return None  # `"ipam": {}` means no IPAM, as in the reference plugins
    check_plugin_name(ipam.get("type"))
    return ipam


def _valid_attachments(
    items: list[_ValidAttachment] | None,
) -> tuple[AttachmentKey, ...] | None:
    if items is None:
        return None
    out = []
    for i, item in enumerate(items):
        where = f"cni.dev/valid-attachments[{i}]"
        out.append(
            AttachmentKey(
                check_container_id(item.containerID, f"{where}.containerID"),
                check_ifname(item.ifname, f"{where}.ifname"),
            )
        )
    return tuple(out)


class _DeviceInfoPci(msgspec.Struct, rename={"pci_address": "pci-address"}):
    pci_address: str


class _DeviceInfo(msgspec.Struct):
    type: str
    pci: _DeviceInfoPci | None = None


def parse_device_info(data: bytes, where: str = "") -> PciAddress:
    """The VF address in a device-info file (k8snetworkplumbingwg device-info spec, type pci)."""
    name = f"device info {where}".strip()
    try:
        info = msgspec.json.decode(data, type=_DeviceInfo)
    except msgspec.DecodeError as exc:
        raise InvalidInput(name, str(exc)) from None
    if info.type != "pci" or info.pci is None:
        raise InvalidInput(name, f"type {info.type!r} has no PCI address")
    return PciAddress.parse(info.pci.pci_address, f"{name} pci-address")


__all__ = [
    "CNI_VERSIONS",
    "CURRENT_VERSION",
    "MAX_MTU",
    "MIN_MTU",
    "POD_ARGS",
    "BadEnv",
    "CniCommand",
    "CniEnv",
    "DecodeFailure",
    "IncompatibleVersion",
    "NetConf",
    "parse_cni_args",
    "parse_device_info",
    "parse_netconf",
    "pod_of",
]
