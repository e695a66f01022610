"""The node agent as a process: a supervisor of services.

The process owns what no service should: signals, logging and shutdown. Each service (the CNI
socket server, `cni_service.CniService`; the device plugin and later metrics and policy) only
knows how to start and stop itself, so each can be started, stopped and tested alone.

The rules:

- Services start in the order given; `start()` returns once the service serves (its socket
  listens), running its work on threads of its own. A service that fails to start stops the
  ones already started, in reverse order, and its error is raised.
- SIGTERM and SIGINT are handled once, here, for every service: the first one starts a clean
  shutdown. The handler only puts a note in a queue (`SimpleQueue.put` is safe in a signal
  handler; setting an Event or taking a lock there could deadlock the main thread it interrupts).
- A service that ends by itself reports it through the callback it was started with; the
  supervisor then stops every service, in reverse order, and raises that service's error.
- Shutdown stops every started service in reverse order, even when one of them fails to stop.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

log = logging.getLogger("sriovkit.agent")

OnExit = Callable[[BaseException | None], None]
"""How a running service says it ended by itself: with its error, or None (no error)."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that stop the agent cleanly."""

LOG_FORMAT = "sriovkit-agent: %(levelname)s %(message)s"


class Service(Protocol):
    """One thing the agent serves; started and stopped by the `Supervisor`."""

    @property
    def name(self) -> str:
        """A short name for the log ("cni", "device-plugin")."""
        ...

    def start(self, on_exit: OnExit) -> None:
        """Take what the service needs and begin serving; return once it serves.

        Raises when the service cannot start (and then holds nothing). Work runs on threads
        of the service's own; should it end without `stop()` having been called, the service
        calls `on_exit` once, with its error or None.
        """
        ...

    def stop(self) -> None:
        """Stop serving, finish or abandon work in flight, and release everything.

        Called once after a successful `start()`; does not call `on_exit`.
        """
        ...


@dataclass(frozen=True)
class Exit:
    """Why the supervisor stopped: a signal, a service that ended, or a `request_stop()`."""

    reason: str
    service: str | None = None
    error: BaseException | None = None


def setup_logging(verbose: bool) -> None:
    """The agent's log on stderr: every request with `verbose`, else warnings and errors."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=LOG_FORMAT)


class Supervisor:
    """Starts `services` in order, stops them in reverse order; `run()` is the whole process."""

    def __init__(self, services: Sequence[Service], *, signals: Iterable[int] = SIGNALS) -> None:
        self.services = list(services)
        self.signals = tuple(signals)
        self._started: list[Service] = []
        self._exits: queue.SimpleQueue[Exit] = queue.SimpleQueue()
        self._mu = threading.Lock()

    # --- one step at a time (tests, embedding) ------------------------------------------

    def start(self) -> None:
        """Start every service in order; on a failure stop the started ones and raise."""
        for service in self.services:
            log.info("starting %s", service.name)
            try:
                service.start(self._on_exit_of(service))
            except BaseException:
                log.info("%s failed to start", service.name)
                self.stop()
                raise
            with self._mu:
                self._started.append(service)

    def stop(self) -> None:
        """Stop the started services in reverse order; every one, even if another fails.

        The first error a service raised while stopping is raised once all are stopped.
        """
        first: BaseException | None = None
        while True:
            with self._mu:
                if not self._started:
                    break
                service = self._started.pop()
            log.info("stopping %s", service.name)
            try:
                service.stop()
            except BaseException as exc:  # the others must still stop
                log.exception("%s failed to stop cleanly", service.name)
                first = first or exc
        if first is not None:
            raise first

    def request_stop(self, reason: str) -> None:
        """Ask `wait()` to return (from any thread, or a signal handler)."""
        self._exits.put(Exit(reason))

    def wait(self) -> Exit:
        """Block until a signal, a service ending by itself, or `request_stop()`."""
        # SimpleQueue.get runs signal handlers while it blocks, so SIGTERM is seen at once.
        return self._exits.get()

    def _on_exit_of(self, service: Service) -> OnExit:
        def on_exit(error: BaseException | None) -> None:
            self._exits.put(Exit(f"{service.name} ended", service.name, error))

        return on_exit

    # --- the process ----------------------------------------------------------------------

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Install the signal handlers, start, serve until told to stop, stop; main thread only.

        `ready` is called once every service serves. Raises a service's error when it failed to
        start or ended by itself; a signal is a clean stop.
        """

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._exits.put(Exit(f"signal {signum}"))

        previous = {sig: signal.signal(sig, on_signal) for sig in self.signals}
        try:
            # The kernel hands a process-directed signal to any thread not blocking it, and a
            # lock wait is interrupted only in the thread that got it: a SIGTERM taken by a
            # service's thread left the main thread asleep in wait() until SIGKILL (seen as a
            # `podman stop` that timed out). Every thread the services start inherits this
            # mask, so the signals reach the main thread alone; one sent meanwhile waits.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
            try:
                self.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            try:
                if ready is not None:
                    ready()
                why = self.wait()
                if why.service is not None:
                    log.error("%s: stopping every service", why.reason)
                else:
                    log.info("%s: stopping after the requests in flight", why.reason)
            finally:
                self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if why.error is not None:
            raise why.error


__all__ = ["SIGNALS", "Exit", "OnExit", "Service", "Supervisor", "setup_logging"]
