"""A test kubelet's PodResources v1 side, built from the same generated code as sriovkit.

`FakePodResources(root)` serves `PodResourcesLister` on `<root>/pod-resources/kubelet.sock`, as
kubelet does under its root directory. `assign(namespace, pod, {container: {resource: ids}})`
sets what a pod holds (what kubelet would have recorded from the device plugin's Allocate);
`calls` lists the methods called, in order. With `has_get=False` it is a kubelet 1.20 to 1.26:
Get is left to the generated servicer, which answers UNIMPLEMENTED, as such a kubelet does.

Kept apart from `fake_kubelet.FakeKubelet` (the Registration side) so each can grow on its own;
`start()` never wipes the directory (kubelet only wipes device-plugins/).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from sriovkit.deviceplugin.api.podresources_v1 import api_pb2 as pb
from sriovkit.deviceplugin.api.podresources_v1 import api_pb2_grpc as pb_grpc

Containers = Mapping[str, Mapping[str, Sequence[str]]]
"""container name -> resource name -> device ids."""


class _Lister(pb_grpc.PodResourcesListerServicer):
    def __init__(self, fake: FakePodResources) -> None:
        self.fake = fake

    def List(self, request: Any, context: Any) -> Any:
        self.fake.record("List")
        return pb.ListPodResourcesResponse(pod_resources=self.fake.pods())


class _ListerWithGet(_Lister):
    def Get(self, request: Any, context: Any) -> Any:
        self.fake.record("Get")
        for pod in self.fake.pods():
            if pod.namespace == request.pod_namespace and pod.name == request.pod_name:
                return pb.GetPodResourcesResponse(pod_resources=pod)
        # kubelet: "pod %s not found in %s" as a plain error (gRPC Unknown)
        context.abort(grpc.StatusCode.UNKNOWN, f"pod {request.pod_name} not found")
        return None


class FakePodResources:
    """kubelet's PodResources socket on `root`, answering from `assign`ed pods."""

    def __init__(self, root: Path, *, has_get: bool = True) -> None:
        self.dir = root / "pod-resources"
        self.sock = self.dir / "kubelet.sock"
        self.has_get = has_get
        self.calls: list[str] = []
        self._pods: dict[tuple[str, str], Containers] = {}
        self._mu = threading.Lock()
        self._server: Any = None

    def assign(self, namespace: str, name: str, containers: Containers) -> FakePodResources:
        with self._mu:
            self._pods[namespace, name] = containers
        return self

    def record(self, method: str) -> None:
        with self._mu:
            self.calls.append(method)

    def pods(self) -> list[Any]:
        with self._mu:
            items = list(self._pods.items())
        return [
            pb.PodResources(
                namespace=ns,
                name=name,
                containers=[
                    pb.ContainerResources(
                        name=cname,
                        devices=[
                            pb.ContainerDevices(resource_name=res, device_ids=list(ids))
                            for res, ids in resources.items()
                        ],
                    )
                    for cname, resources in containers.items()
                ],
            )
            for (ns, name), containers in items
        ]

    def start(self) -> FakePodResources:
        self.dir.mkdir(parents=True, exist_ok=True)
        server = grpc.server(ThreadPoolExecutor(4))
        lister = _ListerWithGet(self) if self.has_get else _Lister(self)
        pb_grpc.add_PodResourcesListerServicer_to_server(lister, server)
        assert server.add_insecure_port("unix:" + str(self.sock)) != 0
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()

    def __enter__(self) -> FakePodResources:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
