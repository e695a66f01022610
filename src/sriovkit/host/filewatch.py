"""A config file's changes as host events (`config`), from inotify on its directories.

A file can change three ways, and a watch on the file itself sees only the first:
- written in place (an editor's save, `cat > config.json`): IN_MODIFY / IN_CLOSE_WRITE;
- replaced by a rename (most editors, `host/atomicfile.py`): IN_MOVED_TO of its name in the
  directory; the old inode, and any watch on it, is gone;
- a Kubernetes ConfigMap volume: `config.json -> ..data/config.json`, `..data -> ..2026_12_03...`;
  kubelet writes the new version into a new timestamped directory, points `..data_tmp` at it and
  renames `..data_tmp` over `..data` (one atomic rename), then deletes the old directory. The file
  name itself never changes: only IN_MOVED_TO of `..data` in the directory says so.

So `FileWatch` watches the file's directory, and the directory the file resolves into when that is
another one (a symlink into a directory elsewhere), re-arming both after every event as the
symlinks move (a directory that is gone is waited for from its nearest existing ancestor). Each
batch of inotify events becomes one `config` event: the reader compares the file (inode, mtime,
size) before acting, so a change to a neighbour costs a stat, not a reload.
"""

from __future__ import annotations

import os
from pathlib import Path

from sriovkit.host.events import Event
from sriovkit.host.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Inotify,
)

_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
    | IN_DELETE_SELF | IN_MOVE_SELF
)  # fmt: skip


def _existing(path: Path) -> tuple[Path, tuple[int, int]] | None:
    """`path`, or when it is gone (a directory deleted to be made again) its nearest existing
    ancestor, whose IN_CREATE then says it is back; with its (device, inode)."""
    for d in (path, *path.parents):
        try:
            st = os.stat(d)
        except OSError:
            continue
        return d, (st.st_dev, st.st_ino)
    return None


class FileWatch:
    """The `EventSource` of one file's changes (see the module docstring). Raises OSError where
    inotify is missing: the caller then polls the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(os.path.abspath(path))
        self._inotify = Inotify()
        self._watched: dict[Path, tuple[tuple[int, int], int]] = {}
        self._arm()

    def _dirs(self) -> list[Path]:
        own = self.path.parent
        target = Path(os.path.realpath(self.path)).parent
        return [own] if target == own else [own, target]

    def _arm(self) -> None:
        """Watch the directories the file is in now; drop watches on directories it left."""
        wanted: dict[Path, tuple[int, int]] = {}
        for d in self._dirs():
            found = _existing(d)
            if found is not None:
                wanted[found[0]] = found[1]
        for d, (ident, wd) in list(self._watched.items()):
            if wanted.get(d) != ident:
                self._inotify.rm_watch(wd)
                del self._watched[d]
        for d, ident in wanted.items():
            if d not in self._watched:
                added = self._inotify.add_watch(d, _MASK)
                if added is not None:
                    self._watched[d] = (ident, added)

    @property
    def watched(self) -> list[Path]:
        """The directories watched now."""
        return list(self._watched)

    def fileno(self) -> int:
        """Readable when the file's directories changed."""
        return self._inotify.fileno()

    def read(self) -> list[Event]:
        """One `config` event for whatever changed since the last read (none: nothing did)."""
        if not self._inotify.read():
            return []
        self._arm()
        return [Event("config", str(self.path))]

    def close(self) -> None:
        """Release the inotify instance."""
        self._inotify.close()


__all__ = ["FileWatch"]
