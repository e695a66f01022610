"""The device plugin as one of the agent's services (see `sriovkit.agent.supervisor`).

`start()` listens on one socket per resource in `<kubelet-dir>/device-plugins/` and starts a
thread that keeps the plugin registered: it registers every resource with kubelet's
`kubelet.sock`, and again whenever kubelet restarts. A restarted kubelet deletes our sockets and
creates a new `kubelet.sock`; the thread is woken by inotify on the directory (`watch.DirWatch`),
re-creates any socket of ours that is gone, and registers each resource whose socket is new or
whose registration was with another `kubelet.sock` (told apart by inode). kubelet then opens a
new ListAndWatch stream and gets the full current list as its first answer.

kubelet not running (no `kubelet.sock`, or the directory itself missing) is not an error: the
plugin waits for it. A registration that fails is retried shortly after, and logged.

With `registration="watcher"` the sockets go in `plugins_registry/` instead, where kubelet's plugin
watcher finds them (and finds them again after a restart: kubelet does not wipe that directory);
the thread then only re-creates a socket that disappeared. See `server` for both modes.

The set of resources can change while the agent runs (a config edit, `Discovery`):
`resources_changed` hands the thread the added and removed feeds. A removed resource's server
stops (its ListAndWatch streams end: kubelet sees the endpoint go) and its socket is removed; an
added one gets a server, a socket and a Register like the ones served from the start.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc

from sriovkit.agent.supervisor import OnExit
from sriovkit.deviceplugin.extras import AllocateExtras
from sriovkit.deviceplugin.model import ResourceFeed
from sriovkit.deviceplugin.server import KUBELET_SOCKET, Registration, ResourceServer
from sriovkit.deviceplugin.watch import DirWatch

log = logging.getLogger("sriovkit.agent")

DEFAULT_KUBELET_DIR = Path("/var/lib/kubelet")
PLUGIN_DIR = "device-plugins"
REGISTRY_DIR = "plugins_registry"


class DevicePluginService:
    """kubelet's device plugin API for `feeds`, one gRPC server each, as a supervised service.

    `kubelet_dir` is kubelet's root (`--root-dir`, default /var/lib/kubelet); tests point it at a
    temporary directory. `interval` is the safety-net re-check (the watch normally wakes at once);
    `retry` the pause before a failed registration is tried again; `register_timeout` how long
    one Register call may wait for kubelet. `registration` is "socket" (Register on kubelet.sock)
    or "watcher" (a socket in plugins_registry/ for kubelet's plugin watcher).

    What Allocate does besides answering (see `extras`): `devinfo_dir` is where device-info
    files go (`devinfo.DEFAULT_DEVINFO_DIR` in production; None: none written); `cdi_dir` turns
    CDI on, with its spec files there (`cdi.DEFAULT_CDI_DIR`; None: plain device specs);
    `host_root` is the host whose sysfs names the VFs' RDMA devices (None: no RDMA devices).
    The defaults keep the plain answer and touch no file.
    """

    name = "device-plugin"

    def __init__(
        self,
        feeds: Sequence[ResourceFeed],
        kubelet_dir: Path = DEFAULT_KUBELET_DIR,
        *,
        interval: float = 1.0,
        retry: float = 0.2,
        register_timeout: float = 2.0,
        registration: Registration = "socket",
        devinfo_dir: Path | None = None,
        cdi_dir: Path | None = None,
        host_root: Path | None = None,
    ) -> None:
        names = [f.name for f in feeds]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"resource listed twice: {', '.join(dupes)}")
        if registration not in ("socket", "watcher"):
            raise ValueError(f"registration {registration!r} is not socket or watcher")
        self.registration = registration
        self.kubelet_sock = kubelet_dir / PLUGIN_DIR / KUBELET_SOCKET
        self.plugin_dir = kubelet_dir / (PLUGIN_DIR if registration == "socket" else REGISTRY_DIR)
        self.feeds = list(feeds)
        self.extras = AllocateExtras(devinfo_dir=devinfo_dir, cdi_dir=cdi_dir, host_root=host_root)
        self.servers = [
            ResourceServer(f, self.plugin_dir, mode=registration, extras=self.extras)
            for f in feeds
        ]
        self.interval = interval
        self.retry = retry
        self.register_timeout = register_timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: DirWatch | None = None
        self._changes_lock = threading.Lock()
        self._changes: list[tuple[list[ResourceFeed], list[ResourceFeed]]] = []

    def start(self, on_exit: OnExit) -> None:
        """Listen on every resource's socket (when kubelet's directory is there) and start the
        thread that registers them; returns once the sockets listen."""
        self._stopping.clear()
        for feed in self.feeds:
            feed.subscribe(self.extras.on_update)
        self.extras.start(f.current() for f in self.feeds)
        try:
            if self.plugin_dir.is_dir():
                for server in self.servers:
                    server.bind()
            self._watch = DirWatch(self.plugin_dir)
        except BaseException:
            self._close_all()
            raise

        def run() -> None:
            error: BaseException | None = None
            try:
                self._keep_registered()
            except BaseException as exc:  # handed to the supervisor
                error = exc
                log.error("device plugin stopped: %s", exc)
            if not self._stopping.is_set():
                on_exit(error)

        self._thread = threading.Thread(target=run, name="device-plugin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop registering, end the streams and remove our sockets."""
        self._stopping.set()
        for feed in self.feeds:
            feed.unsubscribe(self.extras.on_update)
        if self._watch is not None:
            self._watch.interrupt()
        if self._thread is not None:
            self._thread.join(self.register_timeout + 5)
            self._thread = None
        self._close_all()

    def _close_all(self) -> None:
        for server in self.servers:
            server.close(grace=0.5)
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _keep_registered(self) -> None:
        assert self._watch is not None
        while not self._stopping.is_set():
            self._apply_changes()
            pending = self.reconcile()
            self._watch.wait(self.retry if pending else self.interval)

    def resources_changed(
        self, added: Sequence[ResourceFeed], removed: Sequence[ResourceFeed]
    ) -> None:
        """Serve `added` and stop serving `removed` (`Discovery.subscribe_resources`): done by
        the registration thread, which this wakes, so the caller never waits for kubelet."""
        with self._changes_lock:
            self._changes.append((list(added), list(removed)))
        watch = self._watch
        if watch is not None:
            watch.interrupt()

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        for added, removed in changes:
            for feed in removed:
                self._retire(feed.name)
            for feed in added:
                self._serve(feed)

    def _retire(self, name: str) -> None:
        server = next((s for s in self.servers if s.feed.name == name), None)
        if server is None:
            return
        self.servers.remove(server)
        self.feeds.remove(server.feed)
        server.feed.unsubscribe(self.extras.on_update)
        server.close(grace=0.5)
        # Its CDI spec only now: until the server stopped, an Allocate could still name it.
        self.extras.retire(f.name for f in self.feeds)
        log.info("device plugin: %s: no longer in the config: stopped, %s removed", name,
                 server.path)  # fmt: skip

    def _serve(self, feed: ResourceFeed) -> None:
        if any(s.feed.name == feed.name for s in self.servers):
            return
        try:
            server = ResourceServer(
                feed, self.plugin_dir, mode=self.registration, extras=self.extras
            )
        except ValueError as exc:  # a socket path too long for sun_path: the others serve on
            log.error("device plugin: %s: cannot serve: %s", feed.name, exc)
            return
        self.feeds.append(feed)
        self.servers.append(server)
        feed.subscribe(self.extras.on_update)
        self.extras.on_update(feed.current())
        log.info("device plugin: %s: new in the config: serving it", feed.name)
        # reconcile(), next, listens on its socket and registers it.

    def reconcile(self) -> bool:
        """One pass: re-create lost sockets, register where needed. True if something failed
        and should be retried soon."""
        if not self.plugin_dir.is_dir():
            return False
        pending = False
        for server in self.servers:
            if self._stopping.is_set():
                return False
            if not server.socket_ok():
                try:
                    server.bind()
                    log.info("device plugin: %s: listening on %s", server.feed.name, server.path)
                except (OSError, RuntimeError) as exc:
                    log.warning("device plugin: %s: cannot listen: %s", server.feed.name, exc)
                    pending = True
                    continue
            if self.registration == "watcher":
                continue  # kubelet's plugin watcher calls us
            kubelet = _identity(self.kubelet_sock)
            if kubelet is None or server.registered_with == kubelet:
                continue
            try:
                server.register(self.kubelet_sock, self.register_timeout)
            except grpc.RpcError as exc:
                log.warning(
                    "device plugin: %s: Register failed: %s", server.feed.name,
                    exc.details() if hasattr(exc, "details") else exc,
                )
                pending = True
                continue
            server.registered_with = kubelet
            log.info("device plugin: %s: registered with kubelet", server.feed.name)
        return pending


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
