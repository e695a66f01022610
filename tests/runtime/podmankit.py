"""Helpers for the runtime tier: Debian 12's podman 4.3 (CNI backend) in a private configuration.

Nothing here reads or writes /etc/containers or /etc/cni: every podman process gets
`CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF` pointing into a temporary directory. What podman
4.3 needs on this kind of machine (found by experiment; see README.md beside this file):

- `network_backend = "cni"` with `cni_plugin_dirs` = [the test's bin dir holding our installed
  shim, /usr/lib/cni] and `network_config_dir` = the test's directory of conflists;
- `cgroup_manager = "cgroupfs"` (no systemd here), `events_logger = "file"` (no journald);
- `lock_type = "file"` (the default "shm" creates /dev/shm/libpod_lock, shared host-wide);
- `default_ulimits` at or below the caller's hard limits: podman 4.3 (rootful) asks runc for
  nofile=1048576 and nproc=32768 by default and sets its own RLIMIT_NPROC to 32768 at start;
  root without CAP_SYS_RESOURCE (as here: hard nofile 20000) cannot raise a hard limit, so runc
  fails with "error setting rlimit type 7" (nofile; type 6 is nproc);
- storage driver "vfs": no overlay mounts in the host mount namespace to leak if a test dies.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnikit import CNI_BIN, CniLab, ip_links

from sriovkit.sim.veth import VethHost

IMAGE = "localhost/sriovkit-busybox:test"
BUSYBOX = Path("/bin/busybox")
# Far below any sane hard limit, far above what `sleep` needs.
NOFILE = 1024
NPROC = 4096
TIMEOUT = 120  # seconds for one podman command (a run is ~0.5-1.5 s here)
_SCRUBBED = ("SRIOVKIT_", "CNI_", "CONTAINERS_")


def _limit(kind: int, cap: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def containers_conf(
    base: Path, net_dir: Path, plugin_dirs: Sequence[Path], events: Path | None = None
) -> str:
    """The text of a private containers.conf (TOML; paths are JSON strings, valid TOML too)."""
    ulimits = [
        f"nofile={_limit(resource.RLIMIT_NOFILE, NOFILE)}:{_limit(resource.RLIMIT_NOFILE, NOFILE)}",
        f"nproc={_limit(resource.RLIMIT_NPROC, NPROC)}:{_limit(resource.RLIMIT_NPROC, NPROC)}",
    ]
    q = json.dumps
    return "\n".join(
        [
            "[containers]",
            'log_driver = "k8s-file"',
            f"default_ulimits = {q(ulimits)}",
            "",
            "[network]",
            'network_backend = "cni"',
            f"cni_plugin_dirs = {q([str(p) for p in plugin_dirs])}",
            f"network_config_dir = {q(str(net_dir))}",
            "",
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {q(str(events or base / 'events.log'))}",
            'lock_type = "file"',
            'runtime = "runc"',
            f"tmp_dir = {q(str(base / 'tmp'))}",
            f"volume_path = {q(str(base / 'volumes'))}",
            "",
        ]
    )


def storage_conf(base: Path) -> str:
    """The text of a private storage.conf."""
    q = json.dumps
    return "\n".join(
        [
            "[storage]",
            'driver = "vfs"',
            f"graphroot = {q(str(base / 'storage'))}",
            f"runroot = {q(str(base / 'run'))}",
            "",
        ]
    )


def _shared_libraries(binary: Path) -> list[Path]:
    """The loader and libraries `ldd` names for a dynamically linked binary (none if static)."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return []  # "not a dynamic executable"
    out = []
    for line in proc.stdout.splitlines():
        for word in line.split():
            if word.startswith("/"):
                out.append(Path(word))
    return out


def build_rootfs(dest: Path, busybox: Path = BUSYBOX) -> None:
    """A root file system with `busybox` and a symlink per applet (plus its libraries, if any:
    Debian's dynamic `busybox` and `busybox-static` conflict, either will do)."""
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "tmp", "run"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin/busybox")
    for lib in _shared_libraries(busybox):
        target = dest / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    applets = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = dest / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")


def _podman_env(base_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base_env.items() if not k.startswith(_SCRUBBED)}
    env.update(extra)
    return env


