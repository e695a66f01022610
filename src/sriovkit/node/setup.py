"""`ensure_node(cache)`: have everything the node tier needs, cached so a second call costs seconds.

What it needs: Debian's containerd and runc (and strace, with which the tier checks where the
daemons connect), Debian's CNI plugins (host-local, loopback), a kubelet and the pause image.
The kubelet and pause binaries are built from Debian 12's `kubernetes` source package
(`build.py`): `deb-src` lines for the archive hosts already configured are added when missing,
the source is fetched with `apt-get source`, built, and only the two binaries are kept: the
311 MB tree and the ~1.2 GB Go build cache are deleted afterwards. `node.json` in the cache
records what was set up; a cached kubelet is rebuilt only when the format changes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sriovkit.errors import LabUnavailable, NodeUnavailable
from sriovkit.host.atomicfile import write_file
from sriovkit.lab import debian
from sriovkit.node import build
from sriovkit.node.oci import Entry, write_archive

Log = Callable[[str], None]

DEFAULT_CACHE = Path("/var/cache/sriovkit-node")
MANIFEST = "node.json"
# Bump when the cache layout or how the binaries are built changes: older caches are rebuilt.
FORMAT = 1
PAUSE_IMAGE = "localhost/sriovkit/pause:3.4"
# What the tier runs (always kept installed) and what only building needs.
RUNTIME_PACKAGES = ("containerd", "runc", "strace", "containernetworking-plugins")
BUILD_PACKAGES = ("golang-1.19-go", "dpkg-dev", "gcc", "libc6-dev")
# The build is known to work with Debian 12's kubernetes source (1.20) and its golang-1.19-go;
# on other releases it is not attempted (a cache built on Debian 12 is used as it is).
BUILD_RELEASE = "bookworm"
SOURCES = Path("/etc/apt/sources.list.d")
SRC_LIST = SOURCES / "sriovkit-node-src.sources"
_SRC_HEADER = "# Added by `sriovkit node setup`: Debian's kubernetes source (the kubelet).\n"


@dataclass(frozen=True, slots=True)
class NodeAssets:
    """Where the cached binaries and the pause image archive are."""

    cache: Path
    kubelet: Path
    kubelet_version: str
    pause: Path
    pause_archive: Path
    pause_image: str
    source_version: str


def default_cache() -> Path:
    """`$SRIOVKIT_NODE_CACHE`, else /var/cache/sriovkit-node (outside any clone: CI runs share
    it)."""
    env = os.environ.get("SRIOVKIT_NODE_CACHE")
    return Path(env) if env else DEFAULT_CACHE


def _quiet(_: str) -> None:
    return None


def _installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "ok installed" in proc.stdout


def _ensure_packages(packages: tuple[str, ...], install: bool, log: Log) -> None:
    missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if not install or not debian.can_install():
        raise NodeUnavailable(
            f"Debian packages {', '.join(missing)} are missing; run `sriovkit node setup` as root"
        )
    try:
        try:
            debian.apt_install(missing, log)
        except LabUnavailable:  # stale lists on a fresh machine: refresh once and retry
            debian.apt_update(log)
            debian.apt_install(missing, log)
    except LabUnavailable as exc:
        raise NodeUnavailable(str(exc)) from exc


def _release_suites(codename: str) -> tuple[str, ...]:
    # The release, its updates and security suites: where its kubernetes source lives.
    # Not backports (another version, and one more index to download).
    return (codename, f"{codename}-updates", f"{codename}-security")


def deb_src_stanzas(text: str, codename: str) -> list[str]:
    """deb822 `deb-src` stanzas for the `deb` stanzas of `text` that carry release `codename`
    (its -updates and -security suites, not backports): the same archive hosts, keys and
    components."""
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(("#", " ")):
                fields[key.strip()] = value.strip()
        if "deb" not in fields.get("Types", "").split():
            continue
        suites = [s for s in fields.get("Suites", "").split() if s in _release_suites(codename)]
        if not suites or fields.get("Enabled", "yes") == "no":
            continue
        lines = ["Types: deb-src", f"URIs: {fields.get('URIs', '')}", f"Suites: {' '.join(suites)}",
                 f"Components: {fields.get('Components', 'main')}"]  # fmt: skip
        if "Signed-By" in fields:
            lines.append(f"Signed-By: {fields['Signed-By']}")
        out.append("\n".join(lines) + "\n")
    return out


def deb_src_lines(text: str, codename: str) -> list[str]:
    """One-line `deb-src` entries for the one-line `deb` entries of `text` for `codename`."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] != "deb":
            continue
        suite = next((w for w in words[2:] if not w.startswith("[") and "://" not in w), "")
        if suite in _release_suites(codename):
            out.append("deb-src" + line.strip()[3:])
    return out


