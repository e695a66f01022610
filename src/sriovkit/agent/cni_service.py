"""The CNI socket server as one of the agent's services (see `supervisor`).

`start()` warms the CNI path, takes the agent lock and the socket (`server.Agent.open`), replays
the pending-DEL journal and installs the CNI shims when asked (`replay`; shims connecting
meanwhile wait in the listen backlog), then serves on a thread of its own; `stop()` stops
reading, finishes the requests already read and
removes the socket. A request costs exactly what it costs in `server.Agent`: the service only
wraps its lifecycle.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import threading
from collections.abc import Mapping
from pathlib import Path

from sriovkit.agent.protocol import Limits
from sriovkit.agent.replay import CniInstall, replay_pending
from sriovkit.agent.server import Agent
from sriovkit.agent.supervisor import OnExit
from sriovkit.cni.dispatch import host_context, root_of
from sriovkit.errors import InvalidInput

log = logging.getLogger("sriovkit.agent")


def warm(defaults: Mapping[str, str]) -> None:
    """Pay the imports (pyroute2 ~140 ms) and the first netlink socket now, not on a pod's ADD."""
    try:
        root = root_of(defaults)
    except InvalidInput:
        return
    try:
        with host_context({**defaults, "CNI_PATH": ""}):
            pass
    except Exception as exc:  # a cold cache is not fatal; requests report errors
        log.warning("warm-up on %s failed: %s", root, exc)


def raise_fd_limit(limits: Limits) -> None:
    """Make room for every connection the limits allow, and the workers' own descriptors
    (lock files, netlink sockets, an IPAM plugin's pipes): 1024, a common soft limit, is not."""
    want = limits.max_reading + limits.max_pending + limits.max_workers * 16 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class CniService:
    """The `sriov` CNI shim's server on unix socket `agent.path`, as a supervised service."""

    name = "cni"

    def __init__(
        self,
        agent: Agent,
        *,
        warm_up: bool = True,
        replay: bool = True,
        install: CniInstall | None = None,
    ) -> None:
        self.agent = agent
        self.warm_up = warm_up
        self.replay = replay
        self.install = install
        self._thread: threading.Thread | None = None
        self._stopping = False

    @classmethod
    def at(
        cls,
        path: Path,
        defaults: Mapping[str, str] | None = None,
        install: CniInstall | None = None,
    ) -> CniService:
        """The production service: an `Agent` on `path` with the agent's request defaults."""
        return cls(Agent(path, defaults), install=install)

    def start(self, on_exit: OnExit) -> None:
        """Warm up, open the socket (raises `Busy` when another agent serves it), replay the
        pending DELs, install the shims, serve."""
        raise_fd_limit(self.agent.limits)
        if self.warm_up:
            warm(self.agent.defaults)
        self.agent.open()
        try:
            if self.replay:
                replay_pending(self.agent.defaults, self.agent.ctx_factory, self.agent.run)
            if self.install is not None:
                self.install.run()
        except BaseException:
            self.agent.close()
            raise
        self._stopping = False

        def serve() -> None:
            error: BaseException | None = None
            try:
                self.agent.serve()
            except BaseException as exc:  # handed to the supervisor, which stops the agent
                error = exc
            if not self._stopping:
                on_exit(error)

        self._thread = threading.Thread(target=serve, name="sriovkit-cni-reader", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._thread = None
            self.agent.close()
            raise
        log.info("serving CNI requests on %s", self.agent.path)

    def stop(self) -> None:
        """Stop reading, wait for the requests already read (`Agent.serve` bounds the wait),
        remove the socket and release the agent lock."""
        self._stopping = True
        self.agent.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.agent.close()


__all__ = ["CniService", "raise_fd_limit", "warm"]