@dataclass
class Podman:
    """`podman` with one containers.conf (and the session's storage.conf)."""

    conf: Path
    storage: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        full = _podman_env(
            os.environ,
            {
                "CONTAINERS_CONF": str(self.conf),
                "CONTAINERS_STORAGE_CONF": str(self.storage),
                **self.env,
                **(env or {}),
            },
        )
        proc = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            check=False,
            env=full,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`podman {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc


@dataclass
class PodmanBase:
    """The session's private podman: storage, run dir, the busybox image."""

    dir: Path

    @property
    def storage(self) -> Path:
        return self.dir / "storage.conf"

    def podman(self, conf: Path | None = None) -> Podman:
        """podman with `conf` (default: the session's, which knows no networks)."""
        return Podman(conf or self.dir / "containers.conf", self.storage)

    def setup(self) -> None:
        """Write the configuration, import the image, run it once with no network."""
        for sub in ("tmp", "volumes", "net.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.storage.write_text(storage_conf(self.dir))
        (self.dir / "containers.conf").write_text(
            containers_conf(self.dir, self.dir / "net.d", [CNI_BIN])
        )
        rootfs = self.dir / "rootfs"
        build_rootfs(rootfs)
        tar = self.dir / "rootfs.tar"
        with tarfile.open(tar, "w") as out:
            out.add(rootfs, arcname=".")
        podman = self.podman()
        podman("import", "--quiet", str(tar), IMAGE)
        smoke = podman("run", "--rm", "--pull=never", "--network=none", IMAGE, "true", check=False)
        if smoke.returncode != 0:
            raise RuntimeError(f"podman cannot run {IMAGE}: {smoke.stderr.strip()}")

    def teardown(self) -> None:
        """Remove every container and the image, then the directory."""
        podman = self.podman()
        podman("rm", "--all", "--force", "--time", "0", check=False)
        podman("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Pod:
    """One container started by a test."""

    name: str
    id: str
    netns: Path


@dataclass
class RuntimeLab:
    """One test's world: a veth host, our installed shim, conflists, podman configured for them."""

    host: VethHost
    cni: CniLab  # snapshot(), records(), leases() of this host, state dir and IPAM data dir
    podman: Podman
    net_dir: Path
    mode: str  # "agent" or "in-process"
    agent_log: Path | None
    pods: list[Pod] = field(default_factory=list)
    original_ifindex: dict[str, int] = field(default_factory=dict)  # VF PCI address -> ifindex

    def __post_init__(self) -> None:
        links = ip_links()
        self.original_ifindex = {p.vf: int(links[p.name]["ifindex"]) for p in self.host.pairs}

    def vf(self, index: int) -> str:
        """PCI address of the index-th VF of the host."""
        return self.host.pairs[index].vf

    def network(self, name: str, vf: str, subnet: str, **fields: Any) -> None:
        """A podman (CNI) network: one `sriov` attachment of VF `vf`, host-local in `subnet`."""
        plugin: dict[str, Any] = {
            "type": "sriov",
            "deviceID": vf,
            # podman 4.3 sends --mac-address / --ip as CNI_ARGS MAC= / IP=, never runtimeConfig;
            # declared anyway, as a runtime that does send them would want.
            "capabilities": {"mac": True, "ips": True},
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(self.cni.ipam_dir)},
            **fields,
        }
        conflist = {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(conflist, indent=1))

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Pod:
        """`podman run -d ARGS... IMAGE sleep 600`: a container that sleeps until removed."""
        name = f"skrt-{uuid.uuid4().hex[:10]}"
        proc = self.podman(
            "run", "-d", "--pull=never", "--name", name, *args, IMAGE, "sleep", "600",
            check=False, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            self.podman("rm", "--force", "--time", "0", name, check=False, env=env)
            raise AssertionError(f"podman run exited {proc.returncode}:\n{proc.stderr.strip()}")
        cid = proc.stdout.strip()
        sandbox = self.podman(
            "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", name
        ).stdout.strip()
        pod = Pod(name, cid, Path(sandbox))
        self.pods.append(pod)
        return pod

    def exec(self, pod: Pod, script: str) -> str:
        """`sh -c SCRIPT` inside the container (busybox); its stdout."""
        return self.podman("exec", pod.name, "sh", "-c", script).stdout

    def rm(self, pod: Pod, env: Mapping[str, str] | None = None) -> None:
        """`podman rm --force --time 0` (busybox `sleep` as PID 1 ignores SIGTERM)."""
        self.podman("rm", "--force", "--time", "0", pod.name, env=env)
        self.pods.remove(pod)

    def pod_links(self, pod: Pod) -> dict[str, dict[str, Any]]:
        """`ip -j link show` in the container's netns (from the host), by name."""
        return ip_links(pod.netns)

    def agent_saw(self, command: str, pod: Pod, ifname: str) -> bool:
        """Whether the agent's log shows it served COMMAND for this container's IFNAME."""
        if self.agent_log is None:
            return False
        return f"{command} {pod.id}/{ifname} -> 0" in self.agent_log.read_text(errors="replace")

    def cleanup(self) -> None:
        """Remove what the test left running (DEL through the test's networks)."""
        for pod in list(self.pods):
            self.podman("rm", "--force", "--time", "0", pod.name, check=False)
        self.pods.clear()


def host_macs() -> dict[str, str]:
    """MAC -> link name of every link in the host netns."""
    return {str(v.get("address")): k for k, v in ip_links().items()}


def inet_of(ip_o_addr: str, dev: str) -> list[str]:
    """IPv4 CIDRs of `dev` from busybox `ip -o addr` output."""
    out = []
    for line in ip_o_addr.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == dev and words[2] == "inet":
            out.append(words[3])
    return out


def files_under(path: Path) -> Iterator[Path]:
    """Every regular file below `path` (nothing if it does not exist)."""
    if path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file())


__all__ = [
    "IMAGE",
    "Pod",
    "Podman",
    "PodmanBase",
    "RuntimeLab",
    "build_rootfs",
    "containers_conf",
    "files_under",
    "host_macs",
    "inet_of",
    "storage_conf",
]
