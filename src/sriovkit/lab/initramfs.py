"""A small initramfs for the lab guest: busybox, a few modules, and an init that mounts the host.

The guest runs the host's own userspace: init mounts the host's `/` read-only over virtio-9p, lays a
tmpfs overlay on top (guest writes are thrown away), mounts the read-write result share and
`switch_root`s into the host's `/bin/sh` running the stage-2 script the runner left in that share.

The archive is written here in the kernel's `newc` cpio format, so building it needs neither cpio
nor root (device nodes are plain archive entries).
"""

from __future__ import annotations

import gzip
import lzma
import os
import stat
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from sriovkit.host.atomicfile import write_file
from sriovkit.lab.errors import LabUnavailable

# What init needs before switch_root (9p root, overlay, the virtio console), plus the NIC drivers:
# loading igb/igbvf here keeps the guest working on hosts without kmod's modprobe.
INITRAMFS_MODULES = (
    "virtio_pci", "virtio_console", "netfs", "9pnet", "9pnet_virtio", "9p", "overlay",
    "igb", "igbvf",
)

# The tag names the runner gives to QEMU's two virtio-9p exports.
ROOT_TAG = "hostroot"
SHARE_TAG = "labshare"
SHARE_MOUNT = "/run/sriovkit-lab"
STAGE2 = f"{SHARE_MOUNT}/stage2.sh"

# Busybox applets the init script uses (linked explicitly: `--install` needs /proc/self/exe).
_APPLETS = ("sh", "mount", "umount", "mkdir", "insmod", "switch_root", "cat", "echo", "sleep")

_INIT = """#!/bin/sh
# sriovkit lab guest, stage 1: reach the host's root over 9p and hand over to stage 2.
die() {{ echo "sriovkit-lab init: $*"; echo b > /proc/sysrq-trigger; sleep 5; }}
mount -t devtmpfs dev /dev
mount -t proc proc /proc
for m in $(cat /modules.order); do
    insmod /modules/$m.ko || echo "sriovkit-lab init: insmod $m failed"
done
mkdir -p /host /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose {root_tag} /host \\
    || die "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \\
    || die "cannot mount the overlay root"
mount -t tmpfs -o mode=0755 run /newroot/run
mkdir -p /newroot{share}
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 {share_tag} /newroot{share} \\
    || die "cannot mount the result share"
[ -r /newroot{stage2} ] || die "no stage-2 script in the share"
mount --move /dev /newroot/dev
umount /proc
exec switch_root /newroot /bin/sh {stage2}
"""

# The kernel opens /dev/console before running init; without the node init has no output.
_CONSOLE_RDEV = os.makedev(5, 1)


def init_script() -> str:
    """The stage-1 init (busybox sh)."""
    return _INIT.format(
        root_tag=ROOT_TAG, share_tag=SHARE_TAG, share=SHARE_MOUNT, stage2=STAGE2
    )


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def module_order(moddir: Path, wanted: Iterable[str]) -> list[str]:
    """Relative paths of the modules in `wanted` and their dependencies, dependencies first.

    Read from depmod's `modules.dep`; names listed in `modules.builtin` are built into the kernel
    and need no loading.
    """
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[_module_name(target)] = (target, rest.split())
    builtin_file = moddir / "modules.builtin"
    builtin = (
        {_module_name(x) for x in builtin_file.read_text().split()}
        if builtin_file.exists()
        else set()
    )
    order: list[str] = []

    def visit(name: str) -> None:
        if name in builtin or any(_module_name(p) == name for p in order):
            return
        if name not in deps:
            raise LabUnavailable(f"guest kernel module {name} not found in {moddir}")
        target, needs = deps[name]
        # modules.dep lists every (transitive) dependency; the last one is the deepest.
        for dep in reversed(needs):
            visit(_module_name(dep))
        order.append(target)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def read_module(path: Path) -> bytes:
    """A module's ELF bytes, decompressed (busybox insmod may lack xz/zstd support)."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        try:
            return subprocess.run(
                ["zstd", "-dcq"], input=data, capture_output=True, check=True
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise LabUnavailable(f"cannot decompress {path.name}: needs the zstd tool") from exc
    return data


def _newc(name: str, mode: int, data: bytes = b"", rdev: int = 0, ino: int = 0) -> bytes:
    fields = (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0,
        os.major(rdev), os.minor(rdev), len(name) + 1, 0,
    )
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    raw = header + name.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    raw += data + b"\0" * (-len(data) % 4)
    return raw


def _entries(
    busybox: Path, modules: list[tuple[str, bytes]]
) -> Iterator[tuple[str, int, bytes, int]]:
    for d in ("bin", "dev", "proc", "sys", "modules", "host", "rw", "newroot", "run"):
        yield d, stat.S_IFDIR | 0o755, b"", 0
    yield "dev/console", stat.S_IFCHR | 0o600, b"", _CONSOLE_RDEV
    yield "bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0
    for applet in _APPLETS:
        yield f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox", 0
    yield "init", stat.S_IFREG | 0o755, init_script().encode(), 0
    names = []
    for name, blob in modules:
        names.append(name)
        yield f"modules/{name}.ko", stat.S_IFREG | 0o644, blob, 0
    yield "modules.order", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode(), 0


def build(
    moddir: Path, busybox: Path, out: Path, wanted: Iterable[str] = INITRAMFS_MODULES
) -> Path:
    """Write the gzip'd initramfs for the kernel with modules in `moddir` to `out`, atomically."""
    modules = [
        (_module_name(rel), read_module(moddir / rel)) for rel in module_order(moddir, wanted)
    ]
    parts = [
        _newc(name, mode, data, rdev, ino)
        for ino, (name, mode, data, rdev) in enumerate(_entries(busybox, modules), start=1)
    ]
    parts.append(_newc("TRAILER!!!", 0))
    write_file(out, gzip.compress(b"".join(parts), compresslevel=1))
    return out
