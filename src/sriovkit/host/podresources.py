"""kubelet's PodResources API v1, asked one question: which devices of a resource a pod holds.

This is how the `sriov` CNI finds a pod's VF without Multus: the device plugin's Allocate told
kubelet which VFs the pod got, and kubelet answers for them on
`<kubelet-dir>/pod-resources/kubelet.sock` (kubelet's `--root-dir`, /var/lib/kubelet unless
`$SRIOVKIT_KUBELET_DIR` says otherwise).

- `Get` (one pod) is asked first; a kubelet without it (1.20 to 1.26 do not have it, later ones
  keep it behind the KubeletPodResourcesGet feature gate and answer an error when it is off)
  gets `List` (every pod on the node), which every kubelet since 1.20 has.
- grpc is imported inside `devices()`, never at module level: the CNI shim's in-process
  fallback imports this module through `cni.dispatch` and must not pay grpc's ~60 ms start-up
  unless a config really names a `resourceName`. Besides the device plugin, this is the only
  module that imports grpc.
- A missing socket, a refused connection or no answer within `timeout` is `Unavailable` (CNI
  code 11, try again later: kubelet restarting is the usual cause) naming the socket; any other
  gRPC failure is a HostError naming the socket, the method and kubelet's status.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from sriovkit.errors import HostError, InvalidInput, Unavailable

DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet")
KUBELET_DIR_ENV = "SRIOVKIT_KUBELET_DIR"
SOCKET = Path("pod-resources/kubelet.sock")
"""kubelet's PodResources socket, relative to its root directory."""
TIMEOUT = 5.0  # seconds for one call: kubelet answers from memory, in milliseconds


def default_kubelet_dir(env: Mapping[str, str]) -> Path:
    """`$SRIOVKIT_KUBELET_DIR` if set (must be absolute), else /var/lib/kubelet."""
    text = env.get(KUBELET_DIR_ENV, "")
    if not text:
        return DEFAULT_KUBELET_DIR
    if not text.startswith("/") or "\0" in text:
        raise InvalidInput(KUBELET_DIR_ENV, f"{text!r} is not an absolute path")
    return Path(text)


class PodDevices(Protocol):
    """The seam ops/ sees: the device ids of `resource` that pod `namespace/name` holds."""

    def devices(self, namespace: str, name: str, resource: str) -> Sequence[str]:
        """Device ids in kubelet's order (containers in pod order), each once; empty if none."""
        ...


class PodResources:
    """A client of kubelet's PodResources socket at `socket`; one channel per question."""

    def __init__(self, socket: Path, timeout: float = TIMEOUT) -> None:
        self.socket = socket
        self.timeout = timeout

    def devices(self, namespace: str, name: str, resource: str) -> Sequence[str]:
        """See `PodDevices.devices`; Unavailable when kubelet does not answer."""
        self._require_socket()
        import grpc  # noqa: PLC0415 - only configs naming a resourceName pay for grpc

        from sriovkit.deviceplugin.api.podresources_v1 import (  # noqa: PLC0415
            api_pb2 as pb,
        )
        from sriovkit.deviceplugin.api.podresources_v1 import (  # noqa: PLC0415
            api_pb2_grpc as pb_grpc,
        )

        with grpc.insecure_channel("unix:" + str(self.socket)) as channel:
            stub = pb_grpc.PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
            try:
                answer = stub.Get(
                    pb.GetPodResourcesRequest(pod_name=name, pod_namespace=namespace),
                    timeout=self.timeout,
                )
                pods = [answer.pod_resources]
            except grpc.RpcError as exc:
                self._unless_unreachable(exc, "Get")
                # No Get on this kubelet (or its feature gate off, or the pod unknown to it):
                # List has every pod, on every kubelet since 1.20.
                try:
                    listed = stub.List(pb.ListPodResourcesRequest(), timeout=self.timeout)
                except grpc.RpcError as exc2:
                    self._unless_unreachable(exc2, "List")
                    raise HostError(
                        f"kubelet's PodResources List on {self.socket} failed: {_status(exc2)}"
                    ) from None
                pods = list(listed.pod_resources)
        return _pick(pods, namespace, name, resource)

    def _require_socket(self) -> None:
        """A clear error before grpc's: no socket means no kubelet (or a wrong kubelet dir)."""
        try:
            mode = os.stat(self.socket).st_mode
        except OSError as exc:
            raise Unavailable(
                f"kubelet's PodResources socket {self.socket} is not there ({exc.strerror}): "
                f"is kubelet running, with its root directory at {self.socket.parent.parent}?"
            ) from None
        if not stat.S_ISSOCK(mode):
            raise HostError(f"kubelet's PodResources socket {self.socket} is not a socket")

    def _unless_unreachable(self, exc: Any, method: str) -> None:
        import grpc  # noqa: PLC0415

        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}:
            raise Unavailable(
                f"kubelet's PodResources {method} on {self.socket} got no answer: {_status(exc)}"
            ) from None


def _status(exc: Any) -> str:
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    name = getattr(code, "name", str(code))
    return f"{name}: {details}" if details else name


def _pick(pods: Sequence[Any], namespace: str, name: str, resource: str) -> tuple[str, ...]:
    """The ids of `resource` across the pod's containers, each once, in kubelet's order."""
    out: dict[str, None] = {}
    for pod in pods:
        if pod.namespace != namespace or pod.name != name:
            continue
        for container in pod.containers:
            for group in container.devices:
                if group.resource_name == resource:
                    out.update(dict.fromkeys(group.device_ids))
    return tuple(out)


__all__ = [
    "DEFAULT_KUBELET_DIR",
    "KUBELET_DIR_ENV",
    "SOCKET",
    "PodDevices",
    "PodResources",
    "default_kubelet_dir",
]
