"""`ensure_lab(cache)`: have all the lab guest needs, cached so that a second call costs seconds.

What it needs: QEMU >= 8.0 with the `igb` device (installed from Debian's archive:
bookworm-backports on Debian 12, the release itself on 13+), kmod's `depmod`, a Debian guest kernel
and its modules (downloaded and unpacked into the cache: the host's /boot is never touched),
busybox-static (unpacked into the cache too) and the initramfs built from them. `lab.json` in the
cache records what was set up.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sriovkit.host.atomicfile import write_file
from sriovkit.lab import debian, initramfs
from sriovkit.lab.errors import LabUnavailable

Log = Callable[[str], None]

DEFAULT_CACHE = Path("/var/cache/sriovkit-lab")
MANIFEST = "lab.json"
# Bump when the cache layout or the initramfs contents change: older caches are then rebuilt.
FORMAT = 3
QEMU = "qemu-system-x86_64"
# Guest kernel meta packages, most wanted first: 6.12 is what the lab facts were measured with.
KERNEL_META = ("linux-image-6.12-amd64", "linux-image-amd64")


@dataclass(frozen=True, slots=True)
class LabAssets:
    """Where everything the runner needs lives."""

    cache: Path
    qemu: Path
    kernel: Path
    kernel_release: str
    modules: Path
    initramfs: Path


def default_cache() -> Path:
    """`$SRIOVKIT_LAB_CACHE`, else /var/cache/sriovkit-lab (outside any clone: CI runs share it)."""
    env = os.environ.get("SRIOVKIT_LAB_CACHE")
    return Path(env) if env else DEFAULT_CACHE


def _quiet(_: str) -> None:
    return None


def qemu_has_igb(qemu: Path) -> bool:
    """True when this QEMU binary offers the emulated 82576 (`-device igb`, QEMU >= 8.0)."""
    try:
        out = subprocess.run(
            [str(qemu), "-nodefaults", "-machine", "none", "-device", "help"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r'^name "igb"', out, re.MULTILINE) is not None


def find_qemu() -> Path | None:
    """The `qemu-system-x86_64` on PATH if it has igb, else None."""
    found = shutil.which(QEMU)
    if found and qemu_has_igb(Path(found)):
        return Path(found)
    return None


def ensure_qemu(log: Log, install: bool = True) -> Path:
    """A QEMU with igb, installing it from Debian's archive when missing and allowed."""
    qemu = find_qemu()
    if qemu:
        return qemu
    why = f"no {QEMU} with the igb device (QEMU >= 8.0) is installed"
    codename = debian.debian_codename()
    if not install:
        raise LabUnavailable(f"{why}; run `sriovkit lab setup` as root to install it")
    if codename is None:
        raise LabUnavailable(f"{why}, and this is not Debian: install QEMU >= 8.0 by hand")
    if not debian.can_install():
        raise LabUnavailable(f"{why}; installing it with apt-get needs root")
    if codename == "bookworm":
        debian.enable_backports(codename, log)
        debian.apt_update(log)
        debian.apt_install(["qemu-system-x86"], log, release=f"{codename}-backports")
    else:
        debian.apt_update(log)
        debian.apt_install(["qemu-system-x86"], log)
    qemu = find_qemu()
    if qemu is None:
        raise LabUnavailable(f"{why}: installed qemu-system-x86 from {codename} has no igb device")
    return qemu


