"""Debian archive access for the lab: which release we are on, installing and downloading packages.

Everything here shells out to apt/dpkg (the ordinary clients); nothing talks to the archive
directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.lab.errors import LabUnavailable

Log = Callable[[str], None]

# Debian 12 ships QEMU 7.2, which has no `igb` device; bookworm-backports carries QEMU 10.
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/sriovkit-lab-backports.sources")
_BACKPORTS_TEXT = """\
# Added by `sriovkit lab setup`: QEMU >= 8.0 (the emulated igb NIC) for the SR-IOV lab.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """The key=value pairs of os-release (empty when the file is missing)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def debian_codename(path: Path = Path("/etc/os-release")) -> str | None:
    """`bookworm`, `trixie`, ... on Debian; None elsewhere (derivatives: their archive differs)."""
    info = os_release(path)
    if info.get("ID") != "debian":
        return None
    return info.get("VERSION_CODENAME") or None


def run(
    argv: Sequence[str],
    what: str,
    log: Log,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
    error: type[HostError] = LabUnavailable,
) -> str:
    """Run one set-up command (apt, dpkg, a build); its stdout.

    `env` defaults to ours with apt's non-interactive, C-locale settings. A command that cannot
    start, times out or fails raises `error` (the lab's or the node tier's), saying `what`
    failed, the command and the tail of its output.
    """
    if env is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    log("$ " + " ".join(argv))
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-12:])
        raise error(f"{what}: `{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
    return proc.stdout


def _run(argv: Sequence[str], what: str, log: Log, cwd: Path | None = None) -> str:
    return run(argv, what, log, cwd=cwd)


def can_install() -> bool:
    """True when apt-get is there and we are root (installing packages needs both)."""
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def apt_update(log: Log) -> None:
    """`apt-get update`, for a fresh source or stale package lists."""
    _run(["apt-get", "update", "-q"], "cannot refresh the package lists", log)


def enable_backports(codename: str, log: Log) -> bool:
    """Add Debian's `<codename>-backports` source (bookworm only). True when it was added now."""
    if BACKPORTS_SOURCE.exists():
        return False
    text = _BACKPORTS_TEXT.replace("bookworm-backports", f"{codename}-backports")
    log(f"adding {BACKPORTS_SOURCE} ({codename}-backports)")
    BACKPORTS_SOURCE.write_text(text)
    return True


def apt_install(packages: Sequence[str], log: Log, release: str | None = None) -> None:
    """Install `packages` without recommends, from `release` (a `-t` target) when given."""
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    if release:
        argv += ["-t", release]
    _run([*argv, *packages], f"cannot install {', '.join(packages)}", log)


def depends_of(package: str, log: Log) -> list[str]:
    """Direct `Depends:` package names of `package`'s candidate version."""
    out = _run(["apt-cache", "depends", package], f"cannot resolve {package}", log)
    names = []
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Depends" and not value.strip().startswith("<"):
            names.append(value.strip())
    return names


def candidate_version(package: str, log: Log) -> str | None:
    """The version apt would install for `package`, or None when the archive does not have it."""
    out = _run(["apt-cache", "policy", package], f"cannot look up {package}", log)
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


def download(package: str, dest: Path, log: Log) -> Path:
    """`apt-get download` `package` into `dest` (kept there as a cache) and return the .deb."""
    dest.mkdir(parents=True, exist_ok=True)
    existing = sorted(dest.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    _run(["apt-get", "download", "-q", package], f"cannot download {package}", log, cwd=dest)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        raise LabUnavailable(f"cannot download {package}: apt-get left no .deb in {dest}")
    return found[-1]


def extract(deb: Path, dest: Path, log: Log) -> None:
    """Unpack `deb` under `dest` (dpkg-deb -x: no maintainer scripts, host's /boot untouched)."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)], f"cannot unpack {deb.name}", log)
