"""One resource's gRPC server: kubelet's DevicePlugin service on a unix socket, and Register.

kubelet talks to a device plugin only through the socket the plugin registered: it opens one
ListAndWatch stream and calls GetPreferredAllocation, Allocate and PreStartContainer on it. The
server holds no state of its own beyond the socket: every answer is computed from the
`ResourceFeed`'s current list, so an update is in the very next answer.

A socket that kubelet deleted cannot be listened on again: `ResourceServer.bind()` stops the
gRPC server and starts a new one on a new socket at the same path.

Two ways to be found by kubelet (`Registration` mode):
- "socket": the socket in `device-plugins/`, and Register on `device-plugins/kubelet.sock` with
  the options in the RegisterRequest (the way real kubelet 1.20 was seen to work here);
- "watcher": the socket in `plugins_registry/`, which kubelet's plugin watcher finds by itself; the
  same server also answers pluginregistration v1 (GetInfo names the resource and gives the socket
  itself as the endpoint; NotifyRegistrationStatus is logged), and kubelet asks for the options
  with GetDevicePluginOptions. No Register call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import grpc

from sriovkit.deviceplugin.allocate import AllocationError
from sriovkit.deviceplugin.api.deviceplugin_v1beta1 import api_pb2 as pb
from sriovkit.deviceplugin.api.deviceplugin_v1beta1 import api_pb2_grpc as pb_grpc
from sriovkit.deviceplugin.api.pluginregistration_v1 import api_pb2 as reg_pb
from sriovkit.deviceplugin.api.pluginregistration_v1 import api_pb2_grpc as reg_grpc
from sriovkit.deviceplugin.extras import AllocateExtras
from sriovkit.deviceplugin.model import Resource, ResourceFeed
from sriovkit.deviceplugin.preferred import preferred

log = logging.getLogger("sriovkit.agent")

Registration = Literal["socket", "watcher"]

API_VERSION = "v1beta1"
PLUGIN_TYPE = "DevicePlugin"
"""PluginInfo.type kubelet's plugin watcher hands to the device manager."""
KUBELET_SOCKET = "kubelet.sock"
HEALTHY, UNHEALTHY = "Healthy", "Unhealthy"
SUN_PATH_MAX = 107
"""A unix socket path's longest length in bytes (sun_path is 108 with its NUL)."""

_STREAM_RECHECK = 1.0
"""How often a ListAndWatch stream with nothing to send checks that it is still wanted (a
cancelled stream is normally woken at once; this bounds the cases where it is not)."""


def socket_name(resource_name: str) -> str:
    """`intel.com/sriov_a` -> `sriovkit-intel.com_sriov_a.sock`: only `[A-Za-z0-9._-]`, so the
    name is one path component, and prefixed so a look at the directory says whose it is."""
    return "sriovkit-" + re.sub(r"[^A-Za-z0-9._-]", "_", resource_name) + ".sock"


def to_pb_devices(resource: Resource) -> list[pb.Device]:
    out = []
    for d in resource.devices:
        dev = pb.Device(ID=d.id, health=HEALTHY if d.healthy else UNHEALTHY)
        if d.numa is not None:
            dev.topology.nodes.add(ID=d.numa)
        out.append(dev)
    return out


class DevicePluginServicer(pb_grpc.DevicePluginServicer):
    """kubelet's DevicePlugin service for one resource."""

    def __init__(
        self, feed: ResourceFeed, closing: threading.Event, extras: AllocateExtras | None = None
    ) -> None:
        self.feed = feed
        self.closing = closing
        self.extras = extras or AllocateExtras()

    def GetDevicePluginOptions(self, request: pb.Empty, context: Any) -> pb.DevicePluginOptions:
        return options()

    def ListAndWatch(self, request: pb.Empty, context: Any) -> Iterator[pb.ListAndWatchResponse]:
        """The whole list at once, then the whole list again after every `update()`."""
        gone = threading.Event()

        def on_done() -> None:
            gone.set()
            self.feed.wake()

        context.add_callback(on_done)
        res = self.feed.current()
        log.info("device plugin: %s: ListAndWatch opened, %d devices", res.name, len(res.devices))
        yield pb.ListAndWatchResponse(devices=to_pb_devices(res))
        generation = res.generation
        while not gone.is_set() and not self.closing.is_set() and context.is_active():
            newer = self.feed.wait_newer(generation, _STREAM_RECHECK)
            if newer is None:
                continue
            generation = newer.generation
            yield pb.ListAndWatchResponse(devices=to_pb_devices(newer))

    def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: Any
    ) -> pb.PreferredAllocationResponse:
        res = self.feed.current()
        answers = [
            pb.ContainerPreferredAllocationResponse(
                deviceIDs=preferred(
                    res, list(c.available_deviceIDs), list(c.must_include_deviceIDs),
                    c.allocation_size,
                )
            )
            for c in request.container_requests
        ]
        return pb.PreferredAllocationResponse(container_responses=answers)

    def Allocate(self, request: pb.AllocateRequest, context: Any) -> pb.AllocateResponse:
        res = self.feed.current()
        answers = []
        for c in request.container_requests:
            try:
                got = self.extras.allocate(res, list(c.devices_ids))
            except AllocationError as exc:
                log.warning("device plugin: Allocate refused: %s", exc)
                code = grpc.StatusCode.NOT_FOUND if exc.unknown else grpc.StatusCode.UNAVAILABLE
                context.abort(code, str(exc))
                raise  # abort raises; this line is never reached
            answers.append(
                pb.ContainerAllocateResponse(
                    envs=got.envs,
                    devices=[
                        pb.DeviceSpec(container_path=s.path, host_path=s.path,
                                      permissions=s.permissions)
                        for s in got.specs
                    ],
                    cdi_devices=[pb.CDIDevice(name=n) for n in got.cdi_devices],
                    annotations=got.annotations,
                )
            )
        return pb.AllocateResponse(container_responses=answers)

    def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: Any
    ) -> pb.PreStartContainerResponse:
        """Not asked for (pre_start_required is false); answered for a kubelet that calls."""
        return pb.PreStartContainerResponse()


