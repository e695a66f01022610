"""A stand-in for the agent's Unix socket, for tests of the shim's side of the protocol."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serving(on_connection: Callable[[socket.socket], None], prefix: str = "skfa") -> Iterator[Path]:
    """A listening socket whose every accepted connection goes to `on_connection`, then closes.

    Served by one thread until the block ends. The directory is short and under /tmp: a Unix
    socket path is limited to 108 bytes, which pytest's tmp_path can exceed.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path = base / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # shut down: the block ended
                return
            with conn:
                on_connection(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(10)
        shutil.rmtree(base, ignore_errors=True)


def read_request(conn: socket.socket) -> bytes:
    """The whole request, as the shim sends it (all of it, then a half-close)."""
    data = b""
    while chunk := conn.recv(1 << 16):
        data += chunk
    return data
