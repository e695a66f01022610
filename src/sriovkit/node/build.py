"""Build the kubelet and the pause binary from Debian 12's `kubernetes` source package.

Debian ships no kubelet binary, but its `kubernetes` source package carries the whole tree with
`vendor/`. Kubernetes 1.20 builds in GOPATH mode (its own `hack/lib/init.sh` does), so the tree
is linked at `$GOPATH/src/k8s.io/kubernetes` and built with `GO111MODULE=off`: module mode with
`-mod=vendor` fails under go1.19 ("updates to go.mod needed"). `GOPROXY=off` makes sure nothing
is fetched: the build is offline. The pause binary is the tree's own `build/pause/linux/pause.c`,
linked statically, as its Makefile does.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from sriovkit.errors import NodeUnavailable
from sriovkit.lab import debian

Log = Callable[[str], None]

SOURCE_PACKAGE = "kubernetes"
# Where `kubelet --version` reads the version from (Kubernetes' hack/lib/version.sh sets it).
_VERSION_VAR = "k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion"
GO = Path("/usr/lib/go-1.19/bin/go")
# Debian's version is 1.20.5+really1.20.2-...: the tree is v1.20.2.
_REALLY = re.compile(r"really(\d+\.\d+\.\d+)")
_PLAIN = re.compile(r"^(\d+\.\d+\.\d+)")


def _run(argv: Sequence[str], what: str, log: Log, cwd: Path | None = None,
         env: dict[str, str] | None = None, timeout: float = 1800) -> str:  # fmt: skip
    return debian.run(argv, what, log, cwd=cwd, env=env, timeout=timeout, error=NodeUnavailable)


def git_version(tree: Path) -> str:
    """`v1.20.2` for a tree unpacked as `kubernetes-1.20.5+really1.20.2`."""
    upstream = tree.name.removeprefix(f"{SOURCE_PACKAGE}-")
    found = _REALLY.search(upstream) or _PLAIN.search(upstream)
    if found is None:
        raise NodeUnavailable(f"cannot tell the Kubernetes version of {tree.name}")
    return "v" + found.group(1)


def fetch_source(dest: Path, log: Log) -> Path:
    """`apt-get source kubernetes` into `dest` (which is emptied first); the unpacked tree."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "source", "-q", SOURCE_PACKAGE],
         "cannot fetch Debian's kubernetes source package (are there deb-src lines?)",
         log, cwd=dest, env=env, timeout=900)  # fmt: skip
    trees = [p for p in dest.iterdir() if p.is_dir() and p.name.startswith(f"{SOURCE_PACKAGE}-")]
    if len(trees) != 1:
        raise NodeUnavailable(f"apt-get source left {len(trees)} source trees in {dest}")
    return trees[0]


def build_kubelet(tree: Path, work: Path, out: Path, log: Log) -> str:
    """Build `cmd/kubelet` of `tree` into `out` (GOPATH and Go build cache under `work`);
    return the version string compiled in."""
    if not GO.is_file():
        raise NodeUnavailable(f"{GO} is missing (Debian package golang-1.19-go)")
    version = git_version(tree)
    gopath = work / "gopath"
    link = gopath / "src" / "k8s.io" / "kubernetes"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(tree.resolve())
    env = {
        "PATH": f"{GO.parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(work),
        "GOPATH": str(gopath),
        "GOCACHE": str(work / "gocache"),
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
        "LC_ALL": "C",
    }
    ldflags = f"-s -w -X {_VERSION_VAR}={version}"
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([str(GO), "build", "-o", str(tmp), "-tags", "selinux,notest", "-ldflags", ldflags,
          "k8s.io/kubernetes/cmd/kubelet"],
         "cannot build the kubelet", log, cwd=link, env=env, timeout=3600)  # fmt: skip
    said = _run([str(tmp), "--version"], "the built kubelet does not run", log)
    if version not in said:
        raise NodeUnavailable(f"the built kubelet says {said.strip()!r}, expected {version}")
    tmp.replace(out)
    return version


def build_pause(tree: Path, out: Path, log: Log) -> None:
    """`gcc -static` the tree's `build/pause/linux/pause.c` into `out`."""
    source = tree / "build" / "pause" / "linux" / "pause.c"
    if not source.is_file():
        raise NodeUnavailable(f"{source} is missing from the source package")
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NodeUnavailable("gcc is missing (Debian packages gcc, libc6-dev)")
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([gcc, "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v3.4-{git_version(tree)}",
          "-o", str(tmp), str(source)], "cannot compile pause.c", log)  # fmt: skip
    tmp.replace(out)


__all__ = ["build_kubelet", "build_pause", "fetch_source", "git_version"]