class WatcherRegistrationServicer(reg_grpc.RegistrationServicer):
    """pluginregistration v1 for kubelet's plugin watcher: who we are, and where to call."""

    def __init__(self, resource_name: str, endpoint: Path) -> None:
        self.resource_name = resource_name
        self.endpoint = endpoint
        self.status: reg_pb.RegistrationStatus | None = None

    def GetInfo(self, request: reg_pb.InfoRequest, context: Any) -> reg_pb.PluginInfo:
        return reg_pb.PluginInfo(
            type=PLUGIN_TYPE, name=self.resource_name, endpoint=str(self.endpoint),
            supported_versions=[API_VERSION],
        )

    def NotifyRegistrationStatus(
        self, request: reg_pb.RegistrationStatus, context: Any
    ) -> reg_pb.RegistrationStatusResponse:
        self.status = request
        if request.plugin_registered:
            log.info("device plugin: %s: registered by kubelet's plugin watcher",
                     self.resource_name)
        else:
            log.warning("device plugin: %s: kubelet's plugin watcher refused it: %s",
                        self.resource_name, request.error)
        return reg_pb.RegistrationStatusResponse()


def options() -> pb.DevicePluginOptions:
    return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)


class ResourceServer:
    """The gRPC server of one resource on `<dir>/<socket_name>`: `dir` is `device-plugins/` in
    "socket" mode, `plugins_registry/` in "watcher" mode."""

    def __init__(
        self, feed: ResourceFeed, plugin_dir: Path, *, mode: Registration = "socket",
        workers: int = 4, extras: AllocateExtras | None = None,
    ) -> None:
        self.feed = feed
        self.extras = extras
        self.plugin_dir = plugin_dir
        self.mode = mode
        self.path = plugin_dir / socket_name(feed.name)
        self.watcher_registration: WatcherRegistrationServicer | None = None
        if len(os.fsencode(self.path)) > SUN_PATH_MAX:
            raise ValueError(f"socket path {self.path} is longer than {SUN_PATH_MAX} bytes")
        self.workers = workers
        self._server: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = threading.Event()
        self._inode: tuple[int, int] | None = None
        self.registered_with: tuple[int, int] | None = None
        """The `kubelet.sock` (device, inode) this socket was last registered with."""

    def bind(self) -> None:
        """Listen on a fresh socket at `path` (replacing whatever is there) and serve."""
        self.close(grace=0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._closing = threading.Event()
        # grpc does not shut its executor down on stop(): close() does, so a rebind per kubelet
        # restart does not leave a pool of idle threads behind each time.
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="dp-" + self.feed.name)
        server = grpc.server(self._executor)
        servicer = DevicePluginServicer(self.feed, self._closing, self.extras)
        pb_grpc.add_DevicePluginServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        if self.mode == "watcher":
            self.watcher_registration = WatcherRegistrationServicer(self.feed.name, self.path)
            reg_grpc.add_RegistrationServicer_to_server(  # type: ignore[no-untyped-call]
                self.watcher_registration, server
            )
        if server.add_insecure_port("unix:" + str(self.path)) == 0:
            raise OSError(f"cannot listen on {self.path}")
        server.start()
        self._server = server
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        self.registered_with = None

    def socket_ok(self) -> bool:
        """Is our socket still there (kubelet deletes it when it restarts)?"""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return self._server is not None and (st.st_dev, st.st_ino) == self._inode

    def register(self, kubelet_sock: Path, timeout: float) -> None:
        """Register on kubelet's socket; raises grpc.RpcError when kubelet refuses or is gone."""
        req = pb.RegisterRequest(
            version=API_VERSION, endpoint=self.path.name, resource_name=self.feed.name,
            options=options(),
        )
        with grpc.insecure_channel("unix:" + str(kubelet_sock)) as channel:
            stub = pb_grpc.RegistrationStub(channel)  # type: ignore[no-untyped-call]
            stub.Register(req, timeout=timeout, wait_for_ready=True)

    def close(self, grace: float = 1.0) -> None:
        """Stop serving (ending ListAndWatch streams) and remove our socket if it is ours."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()
        self.feed.wake()
        server.stop(grace).wait()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    self.path.unlink()
        self._inode = None
        self.registered_with = None
