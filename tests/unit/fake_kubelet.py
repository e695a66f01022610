"""A test kubelet: the device plugin API's kubelet side, built from the same generated code.

`FakeKubelet(root)` serves kubelet's Registration service on `<root>/device-plugins/kubelet.sock`
and records every RegisterRequest. Like kubelet, on each Register it connects back to the
plugin's endpoint and opens a ListAndWatch stream, read by a thread into a queue
(`stream(resource).next()`); `plugin(resource)` gives a client for Allocate and
GetPreferredAllocation. `start(wipe=True)` first deletes everything in the directory, as kubelet
does when it starts, so stopping one FakeKubelet and starting another is a kubelet restart.

`probe_registry()` plays kubelet's plugin watcher instead: for each socket in
`<root>/plugins_registry/` it calls GetInfo, connects to the endpoint given, asks
GetDevicePluginOptions, opens ListAndWatch and reports NotifyRegistrationStatus.

`dp_agent(...)` runs the real agent process with the device plugin, for the tests that need
the whole thing rather than the service in-process.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from sriovkit.deviceplugin.api.deviceplugin_v1beta1 import api_pb2 as pb
from sriovkit.deviceplugin.api.deviceplugin_v1beta1 import api_pb2_grpc as pb_grpc
from sriovkit.deviceplugin.api.pluginregistration_v1 import api_pb2 as reg_pb
from sriovkit.deviceplugin.api.pluginregistration_v1 import api_pb2_grpc as reg_grpc


@contextmanager
def short_root(prefix: str = "skdp") -> Iterator[Path]:
    """A kubelet root under /tmp: pytest's tmp_path can make a socket path exceed 108 bytes."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class Seen:
    """One device as kubelet saw it on ListAndWatch."""

    id: str
    health: str
    numa: tuple[int, ...]


class Stream:
    """A ListAndWatch stream read by a thread of its own, answers queued."""

    def __init__(self, stub: Any) -> None:
        self.answers: queue.Queue[list[Seen] | BaseException] = queue.Queue()
        self.ended = threading.Event()
        """Set when the plugin ended the stream (or it failed): kubelet drops the endpoint."""
        self._call = stub.ListAndWatch(pb.Empty())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for answer in self._call:
                self.answers.put(
                    [Seen(d.ID, d.health, tuple(n.ID for n in d.topology.nodes))
                     for d in answer.devices]
                )
        except grpc.RpcError as exc:
            self.answers.put(exc)
        finally:
            self.ended.set()

    def next(self, timeout: float = 5.0) -> list[Seen]:
        got = self.answers.get(timeout=timeout)
        if isinstance(got, BaseException):
            raise got
        return got

    def cancel(self) -> None:
        self._call.cancel()
        self._thread.join(5)


class PluginClient:
    """kubelet's calls to one plugin endpoint."""

    def __init__(self, path: Path) -> None:
        self.channel = grpc.insecure_channel("unix:" + str(path))
        self.stub = pb_grpc.DevicePluginStub(self.channel)

    def options(self) -> Any:
        return self.stub.GetDevicePluginOptions(pb.Empty(), timeout=5)

    def allocate(self, *containers: list[str]) -> Any:
        req = pb.AllocateRequest(
            container_requests=[pb.ContainerAllocateRequest(devices_ids=c) for c in containers]
        )
        return self.stub.Allocate(req, timeout=5)

    def preferred(
        self, available: list[str], size: int, must: list[str] | None = None
    ) -> list[str]:
        req = pb.PreferredAllocationRequest(
            container_requests=[
                pb.ContainerPreferredAllocationRequest(
                    available_deviceIDs=available, must_include_deviceIDs=must or [],
                    allocation_size=size,
                )
            ]
        )
        answer = self.stub.GetPreferredAllocation(req, timeout=5)
        return list(answer.container_responses[0].deviceIDs)

    def pre_start(self, ids: list[str]) -> Any:
        return self.stub.PreStartContainer(pb.PreStartContainerRequest(devices_ids=ids), timeout=5)

    def close(self) -> None:
        self.channel.close()


class _Registration(pb_grpc.RegistrationServicer):
    def __init__(self, kubelet: FakeKubelet) -> None:
        self.kubelet = kubelet

    def Register(self, request: Any, context: Any) -> Any:
        self.kubelet.on_register(request)
        return pb.Empty()


