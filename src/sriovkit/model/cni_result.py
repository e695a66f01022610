"""CNI results in every spec version we speak, and the error/VERSION documents.

Pure: no OS access. One model (the 1.1.0 shape, the richest) holds a result; `to_version` renders
it for the `cniVersion` a runtime asked for and `parse_result` reads any supported version back
(an IPAM plugin's answer or a `prevResult`). What differs between versions:

- 0.3.0 / 0.3.1 / 0.4.0: every `ips` entry carries `version` ("4" or "6"); 1.0.0 dropped it.
- 1.1.0 added `mtu`, `socketPath` and `pciID` to interfaces and `mtu`, `advmss`, `priority`,
  `table` and `scope` to routes; older versions have no place for them, so they are left out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import msgspec

from sriovkit.errors import (
    CniError,
    DecodeFailure,
    IncompatibleVersion,
    InvalidInput,
    SriovkitError,
)

CNI_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""Spec versions this plugin accepts in a network config and can answer in, oldest first."""

CURRENT_VERSION = CNI_VERSIONS[-1]


def version_tuple(version: str) -> tuple[int, int, int]:
    """`"0.4.0"` -> `(0, 4, 0)`; only for versions in CNI_VERSIONS."""
    if version not in CNI_VERSIONS:
        raise IncompatibleVersion(
            f"incompatible CNI version {version!r}: supported are {', '.join(CNI_VERSIONS)}"
        )
    major, minor, patch = (int(p) for p in version.split("."))
    return major, minor, patch


