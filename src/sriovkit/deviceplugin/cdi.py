"""CDI (Container Device Interface) specs for the pools, and CDI names for Allocate.

With CDI the container runtime, not kubelet, creates the container's device nodes: the device
plugin writes a spec file describing each device, and Allocate only names the devices. A spec
file per resource, `<dir>/sriovkit-<prefix>-net-pci-<name>.json` (dir `/var/run/cdi`), in the
shape sriov-network-device-plugin uses (kind `<prefix>/net-pci`, one device per VF named by its
PCI address, so the fully qualified name is `intel.com/net-pci=0000:03:02.0`):

    {"cdiVersion":"0.5.0","kind":"intel.com/net-pci","devices":[
      {"name":"0000:03:02.0","containerEdits":{
        "env":["PCIDEVICE_INTEL_COM_SRIOV_A_0000_03_02_0=0000:03:02.0"],
        "deviceNodes":[{"path":"/dev/vfio/vfio","hostPath":"/dev/vfio/vfio","permissions":"rw"}]}}]}

- cdiVersion 0.5.0: the oldest version with what we use (device names starting with a digit,
  `hostPath`), so older runtimes accept the file too (a runtime refuses a version it does not
  know).
- The env entry, one per device and named after it, exists because CDI refuses a device with
  empty edits and the whole file with it: a plain netdevice VF has no device node. The
  `PCIDEVICE_*` list and `_INFO` still come from Allocate's envs (they cover every device of the
  container, which one device's edits cannot).
- Device nodes: `allocate.device_specs` (vfio, vhost, RDMA), the same as without CDI.

Several pools of one prefix share the kind (a VF is in at most one pool, so names never clash).
The annotation for runtimes and kubelets older than `cdi_devices` is
`cdi.k8s.io/<prefix>_net-pci_<name>`: the CDI library's `AnnotationKey` form, with the resource
name in it where sriov-network-device-plugin has only the prefix, so two pools of one prefix in
one container do not overwrite each other's annotation; its value is the qualified names,
comma-separated.

Kept current: `write()` after every feed update (the service subscribes it) and before any
Allocate answer whose resource changed since the last write, so a failed write is retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sriovkit.deviceplugin.allocate import (
    NO_RDMA,
    AllocationError,
    CdiNames,
    Rdma,
    device_specs,
    env_name,
)
from sriovkit.deviceplugin.model import Resource
from sriovkit.host.atomicfile import write_file

log = logging.getLogger("sriovkit.agent")

DEFAULT_CDI_DIR = Path("/var/run/cdi")
CDI_VERSION = "0.5.0"
CLASS = "net-pci"
ANNOTATION_PREFIX = "cdi.k8s.io/"
_FILE_PREFIX = "sriovkit-"
_ANNOTATION_NAME_MAX = 63


def kind(resource_name: str) -> str:
    """`intel.com/sriov_a` -> `intel.com/net-pci`."""
    return resource_name.split("/", 1)[0] + "/" + CLASS


def file_name(resource_name: str) -> str:
    """`intel.com/sriov_a` -> `sriovkit-intel.com-net-pci-sriov_a.json`."""
    prefix, name = resource_name.split("/", 1)
    return f"{_FILE_PREFIX}{prefix}-{CLASS}-{name}.json"


def qualified(resource_name: str, ids: Iterable[str]) -> tuple[str, ...]:
    """`intel.com/net-pci=<id>` per id."""
    k = kind(resource_name)
    return tuple(f"{k}={i}" for i in ids)


def annotation_key(resource_name: str) -> str:
    """`cdi.k8s.io/intel.com_net-pci_sriov_a`; a hashed name when that is over CDI's 63."""
    prefix, name = resource_name.split("/", 1)
    short = f"{prefix}_{CLASS}_{name}"
    if len(short) > _ANNOTATION_NAME_MAX:
        short = "sriovkit_" + hashlib.sha256(resource_name.encode()).hexdigest()[:16]
    return ANNOTATION_PREFIX + short


def annotations_for(resource_name: str, ids: Sequence[str]) -> dict[str, str]:
    return {annotation_key(resource_name): ",".join(qualified(resource_name, ids))} if ids else {}


def device_env(resource_name: str, device_id: str) -> str:
    """`PCIDEVICE_INTEL_COM_SRIOV_A_0000_03_02_0=0000:03:02.0`: one device's CDI env entry."""
    suffix = re.sub(r"[^A-Za-z0-9]", "_", device_id).upper()
    return f"{env_name(resource_name)}_{suffix}={device_id}"


def spec(resource: Resource, rdma: Rdma = NO_RDMA) -> dict[str, Any]:
    """The CDI spec of one resource, every device (unhealthy ones too: kubelet does not hand
    those out, and a device flapping must not rewrite the file twice)."""
    devices = []
    for d in resource.devices:
        nodes = [
            {"path": s.path, "hostPath": s.path, "permissions": s.permissions}
            for s in device_specs(d, rdma.nodes(d.id))
        ]
        edits: dict[str, Any] = {"env": [device_env(resource.name, d.id)]}
        if nodes:
            edits["deviceNodes"] = nodes
        devices.append({"name": d.id, "containerEdits": edits})
    return {"cdiVersion": CDI_VERSION, "kind": kind(resource.name), "devices": devices}


class CdiSpecs:
    """The spec files of the served resources in `directory`, and the CDI part of Allocate."""

    def __init__(self, directory: Path = DEFAULT_CDI_DIR, *, rdma: Rdma = NO_RDMA) -> None:
        self.directory = directory
        self.rdma = rdma
        self._lock = threading.Lock()
        self._written: dict[str, bytes] = {}

    def path(self, resource_name: str) -> Path:
        return self.directory / file_name(resource_name)

    def write(self, resource: Resource) -> bool:
        """Write the resource's spec file when its contents changed; True if it is current.
        Errors are logged, not raised: this runs on the feed's update path."""
        data = json.dumps(spec(resource, self.rdma), separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._written.get(resource.name) == data:
                return True
            try:
                write_file(self.path(resource.name), data, mode=0o644, parents=True)
            except OSError as exc:
                log.warning("device plugin: %s: cannot write CDI spec %s: %s", resource.name,
                            self.path(resource.name), exc)
                self._written.pop(resource.name, None)
                return False
            self._written[resource.name] = data
        return True

    def remove(self, resource_name: str) -> None:
        with self._lock:
            self._written.pop(resource_name, None)
            with contextlib.suppress(FileNotFoundError):
                self.path(resource_name).unlink()

    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Remove our spec files of resources not in `keep` (left by an earlier configuration)."""
        wanted = {file_name(n) for n in keep}
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        gone = sorted(
            e for e in entries
            if e.startswith(_FILE_PREFIX) and f"-{CLASS}-" in e and e.endswith(".json")
            and e not in wanted
        )
        for e in gone:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / e).unlink()
        return gone

    def for_allocate(self, resource: Resource) -> CdiNames:
        """The `cdi` argument of `allocate.allocate` for this resource: its spec made current
        first (refused when it cannot be: the runtime would not find the devices we name)."""
        if not self.write(resource):
            raise AllocationError(
                f"{resource.name}: cannot write CDI spec {self.path(resource.name)}",
                unknown=False,
            )

        def names(ids: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
            return qualified(resource.name, ids), annotations_for(resource.name, ids)

        return names


__all__ = [
    "CDI_VERSION", "DEFAULT_CDI_DIR", "CdiSpecs", "annotation_key", "annotations_for", "file_name",
    "kind", "qualified", "spec",
]
