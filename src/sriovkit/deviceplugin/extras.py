"""What Allocate does beyond its answer, and what must follow a resource's device list on disk.

`allocate.allocate` is pure: the answer from the resource and the ids. The rest touches the
host, so it lives here, configured once by the service:
- RDMA character devices read from sysfs under `host_root` (None: no RDMA lookup);
- the device-info file of each allocated device in `devinfo_dir` (None: none written), see
  `devinfo`;
- with `cdi_dir`, the CDI spec file per resource and CDI names in the answer, see `cdi`.

`on_update()` is subscribed to every feed (`ResourceFeed.subscribe`): a device leaving the pool
loses its device-info file and the CDI spec is rewritten, whoever changed the list. `start()`
does the same once for the lists as they are at start, and removes CDI spec files of resources
no longer served; `retire()` does that when a config edit removes a resource.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from sriovkit.deviceplugin.allocate import (
    NO_RDMA,
    AllocationError,
    ContainerAllocation,
    Rdma,
    allocate,
)
from sriovkit.deviceplugin.cdi import CdiSpecs
from sriovkit.deviceplugin.devinfo import DeviceInfoFiles
from sriovkit.deviceplugin.model import Resource
from sriovkit.host.rdma import RdmaReader

log = logging.getLogger("sriovkit.agent")


class AllocateExtras:
    """Allocate with its side effects; every argument None keeps the plain answer."""

    def __init__(
        self,
        *,
        devinfo_dir: Path | None = None,
        cdi_dir: Path | None = None,
        host_root: Path | None = None,
    ) -> None:
        if host_root is not None:
            reader = RdmaReader(host_root)
            self.rdma = Rdma(nodes=reader.char_devices, names=reader.names)
        else:
            self.rdma = NO_RDMA
        self.devinfo = None if devinfo_dir is None else DeviceInfoFiles(devinfo_dir)
        self.cdi = None if cdi_dir is None else CdiSpecs(cdi_dir, rdma=self.rdma)

    def allocate(self, resource: Resource, ids: Sequence[str]) -> ContainerAllocation:
        """The answer for one container, after its device-info files are written (the CNI may
        run as soon as kubelet has the answer). Raises `AllocationError`."""
        got = allocate(
            resource, ids, rdma=self.rdma,
            cdi=None if self.cdi is None else self.cdi.for_allocate(resource),
        )
        if self.devinfo is not None:
            for dev_id in ids:
                names = self.rdma.names(dev_id) if self.rdma.nodes(dev_id) else ()
                try:
                    self.devinfo.write(resource.name, dev_id, names)
                except OSError as exc:
                    raise AllocationError(
                        f"{resource.name}: cannot write device-info file "
                        f"{self.devinfo.path(resource.name, dev_id)}: {exc.strerror or exc}",
                        unknown=False,
                    ) from exc
        return got

    def on_update(self, resource: Resource) -> None:
        """A feed's new list: drop device-info files of devices that left, rewrite the CDI spec."""
        if self.devinfo is not None:
            self.devinfo.sweep(resource)
        if self.cdi is not None:
            self.cdi.write(resource)

    def retire(self, serving: Iterable[str]) -> None:
        """Remove the CDI spec files of resources no longer in `serving` (a config edit removed
        them; their device-info files went when their list was emptied)."""
        if self.cdi is not None:
            for name in self.cdi.sweep(serving):
                log.info("device plugin: removed CDI spec %s", name)

    def start(self, resources: Iterable[Resource]) -> None:
        resources = list(resources)
        if self.cdi is not None:
            for name in self.cdi.sweep(r.name for r in resources):
                log.info("device plugin: removed stale CDI spec %s", name)
        for res in resources:
            self.on_update(res)


__all__ = ["AllocateExtras"]