def _check_ip(text: str, field: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(field, f"{text!r} is not an IP address") from None


class Interface(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    rename={"socket_path": "socketPath", "pci_id": "pciID"},
):
    """One interface of a result: the pod-side VF (with `sandbox`) or a host interface."""

    name: str
    mac: str | None = None
    mtu: int | None = None
    sandbox: str | None = None
    socket_path: str | None = None
    pci_id: str | None = None


class IpConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One address: CIDR `address`, optional `gateway`, `interface` index into `interfaces`."""

    address: str
    gateway: str | None = None
    interface: int | None = None

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_interface(self.address)
        except ValueError:
            raise InvalidInput("ips.address", f"{self.address!r} is not an IP/prefix") from None
        if "/" not in self.address:
            raise InvalidInput("ips.address", f"{self.address!r} has no prefix length")
        if self.gateway is not None:
            _check_ip(self.gateway, "ips.gateway")
        if self.interface is not None and self.interface < 0:
            raise InvalidInput("ips.interface", f"{self.interface} is not an index")

    @property
    def version(self) -> str:
        """`"4"` or `"6"`, the family field 0.3.x/0.4.0 results carry."""
        return str(ipaddress.ip_interface(self.address).version)


class Route(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One route; the fields after `gw` exist from spec 1.1.0 on."""

    dst: str
    gw: str | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_network(self.dst, strict=False)
        except ValueError:
            raise InvalidInput("routes.dst", f"{self.dst!r} is not an IP network") from None
        if self.gw is not None:
            _check_ip(self.gw, "routes.gw")


class Dns(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """DNS settings, as IPAM plugins return them and network configs may carry them."""

    nameservers: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for server in self.nameservers:
            _check_ip(server, "dns.nameservers")

    @property
    def empty(self) -> bool:
        """True when no field is set (then results leave `dns` out)."""
        return not (self.nameservers or self.domain or self.search or self.options)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (only the fields that are set)."""
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class CniResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A CNI result, version-independent (the 1.1.0 shape); render with `to_version`."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IpConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Dns | None = None


_ROUTE_1_1 = ("mtu", "advmss", "priority", "table", "scope")


def to_version(result: CniResult, version: str) -> dict[str, Any]:
    """`result` as the JSON object the spec `version` defines (ready for `json.dumps`)."""
    v = version_tuple(version)
    rich = v >= (1, 1, 0)
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        ifaces = []
        for iface in result.interfaces:
            d: dict[str, Any] = {"name": iface.name}
            if iface.mac is not None:
                d["mac"] = iface.mac
            if rich and iface.mtu is not None:
                d["mtu"] = iface.mtu
            if iface.sandbox is not None:
                d["sandbox"] = iface.sandbox
            if rich and iface.socket_path is not None:
                d["socketPath"] = iface.socket_path
            if rich and iface.pci_id is not None:
                d["pciID"] = iface.pci_id
            ifaces.append(d)
        out["interfaces"] = ifaces
    if result.ips:
        ips = []
        for ip in result.ips:
            d = {"version": ip.version} if v < (1, 0, 0) else {}
            d["address"] = ip.address
            if ip.gateway is not None:
                d["gateway"] = ip.gateway
            if ip.interface is not None:
                d["interface"] = ip.interface
            ips.append(d)
        out["ips"] = ips
    if result.routes:
        routes = []
        for route in result.routes:
            d = {"dst": route.dst}
            if route.gw is not None:
                d["gw"] = route.gw
            if rich:
                d.update(
                    (k, getattr(route, k)) for k in _ROUTE_1_1 if getattr(route, k) is not None
                )
            routes.append(d)
        out["routes"] = routes
    if result.dns is not None and not result.dns.empty:
        out["dns"] = result.dns.as_dict()
    return out


def _field_of(exc: msgspec.ValidationError, what: str) -> InvalidInput:
    text = str(exc)
    reason, _, path = text.partition(" - at `$")
    field = what + path.rstrip("`") if path else what
    return InvalidInput(field, reason)


def parse_result(data: Mapping[str, Any] | bytes, what: str = "result") -> CniResult:
    """Read a result of any supported version (an IPAM answer or a `prevResult`).

    `what` names the document in errors (e.g. `prevResult`). Unknown fields are ignored, as the
    spec asks; a 0.x `ips[].version` that contradicts the address is refused.
    """
    if isinstance(data, bytes):
        try:
            obj: Any = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidInput(what, f"not JSON: {exc}") from None
    else:
        obj = data
    if not isinstance(obj, Mapping):
        raise InvalidInput(what, f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("cniVersion")
    if not isinstance(version, str) or version not in CNI_VERSIONS:
        raise InvalidInput(
            f"{what}.cniVersion", f"{version!r} is not one of {', '.join(CNI_VERSIONS)}"
        )
    try:
        result = msgspec.convert(obj, CniResult)
    except msgspec.ValidationError as exc:
        raise _field_of(exc, what) from None
    if version_tuple(version) < (1, 0, 0):
        for i, (raw, ip) in enumerate(zip(obj.get("ips") or (), result.ips, strict=True)):
            family = raw.get("version")
            if family is not None and family != ip.version:
                raise InvalidInput(
                    f"{what}.ips[{i}].version",
                    f"{family!r} does not match address {ip.address}",
                )
    return result


def error_dict(
    code: int, msg: str, details: str = "", version: str = CURRENT_VERSION
) -> dict[str, Any]:
    """The spec's error object: `{"cniVersion", "code", "msg", "details"}`."""
    out: dict[str, Any] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        out["details"] = details
    return out


def error_from(exc: BaseException, version: str | None = None) -> dict[str, Any]:
    """The error object for `exc`: our errors keep their code; anything else is internal (999).

    An unsupported `version` falls back to the newest, so an error can always be written.
    """
    ver = version if version is not None and version in CNI_VERSIONS else CURRENT_VERSION
    if isinstance(exc, SriovkitError):
        return error_dict(exc.cni_code, exc.message, version=ver)
    return error_dict(999, "internal error", f"{type(exc).__name__}: {exc}", version=ver)


def version_dict(version: str | None = None) -> dict[str, Any]:
    """The VERSION answer: `{"cniVersion", "supportedVersions"}`."""
    ver = version if version is not None and version in CNI_VERSIONS else CURRENT_VERSION
    return {"cniVersion": ver, "supportedVersions": list(CNI_VERSIONS)}


__all__ = [
    "CNI_VERSIONS",
    "CURRENT_VERSION",
    "CniError",
    "CniResult",
    "DecodeFailure",
    "Dns",
    "IncompatibleVersion",
    "Interface",
    "IpConfig",
    "Route",
    "error_dict",
    "error_from",
    "parse_result",
    "to_version",
    "version_dict",
    "version_tuple",
]
