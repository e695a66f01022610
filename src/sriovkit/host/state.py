"""The CNI plugin's state on disk: attachment and allocation records and one lock per VF.

Layout under the state directory (0700):

    attachments/<containerID>@<ifname>.json   one per (container id, ifname)
    allocations/<DDDD:BB:SS.F>.json           one per VF handed out
    locks/<DDDD:BB:SS.F>.lock                 flock()ed by ADD, DEL, CHECK and GC
    locks/attachment-<NN>.lock                one of 64 stripes by (container id, ifname):
                                              ADD, DEL and CHECK of one attachment in order
    locks/pod-<NN>.lock                       one of 64 stripes by pod (namespace/name): ADDs
                                              choosing among a pod's devices, one at a time
    locks/pending-del.lock                    the pending-DEL journal's (`host/journal.py`)

The node agent and the in-process fallback share this directory, so everything that matters is
on disk and safe from a process crash: writes go to a temp file in the same directory and are
rename()d over the record, so a reader sees the old record or the new one, never a torn one (a
temp file left by a writer killed mid-write is deleted when records are listed:
`statefiles.sweep_temps`). Files are 0600.

No fsync on write or delete: a record describes kernel state (a VF netdev in a pod netns, its
attributes) that dies with a reboot, so power-loss durability buys nothing and each fsync costs
milliseconds on the ADD/DEL path; a killed process loses nothing (the page cache outlives it).
An attachment record carries its boot's id (`host/boot.py`): one of an earlier boot is released
without restoring anything from it, and fails CHECK (ops/cni/lifecycle.py). A record that cannot
be decoded (a power loss may leave one empty or truncated) last modified before this boot
started is an earlier boot's leftover: reading it removes it and answers "no record"; one
modified during this boot stays an error naming the file (only tampering makes one).

Every open goes through a directory fd opened with O_NOFOLLOW, so a symlink planted as a
record, a sub-directory or the state directory itself is refused rather than followed (the
directory may be world-visible on a badly set up node).

Lock files are never deleted: unlinking a lock file while another process waits on it would let
two holders lock two different inodes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec

from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.atomicfile import write_at
from sriovkit.host.boot import PROC, predates_boot
from sriovkit.host.statefiles import discard_leftover, flock_within, sweep_temps
from sriovkit.host.staterecords import (
    CorruptRecord,
    R,
    attachment_file_name,
    decode_record,
    key_of,
    pci_name,
)
from sriovkit.model.attachment import AllocationRecord, Attachment, AttachmentKey
from sriovkit.model.pci import PciAddress

DEFAULT_STATE_DIR = Path("/var/lib/sriovkit")
STATE_DIR_ENV = "SRIOVKIT_STATE_DIR"

_ATTACH, _ALLOC, _LOCKS = "attachments", "allocations", "locks"
ATTACHMENT_STRIPES = 64
"""How many lock files the attachments share (see `StateStore.lock_attachment`)."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
JOURNAL_LOCK = "pending-del.lock"
"""The lock the shims hold shared while they journal a DEL, the agent exclusively to replay."""
_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"
"""Age (s) after which an unlocked temp file in the state dir is a dead writer's leftover."""


def default_state_dir(env: Mapping[str, str]) -> Path:
    """`$SRIOVKIT_STATE_DIR` if set (must be absolute), else /var/lib/sriovkit."""
    text = env.get(STATE_DIR_ENV, "")
    if not text:
        return DEFAULT_STATE_DIR
    path = Path(text)
    if not path.is_absolute():
        raise InvalidInput(STATE_DIR_ENV, f"{text!r} is not an absolute path")
    return path