def ensure_depmod(log: Log, install: bool = True) -> Path:
    """kmod's depmod (it also gives the guest `modprobe`, since the guest runs the host's /sbin)."""
    found = shutil.which("depmod") or shutil.which("depmod", path="/usr/sbin:/sbin")
    if found:
        return Path(found)
    if not (install and debian.can_install()):
        raise LabUnavailable("depmod (Debian package kmod) is missing; installing it needs root")
    debian.apt_install(["kmod"], log)
    found = shutil.which("depmod", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise LabUnavailable("depmod still missing after installing kmod")
    return Path(found)


def _download(package: str, dest: Path, log: Log) -> Path:
    try:
        return debian.download(package, dest, log)
    except LabUnavailable:
        # A kernel update in the archive removes the old .deb: refresh the lists once and retry.
        if not debian.can_install():
            raise
        debian.apt_update(log)
        return debian.download(package, dest, log)


def _kernel_package(log: Log) -> str:
    for meta in KERNEL_META:
        if debian.candidate_version(meta, log) is None:
            continue
        for dep in debian.depends_of(meta, log):
            if dep.startswith("linux-image-"):
                return dep
    raise LabUnavailable(
        f"no guest kernel package in the archive (looked for {', '.join(KERNEL_META)})"
    )


def _fetch_kernel(cache: Path, depmod: Path, log: Log) -> tuple[Path, str, Path]:
    package = _kernel_package(log)
    root = cache / "kernel" / package
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        deb = _download(package, cache / "debs", log)
        debian.extract(deb, root, log)
        (root / ".complete").touch()
        deb.unlink()  # 100+ MB that the unpacked tree makes useless
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabUnavailable(f"{package} holds no boot/vmlinuz-*")
    release = kernels[-1].name.removeprefix("vmlinuz-")
    moddir = root / "lib" / "modules" / release
    if not moddir.is_dir():
        moddir = root / "usr" / "lib" / "modules" / release
    if not (moddir / "modules.dep").exists():
        log(f"depmod for {release}")
        subprocess.run(
            [str(depmod), "-b", str(moddir.parents[2]), release],
            check=True, capture_output=True, timeout=600,
        )
    return kernels[-1], release, moddir


def _fetch_busybox(cache: Path, log: Log) -> Path:
    root = cache / "busybox"
    for rel in ("bin/busybox", "usr/bin/busybox"):
        if (root / rel).exists():
            return root / rel
    deb = _download("busybox-static", cache / "debs", log)
    debian.extract(deb, root, log)
    for rel in ("bin/busybox", "usr/bin/busybox"):
        if (root / rel).exists():
            return root / rel
    raise LabUnavailable(f"busybox-static unpacked into {root} holds no busybox binary")


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    # Two set-ups at once (a developer and CI on the same machine) must not unpack over each other.
    with (cache / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _load_manifest(cache: Path) -> LabAssets | None:
    try:
        data = json.loads((cache / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT:
        return None
    try:
        assets = LabAssets(
            cache=cache, qemu=Path(data["qemu"]), kernel=Path(data["kernel"]),
            kernel_release=data["kernel_release"], modules=Path(data["modules"]),
            initramfs=Path(data["initramfs"]),
        )
    except (KeyError, TypeError):
        return None
    if not all(p.exists() for p in (assets.kernel, assets.modules, assets.initramfs)):
        return None
    return assets


def ensure_lab(cache: Path, *, install: bool = True, log: Log = _quiet) -> LabAssets:
    """Set the lab up in `cache` (or find it already set up) and say where everything is.

    Idempotent. Raises LabUnavailable, saying what is missing, when something cannot be had.
    """
    cache = Path(cache).resolve()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabUnavailable(f"cannot create the lab cache {cache}: {exc.strerror}") from exc
    started = time.monotonic()
    with _locked(cache):
        qemu = ensure_qemu(log, install)
        assets = _load_manifest(cache)
        if assets is not None and assets.qemu == qemu:
            return assets
        depmod = ensure_depmod(log, install)
        kernel, release, moddir = _fetch_kernel(cache, depmod, log)
        busybox = _fetch_busybox(cache, log)
        image = cache / f"initramfs-{release}.cpio.gz"
        log(f"building {image.name}")
        initramfs.build(moddir, busybox, image)
        assets = LabAssets(cache, qemu, kernel, release, moddir, image)
        record = {k: str(v) for k, v in asdict(assets).items()}
        text = json.dumps({"format": FORMAT, **record}, indent=2) + "\n"
        write_file(cache / MANIFEST, text.encode())
        log(f"lab set up in {cache} ({time.monotonic() - started:.1f} s)")
        return assets
