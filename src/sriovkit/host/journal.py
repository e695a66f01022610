"""The pending-DEL journal on disk: `<state dir>/pending-del/`, read and emptied by the agent.

The shims write it (`cni/shim.c`, `cni/shim.py`; format in `model/journal.py`) holding
`locks/pending-del.lock` shared; the agent reads it holding that lock exclusively, after it
listens on its socket and before it serves: a shim that found no agent tries it once more under
the shared lock, so every entry is either written before the agent's scan or never written (the
DEL went to the agent instead).

Nothing here creates the state directory: without it (or without `pending-del/`) nothing is
pending. Every open goes through directory fds opened with O_NOFOLLOW; an entry that is a
symlink, not a regular file, too large, or unreadable is refused with its reason and left in
place (never followed, never run). Temp files left by a shim killed mid-write are swept like
the state store's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.host.state import JOURNAL_LOCK, StateStore
from sriovkit.host.statefiles import sweep_temps
from sriovkit.model.journal import MAX_ENTRY, SUFFIX, BadEntry, PendingDel, decode_entry

JOURNAL_DIR = "pending-del"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Refused:
    """A journal file that was not run, and why."""

    name: str
    why: str


class Journal:
    """The pending-DEL journal of the state directory `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / JOURNAL_DIR

    def _open(self, path: Path, dfd: int | None = None) -> int | None:
        try:
            return os.open(path.name if dfd is not None else path, _DIR_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in {errno.ELOOP, errno.ENOTDIR}:
                raise HostError(f"{path} is a symlink or not a directory; refusing") from None
            raise HostError(f"cannot open {path}: {exc.strerror}", exc.errno) from None

    @contextlib.contextmanager
    def held(self) -> Iterator[int | None]:
        """The journal directory's fd (None: nothing pending) under the exclusive lock."""
        root = self._open(self.state_dir)
        if root is None:
            yield None
            return
        try:
            journal = self._open(self.dir, root)
        finally:
            os.close(root)
        if journal is None:
            yield None
            return
        try:
            # The state store's lock file, under its locks/ (made if a hand-made tree lacks it).
            with StateStore(self.state_dir).lock_journal():
                yield journal
        finally:
            os.close(journal)

    def entries(self, dfd: int) -> tuple[list[PendingDel], list[Refused]]:
        """The pending DELs in the journal open as `dfd`, and the files refused, by name."""
        names = sorted(os.listdir(dfd))
        temps = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
        if temps:
            sweep_temps(dfd, temps)
        pending: list[PendingDel] = []
        refused: list[Refused] = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                pending.append(decode_entry(name, self._read(dfd, name)))
            except (BadEntry, HostError) as exc:
                refused.append(Refused(name, str(exc)))
        return pending, refused

    def _read(self, dfd: int, name: str) -> bytes:
        path = self.dir / name
        if not name.endswith(SUFFIX):
            raise BadEntry(f"{path} is not a pending DEL (*{SUFFIX})")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(name, flags, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise HostError(f"{path} is a symlink; refusing") from None
            raise HostError(f"cannot read {path}: {exc.strerror}", exc.errno) from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise HostError(f"{path} is not a regular file; refusing")
            data = f.read(MAX_ENTRY + 1)
        if len(data) > MAX_ENTRY:
            raise HostError(f"{path} is larger than {MAX_ENTRY} bytes; refusing")
        return data

    def remove(self, dfd: int, name: str) -> None:
        """Delete a replayed entry, durably."""
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise HostError(f"cannot remove {self.dir / name}: {exc.strerror}", exc.errno) from None
        os.fsync(dfd)


__all__ = ["JOURNAL_DIR", "JOURNAL_LOCK", "Journal", "Refused"]