class StateStore:
    """Records and per-VF locks under `dir` (see the module doc); creates the tree on first use."""

    def __init__(self, dir: Path, proc: Path = PROC) -> None:
        self.dir = Path(dir)
        self.proc = proc  # where this boot's start time is read (`host/boot.py`)

    # --- directories ---------------------------------------------------------------------

    def _open_root(self) -> int:
        try:
            return os.open(self.dir, _DIR_FLAGS)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._dir_error(self.dir, exc) from None
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.dir, 0o700)
        try:
            fd = os.open(self.dir, _DIR_FLAGS)
        except OSError as exc:
            raise self._dir_error(self.dir, exc) from None
        os.fchmod(fd, 0o700)  # mkdir's mode is filtered through the umask
        return fd

    @staticmethod
    def _dir_error(path: Path, exc: OSError) -> HostError:
        if exc.errno in {errno.ELOOP, errno.ENOTDIR}:
            return HostError(f"state directory {path} is a symlink or not a directory; refusing")
        return HostError(f"cannot open state directory {path}: {exc.strerror}", exc.errno)

    @contextlib.contextmanager
    def _subdir(self, name: str) -> Iterator[int]:
        root = self._open_root()
        try:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=root)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=root)
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=root)
                except OSError as exc:
                    raise self._dir_error(self.dir / name, exc) from None
                os.fchmod(fd, 0o700)
                os.fsync(root)
            except OSError as exc:
                raise self._dir_error(self.dir / name, exc) from None
        finally:
            os.close(root)
        try:
            yield fd
        finally:
            os.close(fd)

    # --- files ---------------------------------------------------------------------------

    def _write(self, sub: str, name: str, data: bytes) -> None:
        path = self.dir / sub / name
        with self._subdir(sub) as dfd:
            try:
                st = os.lstat(name, dir_fd=dfd)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise HostError(f"state record {path} is not a regular file; refusing")
            try:
                # The temp file's flock is held until the rename is done: it tells
                # `sweep_temps` the writer lives. Not durable: see the module doc.
                write_at(dfd, name, data, mode=0o600, temp=_temp(name), hold_lock=True,
                         durable=False)  # fmt: skip
            except OSError as exc:
                raise HostError(
                    f"cannot write state record {path}: {exc.strerror}", exc.errno
                ) from None

    def _read(self, sub: str, name: str) -> tuple[bytes, os.stat_result] | None:
        path = self.dir / sub / name
        with self._subdir(sub) as dfd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise HostError(f"state record {path} is a symlink; refusing") from None
                raise HostError(
                    f"cannot read state record {path}: {exc.strerror}", exc.errno
                ) from None
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise HostError(f"state record {path} is not a regular file; refusing")
                return f.read(), st

    def _load(self, sub: str, name: str, kind: type[R]) -> R | None:
        """The record `name`; None if there is none or it is an earlier boot's unreadable
        leftover, which is removed (see the module doc)."""
        found = self._read(sub, name)
        if found is None:
            return None
        data, st = found
        try:
            return decode_record(self.dir / sub / name, data, kind)
        except CorruptRecord:
            if not predates_boot(st.st_mtime, self.proc):
                raise
        with self._subdir(sub) as dfd:
            discard_leftover(dfd, name, st, _temp(name))
        return None

    def _delete(self, sub: str, name: str) -> bool:
        with self._subdir(sub) as dfd:
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                return False
            except OSError as exc:
                path = self.dir / sub / name
                raise HostError(
                    f"cannot delete state record {path}: {exc.strerror}", exc.errno
                ) from None
            return True  # no directory fsync: see the module doc

    def _names(self, sub: str) -> list[str]:
        with self._subdir(sub) as dfd:
            names = os.listdir(dfd)
            temps = [n for n in names if n.startswith(_TMP_PREFIX) and n.endswith(_TMP_SUFFIX)]
            if temps:
                sweep_temps(dfd, temps)
            return sorted(n for n in names if n.endswith(".json") and not n.startswith(_TMP_PREFIX))

    # --- attachment records --------------------------------------------------------------

    def write_attachment(self, record: Attachment) -> None:
        """Create or atomically replace the record of `record.key`."""
        self._write(_ATTACH, attachment_file_name(record.key), msgspec.json.encode(record))

    def read_attachment(self, key: AttachmentKey) -> Attachment | None:
        """The record of `key`, or None if there is none (HostError if it is unreadable; an
        earlier boot's unreadable one is removed and counts as none: see the module doc)."""
        name = attachment_file_name(key)
        record = self._load(_ATTACH, name, Attachment)
        if record is None:
            return None
        if record.key != key:
            raise HostError(f"state record {self.dir / _ATTACH / name} belongs to {record.key}")
        return record

    def delete_attachment(self, key: AttachmentKey) -> bool:
        """Remove the record of `key` (only once the VF is back); False if it was not there."""
        return self._delete(_ATTACH, attachment_file_name(key))

    def check_writable(self) -> None:
        """Raise HostError unless a file can be created and written in the state directory.

        One probe file of a fixed name (`locks/.writable`, kept like the lock files), so a
        probe killed half-way never leaves one more file behind.
        """
        with self._subdir(_LOCKS) as dfd:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(".writable", flags, 0o600, dir_fd=dfd)
                try:
                    os.write(fd, b"1")
                finally:
                    os.close(fd)
            except OSError as exc:
                raise HostError(
                    f"state directory {self.dir} is not writable: {exc.strerror}", exc.errno
                ) from None

    def attachment_keys(self) -> list[AttachmentKey]:
        """Keys of all attachment records (files with foreign names are skipped)."""
        keys = (key_of(n) for n in self._names(_ATTACH))
        return [k for k in keys if k is not None]

    def attachments(self) -> Iterator[Attachment]:
        """All attachment records (for GC); one deleted meanwhile is skipped."""
        for key in self.attachment_keys():
            record = self.read_attachment(key)
            if record is not None:
                yield record

    # --- allocation records --------------------------------------------------------------

    def write_allocation(self, record: AllocationRecord) -> None:
        """Create or atomically replace the allocation record of `record.device_id`."""
        self._write(_ALLOC, f"{pci_name(record.device_id)}.json", msgspec.json.encode(record))

    def read_allocation(self, pci: PciAddress | str) -> AllocationRecord | None:
        """Who holds the VF at `pci`, or None."""
        name = f"{pci_name(pci)}.json"
        record = self._load(_ALLOC, name, AllocationRecord)
        if record is None:
            return None
        if record.device_id != pci_name(pci):
            raise HostError(f"state record {self.dir / _ALLOC / name} is for {record.device_id}")
        return record

    def delete_allocation(self, pci: PciAddress | str) -> bool:
        """Release the VF at `pci`; False if it was not allocated."""
        return self._delete(_ALLOC, f"{pci_name(pci)}.json")

    def allocations(self) -> Iterator[AllocationRecord]:
        """All allocation records."""
        for name in self._names(_ALLOC):
            pci = PciAddress.try_parse(name[: -len(".json")])
            if pci is None:
                continue
            record = self.read_allocation(pci)
            if record is not None:
                yield record

    # --- locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock_vf(self, pci: PciAddress | str, timeout: float | None = None) -> Iterator[None]:
        """Hold the VF's exclusive lock for the `with` body.

        `timeout` None waits forever; otherwise Busy (CNI code 11, "try again later") after
        `timeout` seconds. flock() locks belong to the open file, so two threads of the agent
        exclude each other too, and a holder that dies releases the lock with its last fd.
        """
        with self._lock(f"{pci_name(pci)}.lock", f"VF {pci}", timeout):
            yield

    @contextlib.contextmanager
    def lock_attachment(self, key: AttachmentKey, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock of attachment `key` (one of `ATTACHMENT_STRIPES` shared files).

        Taken before the VF's lock by ADD, DEL and CHECK, so that an ADD and a DEL of the same
        attachment run one after the other, never interleaved: a DEL that finds no record
        cannot be overtaken by an ADD of the same key that had already decided to go ahead.
        A fixed set of stripes, because lock files are never deleted (see the module doc) and
        container ids never repeat; two keys sharing a stripe merely wait for each other.
        """
        with self._lock(_stripe("attachment", str(key)), f"attachment {key}", timeout):
            yield

    @contextlib.contextmanager
    def lock_pod(self, namespace: str, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock of pod `namespace/name` (one of `ATTACHMENT_STRIPES` shared files).

        Taken, before any other lock, by an ADD that chooses its VF among the devices kubelet
        gave the pod (a `resourceName` config): two ADDs of one pod then choose one after the
        other, and the second sees the first one's allocation (ops/cni/vf/podres.py).
        """
        with self._lock(_stripe("pod", f"{namespace}/{name}"), f"pod {namespace}/{name}", timeout):
            yield

    @contextlib.contextmanager
    def lock_journal(self) -> Iterator[None]:
        """Hold the pending-DEL journal's lock exclusively (the agent's replay)."""
        with self._lock(JOURNAL_LOCK, "the pending-DEL journal", None):
            yield

    @contextlib.contextmanager
    def _lock(self, name: str, what: str, timeout: float | None) -> Iterator[None]:
        with self._subdir(_LOCKS) as dfd:
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o600, dir_fd=dfd)
            except OSError as exc:
                path = self.dir / _LOCKS / name
                if exc.errno == errno.ELOOP:
                    raise HostError(f"lock file {path} is a symlink; refusing") from None
                raise HostError(
                    f"cannot open lock file {path}: {exc.strerror}", exc.errno
                ) from None
        try:
            flock_within(fd, what, timeout)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _temp(name: str) -> str:
    """A temp name for `name`, the kind `sweep_temps` looks for (prefix and suffix)."""
    return f"{_TMP_PREFIX}{name}.{os.getpid()}.{time.monotonic_ns()}{_TMP_SUFFIX}"


def _stripe(prefix: str, text: str) -> str:
    digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return f"{prefix}-{int.from_bytes(digest, 'big') % ATTACHMENT_STRIPES:02d}.lock"


__all__ = [
    "DEFAULT_STATE_DIR",
    "JOURNAL_LOCK",
    "STATE_DIR_ENV",
    "StateStore",
    "attachment_file_name",
    "default_state_dir",
]