def _has_source(log: Log) -> bool:
    proc = subprocess.run(
        ["apt-cache", "showsrc", build.SOURCE_PACKAGE], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and "Package: kubernetes" in proc.stdout


def ensure_deb_src(codename: str, log: Log) -> None:
    """Make `apt-get source kubernetes` work: add `deb-src` entries mirroring the configured
    `deb` ones (only when apt knows no source package yet), then refresh the lists."""
    if _has_source(log):
        return
    stanzas: list[str] = []
    lines: list[str] = []
    for path in sorted(SOURCES.glob("*.sources")):
        if path != SRC_LIST:
            stanzas += deb_src_stanzas(path.read_text(), codename)
    for path in [Path("/etc/apt/sources.list"), *sorted(SOURCES.glob("*.list"))]:
        if path.is_file():
            lines += deb_src_lines(path.read_text(), codename)
    if not stanzas and not lines:
        raise NodeUnavailable(f"no `deb` entries for {codename} in /etc/apt to mirror as deb-src")
    log(f"adding {SRC_LIST} (deb-src of the configured archive hosts)")
    body = "\n".join(stanzas)
    if lines:  # one-line entries go to a .list file beside it
        SRC_LIST.with_suffix(".list").write_text(_SRC_HEADER + "\n".join(lines) + "\n")
    if body:
        SRC_LIST.write_text(_SRC_HEADER + body)
    try:
        debian.apt_update(log)
    except LabUnavailable as exc:
        raise NodeUnavailable(str(exc)) from exc
    if not _has_source(log):
        raise NodeUnavailable("apt still knows no kubernetes source package after adding deb-src")


def _dsc_version(src: Path) -> str:
    for dsc in src.glob(f"{build.SOURCE_PACKAGE}_*.dsc"):
        return dsc.stem.removeprefix(f"{build.SOURCE_PACKAGE}_")
    return "?"


def write_pause_archive(pause: Path, dest: Path, name: str = PAUSE_IMAGE) -> None:
    """The pause image: `/pause` alone, as kubelet's sandbox image."""
    write_archive(dest, name, [Entry("pause", source=pause)], entrypoint=["/pause"])


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    # Two set-ups at once (a developer and CI on one machine) must not build over each other.
    with (cache / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _load_manifest(cache: Path) -> NodeAssets | None:
    try:
        data = json.loads((cache / MANIFEST).read_text())
        if data.get("format") != FORMAT:
            return None
        assets = NodeAssets(
            cache=cache, kubelet=Path(data["kubelet"]),
            kubelet_version=str(data["kubelet_version"]),
            pause=Path(data["pause"]), pause_archive=Path(data["pause_archive"]),
            pause_image=str(data["pause_image"]), source_version=str(data["source_version"]),
        )  # fmt: skip
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not all(p.is_file() for p in (assets.kubelet, assets.pause, assets.pause_archive)):
        return None
    return assets


def ensure_node(cache: Path, *, install: bool = True, log: Log = _quiet) -> NodeAssets:
    """Set the node tier up in `cache` (or find it set up) and say where everything is.

    Idempotent. Raises NodeUnavailable, saying what is missing, when something cannot be had.
    """
    cache = Path(cache).resolve()
    codename = debian.debian_codename()
    if codename is None:
        raise NodeUnavailable("the node tier builds its kubelet from Debian's archive: not Debian")
    if codename != BUILD_RELEASE and _load_manifest(cache) is None:
        raise NodeUnavailable(
            f"the kubelet is built from Debian {BUILD_RELEASE}'s kubernetes source with its "
            f"golang-1.19-go; this is {codename}: copy a {BUILD_RELEASE}-built {cache} here"
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeUnavailable(f"cannot create the node cache {cache}: {exc.strerror}") from exc
    started = time.monotonic()
    with _locked(cache):
        _ensure_packages(RUNTIME_PACKAGES, install, log)
        assets = _load_manifest(cache)
        if assets is not None:
            return assets
        if not install or not debian.can_install():
            raise NodeUnavailable("no kubelet is cached; run `sriovkit node setup` as root")
        _ensure_packages(BUILD_PACKAGES, install, log)
        ensure_deb_src(codename, log)
        work = cache / "build"
        src = build.fetch_source(work / "src", log)
        bin_dir = cache / "bin"
        built = time.monotonic()
        version = build.build_kubelet(src, work, bin_dir / "kubelet", log)
        log(f"kubelet {version} built in {time.monotonic() - built:.0f} s")
        build.build_pause(src, bin_dir / "pause", log)
        source_version = _dsc_version(src.parent)
        # Only the binaries are worth keeping: the Go build cache is ~1.2 GB, the tree 311 MB.
        shutil.rmtree(work, ignore_errors=True)
        archive = cache / "images" / "pause.oci.tar"
        write_pause_archive(bin_dir / "pause", archive)
        assets = NodeAssets(cache, bin_dir / "kubelet", version, bin_dir / "pause", archive,
                            PAUSE_IMAGE, source_version)  # fmt: skip
        record = {k: str(v) for k, v in asdict(assets).items()}
        write_file(cache / MANIFEST, (json.dumps({"format": FORMAT, **record}, indent=2) + "\n")
                   .encode())  # fmt: skip
        log(f"node tier set up in {cache} ({time.monotonic() - started:.0f} s)")
        return assets


__all__ = ["NodeAssets", "deb_src_lines", "deb_src_stanzas", "default_cache", "ensure_deb_src",
           "ensure_node", "write_pause_archive"]  # fmt: skip
