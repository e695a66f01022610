"""The device-info files of the Network Plumbing WG's device-info spec, written on Allocate.

A CNI plugin called for a pod does not learn from kubelet which VF the pod got: kubelet only
passes the `PCIDEVICE_*` env into the container. Multus finds the device plugin's file
`<dir>/<resource>-<device>-device.json` (the resource name and the device id with every `/` as
`-`, dir `/var/run/k8s.cni.cncf.io/devinfo/dp`, as network-attachment-definition-client's
`SaveDeviceInfoForDP` names it) and hands it to the CNI as `CNIDeviceInfoFile`; our `sriov` CNI
reads it (`model.cni.parse_device_info`). Contents, spec version 1.1.0:

    {"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","rdma-device":"mlx5_3"}}

(`rdma-device` only when the VF has RDMA devices, comma-separated.)

Lifetime. kubelet never tells a device plugin that a device came back from a pod, so a file
cannot be removed at that moment; sriov-network-device-plugin rewrites it on each Allocate and
removes all its pool's files when its server stops. Here:
- every Allocate of a device rewrites its file atomically (a CNI reading it sees the old or the
  new one, never a torn file);
- `sweep()` removes the files of the resource whose device is no longer in it, called on every
  feed update (a VF gone, rebound out of the pool) and at start (left over from an earlier run);
- files of devices still in the pool are kept across an agent restart: a pod admitted just
  before may not have run its CNI yet, and the file is all the CNI has.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from sriovkit.deviceplugin.model import Resource
from sriovkit.host.atomicfile import write_file

log = logging.getLogger("sriovkit.agent")

DEFAULT_DEVINFO_DIR = Path("/var/run/k8s.cni.cncf.io/devinfo/dp")
SPEC_VERSION = "1.1.0"
_SUFFIX = "-device.json"
_PCI = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"


def file_name(resource_name: str, device_id: str) -> str:
    """`intel.com/sriov_a`, `0000:03:02.0` -> `intel.com-sriov_a-0000:03:02.0-device.json`."""
    return f"{resource_name.replace('/', '-')}-{device_id.replace('/', '-')}{_SUFFIX}"


def contents(device_id: str, rdma_names: Sequence[str] = ()) -> bytes:
    """The file's JSON, fields in the order Go's encoding/json writes the spec's struct."""
    pci: dict[str, str] = {"pci-address": device_id}
    if rdma_names:
        pci["rdma-device"] = ",".join(rdma_names)
    info = {"type": "pci", "version": SPEC_VERSION, "pci": pci}
    return json.dumps(info, separators=(",", ":")).encode()


class DeviceInfoFiles:
    """The device-info files of every resource in one directory (created when first needed)."""

    def __init__(self, directory: Path = DEFAULT_DEVINFO_DIR) -> None:
        self.directory = directory

    def path(self, resource_name: str, device_id: str) -> Path:
        return self.directory / file_name(resource_name, device_id)

    def write(self, resource_name: str, device_id: str, rdma_names: Sequence[str] = ()) -> None:
        """Replace the device's file atomically; raises OSError."""
        write_file(
            self.path(resource_name, device_id), contents(device_id, rdma_names),
            mode=0o444, parents=True,
        )

    def remove(self, resource_name: str, device_ids: Iterable[str]) -> None:
        """Remove these devices' files (the re-discovery may call it for devices that left)."""
        for dev_id in device_ids:
            with contextlib.suppress(FileNotFoundError):
                self.path(resource_name, dev_id).unlink()

    def present(self, resource_name: str) -> list[str]:
        """The device ids that have a file of this resource, sorted."""
        pattern = re.compile(
            re.escape(resource_name.replace("/", "-")) + f"-({_PCI}){re.escape(_SUFFIX)}$"
        )
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(m.group(1) for e in entries if (m := pattern.match(e)))

    def sweep(self, resource: Resource) -> list[str]:
        """Remove the files of devices no longer in `resource`; returns their ids. Errors are
        logged, not raised: this runs on the feed's update path."""
        keep = set(resource.by_id())
        try:
            gone = [d for d in self.present(resource.name) if d not in keep]
            self.remove(resource.name, gone)
        except OSError as exc:
            log.warning("device plugin: %s: cannot sweep device-info files in %s: %s",
                        resource.name, self.directory, exc)
            return []
        if gone:
            log.info("device plugin: %s: removed device-info files of %s", resource.name,
                     ", ".join(gone))
        return gone


__all__ = ["DEFAULT_DEVINFO_DIR", "SPEC_VERSION", "DeviceInfoFiles", "contents", "file_name"]