class FakeKubelet:
    def __init__(self, root: Path) -> None:
        self.registry_dir = root / "plugins_registry"
        self.plugin_dir = root / "device-plugins"
        self.sock = self.plugin_dir / "kubelet.sock"
        self.requests: list[Any] = []
        self.streams: dict[str, Stream] = {}
        self._clients: list[PluginClient] = []
        self._cond = threading.Condition()
        self._server: Any = None

    def start(self, *, wipe: bool = True) -> FakeKubelet:
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        if wipe:
            for entry in self.plugin_dir.iterdir():
                entry.unlink()
        server = grpc.server(ThreadPoolExecutor(4))
        pb_grpc.add_RegistrationServicer_to_server(_Registration(self), server)
        assert server.add_insecure_port("unix:" + str(self.sock)) != 0
        server.start()
        self._server = server
        return self

    def on_register(self, request: Any) -> None:
        client = PluginClient(self.plugin_dir / request.endpoint)
        stream = Stream(client.stub)
        with self._cond:
            self._clients.append(client)
            old = self.streams.get(request.resource_name)
            self.streams[request.resource_name] = stream
            self.requests.append(request)
            self._cond.notify_all()
        if old is not None:
            old.cancel()

    def probe_registry(self) -> list[tuple[Any, Any]]:
        """kubelet's plugin watcher over every socket in plugins_registry/: (PluginInfo,
        DevicePluginOptions) each; the device plugins get a ListAndWatch stream."""
        found = []
        for sock in sorted(self.registry_dir.iterdir()):
            with grpc.insecure_channel("unix:" + str(sock)) as channel:
                reg = reg_grpc.RegistrationStub(channel)
                info = reg.GetInfo(reg_pb.InfoRequest(), timeout=5)
                ok = info.type == "DevicePlugin" and "v1beta1" in info.supported_versions
                opts = None
                if ok:
                    client = PluginClient(Path(info.endpoint))
                    opts = client.options()
                    with self._cond:
                        self._clients.append(client)
                        self.streams[info.name] = Stream(client.stub)
                reg.NotifyRegistrationStatus(
                    reg_pb.RegistrationStatus(plugin_registered=ok,
                                              error="" if ok else "unsupported"),
                    timeout=5,
                )
            found.append((info, opts))
        return found

    def wait_registered(self, count: int = 1, timeout: float = 5.0) -> list[Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.requests) >= count, timeout), (
                f"{len(self.requests)} registrations, wanted {count}"
            )
            return list(self.requests)

    def wait_stream(self, resource: str, timeout: float = 30.0) -> Stream:
        """The ListAndWatch stream of `resource` once it registered."""
        with self._cond:
            assert self._cond.wait_for(lambda: resource in self.streams, timeout), (
                f"{resource} never registered; registered: {sorted(self.streams)}"
            )
            return self.streams[resource]

    def stream(self, resource: str) -> Stream:
        with self._cond:
            return self.streams[resource]

    def plugin(self, resource: str) -> PluginClient:
        with self._cond:
            endpoint = next(r.endpoint for r in reversed(self.requests)
                            if r.resource_name == resource)
        client = PluginClient(self.plugin_dir / endpoint)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for stream in list(self.streams.values()):
            stream.cancel()
        for client in self._clients:
            client.close()
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()


def wait_cni_socket(path: Path, timeout: float = 30.0) -> None:
    """Wait until the agent's CNI service accepts connections on `path`. The agent starts its
    device plugin first, so kubelet may see the pool a moment before the CNI socket serves."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the agent's CNI socket {path} never served") from None
            else:
                return
        time.sleep(0.02)


@contextmanager
def dp_agent(
    host: Path, config: Path, kubelet_dir: Path, state: Path, socket: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """The real `sriovkit agent --device-plugin` process on the simulated `host`, registering
    with the kubelet at `kubelet_dir`; SIGTERM at exit, which must end it cleanly (exit 0, no
    traceback). Its CNI socket is `socket` (default `kubelet_dir/agent.sock`, short enough)."""
    cmd = [
        sys.executable, "-m", "sriovkit.cli", "--root", str(host), "agent",
        "--socket", str(socket or kubelet_dir / "agent.sock"), "--state-dir", str(state),
        "--device-plugin", "--dp-config", str(config), "--kubelet-dir", str(kubelet_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
