"""The node tier's harness: Debian's containerd and the kubelet built by `sriovkit node setup`,
private paths, no API server, and every side effect on the host undone at teardown.

containerd (1.6) runs with its own config, root, state and socket under the session's
directory (nothing under /etc/containerd, /var/lib/containerd or /run/containerd/containerd.sock;
only the shims' sockets go to /run/containerd/s/, a path fixed in containerd, and are gone
with the shims). Its CRI plugin: `restrict_oom_score_adj = true` (this VM withholds
CAP_SYS_RESOURCE, and runc fails with "can't get final child's PID from pipe: EOF" on kubelet's
oom_score_adj -998 otherwise), the overlayfs snapshotter (see SNAPSHOTTER), the pause
image we import as its `sandbox_image`, and `conf_dir`/`bin_dir` set to the session's CNI
directories, which hold our conflist and our installed `sriov` shim (with Debian's host-local
and loopback beside it).

kubelet runs standalone: a KubeletConfiguration with `staticPodPath`, cgroupfs, anonymous
authentication and AlwaysAllow authorization, ports on 127.0.0.1 only, no QoS cgroups. Its root
is /var/lib/kubelet, because the device-plugins directory `/var/lib/kubelet/device-plugins/` is
a constant inside kubelet. It changes three sysctls and bind-mounts /var/lib/kubelet on itself:
`HostEffects` saves and restores both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from nodedaemons import Traced, wait_until

KUBELET_DIR = Path("/var/lib/kubelet")
CHECKPOINT = KUBELET_DIR / "device-plugins" / "kubelet_internal_checkpoint"
NODE_NAME = "sriovkit-node"
# overlayfs, not native: native copies the whole parent tree for every layer; importing the agent
# image (~235 MB) took ~90 s with native and ~10 s with overlayfs here (one run each, 2 vCPUs
# under load). The overlay mounts are under the session directory and go with each container.
SNAPSHOTTER = "overlayfs"
CGROUPS = Path("/sys/fs/cgroup")
# With cgroupsPerQOS off, the pods' containers get cgroups under containerd's namespace name.
POD_CGROUP = "k8s.io"
SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
# Made by kubelet or containerd's CRI when missing; removed at teardown if we made them.
HOST_DIRS = (
    KUBELET_DIR, Path("/var/log/pods"), Path("/var/log/containers"), Path("/run/containerd")
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mountpoints() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


class HostEffects:
    """What kubelet and containerd change on the host, saved before and undone after."""

    def __init__(self) -> None:
        self.sysctls = {name: Path("/proc/sys", name).read_text() for name in SYSCTLS}
        self.existed = {path: path.exists() for path in HOST_DIRS}
        self.netns = set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()
        self.cgroups = set(CGROUPS.glob(f"*/{POD_CGROUP}"))

    def restore(self, under: Path) -> list[str]:
        """Undo everything; return what had to be cleaned up besides the sysctls."""
        for name, value in self.sysctls.items():
            Path("/proc/sys", name).write_text(value)
        notes = []
        # Deepest first: pod volumes, the netns bind mounts, then kubelet's own bind mount.
        for point in sorted(set(_mountpoints()), key=len, reverse=True):
            if point.startswith((f"{KUBELET_DIR}/", f"{under}/", "/run/containerd/")):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
                notes.append(f"unmounted {point}")
        while str(KUBELET_DIR) in _mountpoints():
            if subprocess.run(["umount", str(KUBELET_DIR)], capture_output=True,
                              check=False).returncode != 0:  # fmt: skip
                subprocess.run(["umount", "-l", str(KUBELET_DIR)], capture_output=True, check=False)
        netns_dir = Path("/run/netns")
        for name in sorted(set(os.listdir(netns_dir)) - self.netns if netns_dir.is_dir() else []):
            if name.startswith("cni-"):  # containerd's CRI names its pod netns so
                subprocess.run(["umount", str(netns_dir / name)], capture_output=True, check=False)
                (netns_dir / name).unlink(missing_ok=True)
                notes.append(f"removed netns {name}")
        # containerd leaves its (empty) parent cgroup of the pods behind in each hierarchy.
        for path in set(CGROUPS.glob(f"*/{POD_CGROUP}")) - self.cgroups:
            with contextlib.suppress(OSError):
                path.rmdir()
        for path, existed in self.existed.items():
            if not existed and path.exists():
                shutil.rmtree(path, ignore_errors=True)
        return notes


class Containerd:
    """A private containerd: config, root, state, socket and CNI dirs under `base`."""

    def __init__(self, base: Path, pause_image: str) -> None:
        self.base = base
        self.sock = base / "containerd.sock"
        self.cni_bin = base / "cni" / "bin"
        self.cni_conf = base / "cni" / "net.d"
        self.config = base / "containerd.toml"
        self.pause_image = pause_image
        for path in (self.cni_bin, self.cni_conf):
            path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.config_text())
        self.daemon = Traced("containerd", ["containerd", "--config", str(self.config)], base)

    def config_text(self) -> str:
        """containerd's config (version 2 TOML; paths as JSON strings are valid TOML too)."""
        q = json.dumps
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        return "\n".join([
            "version = 2",
            f"root = {q(str(self.base / 'root'))}",
            f"state = {q(str(self.base / 'state'))}",
            # opt installs into /opt/containerd; the others have no kernel support here anyway.
            'disabled_plugins = ["io.containerd.internal.v1.opt", '
            '"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", '
            '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
            "[grpc]", f"address = {q(str(self.sock))}",
            "[ttrpc]", f"address = {q(str(self.sock) + '.ttrpc')}",
            "[debug]", 'level = "info"',
            f"{cri}]",
            f"sandbox_image = {q(self.pause_image)}",
            "restrict_oom_score_adj = true",
            'stream_server_address = "127.0.0.1"',
            "enable_selinux = false",
            f"{cri}.containerd]",
            f"snapshotter = {q(SNAPSHOTTER)}",
            'default_runtime_name = "runc"',
            f"{cri}.containerd.runtimes.runc]",
            'runtime_type = "io.containerd.runc.v2"',
            f"{cri}.containerd.runtimes.runc.options]",
            'BinaryName = "/usr/sbin/runc"',
            "SystemdCgroup = false",
            f"{cri}.cni]",
            f"bin_dir = {q(str(self.cni_bin))}",
            f"conf_dir = {q(str(self.cni_conf))}",
            "max_conf_num = 1",
            "",
        ])  # fmt: skip

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.daemon.start()
        wait_until("containerd to answer", lambda: self.ctr("version", check=False).returncode == 0
                   or not self.daemon.running(), timeout=60)  # fmt: skip
        assert self.daemon.running(), f"containerd exited:\n{self.daemon.log_text()[-3000:]}"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ctr --address SOCK -n k8s.io ARGS` (the CRI plugin's namespace)."""
        proc = subprocess.run(
            ["ctr", "--address", str(self.sock), "-n", "k8s.io", *args],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=120,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"`ctr {' '.join(args)}` exited {proc.returncode}: {proc.stderr}")
        return proc

    def import_image(self, archive: Path) -> None:
        """`ctr images import` an OCI archive, unpacked for the CRI's snapshotter."""
        self.ctr("images", "import", "--snapshotter", SNAPSHOTTER, str(archive))

    def tasks(self) -> dict[str, tuple[int, str]]:
        """Container id -> (pid, status) of every task containerd runs."""
        out = {}
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            words = line.split()
            if len(words) >= 3:
                out[words[0]] = (int(words[1]), words[2])
        return out

    def labels(self, container: str) -> dict[str, str]:
        """The labels of a container (CRI puts the pod's name and namespace there)."""
        proc = self.ctr("containers", "info", container, check=False)
        if proc.returncode != 0:
            return {}
        return dict(json.loads(proc.stdout).get("Labels") or {})

    def pod_processes(self, pod: str) -> dict[str, int]:
        """Container name (`POD` for the sandbox) -> pid of the running tasks of pod `pod`."""
        out = {}
        for cid, (pid, status) in self.tasks().items():
            labels = self.labels(cid)
            if labels.get("io.kubernetes.pod.name") != pod or status != "RUNNING":
                continue
            out[labels.get("io.kubernetes.container.name", "POD")] = pid
        return out

    def pod_names(self) -> set[str]:
        """The pods of every task containerd runs (CRI's pod-name label)."""
        return {self.labels(cid).get("io.kubernetes.pod.name", "?") for cid in self.tasks()}

    def shim_pids(self) -> list[int]:
        """The shims started by this containerd (their command line names its socket)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"containerd-shim" in argv[0] and str(self.sock).encode() in argv:
                pids.append(int(proc.name))
        return pids

    def stop(self) -> list[str]:
        """Kill every task left, stop containerd, kill its shims; return what was left over."""
        left = []
        if self.daemon.running():
            for cid in self.tasks():
                left.append(f"task {cid[:12]}")
                self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False)
                self.ctr("tasks", "delete", "-f", cid, check=False)
        self.daemon.stop()
        for pid in self.shim_pids():
            left.append(f"shim {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        return left


class Kubelet:
    """The standalone kubelet: static pods from `manifests`, CRI from containerd."""

    def __init__(self, base: Path, binary: Path, containerd: Containerd) -> None:
        self.base = base
        self.manifests = base / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)
        self.read_only_port = free_port()
        self.config = base / "kubelet.yaml"
        self.config.write_text(json.dumps(self.configuration(), indent=1))
        kubelet = [
            str(binary), "--config", str(self.config), "--container-runtime=remote",
            f"--container-runtime-endpoint=unix://{containerd.sock}",
            f"--root-dir={KUBELET_DIR}", f"--hostname-override={NODE_NAME}", "--v=4",
        ]  # fmt: skip
        self.daemon = Traced("kubelet", [*self.private_resolver(), *kubelet], base)

    def private_resolver(self) -> list[str]:
        """The command prefix that runs kubelet with its own /etc/resolv.conf and /etc/hosts.

        kubelet resolves its node name (`net.LookupIP`, for the node's addresses) each time it
        builds its node object, which a standalone kubelet does at every pod admission: with the
        host's resolver that is a DNS query off the machine. So kubelet runs in a private mount
        namespace where /etc/hosts names the node and /etc/resolv.conf points at 127.0.0.1:
        any lookup stays on loopback. Only kubelet: containerd must share the host's mounts
        (the pods' netns under /run/netns), and its trace shows no lookups.
        """
        resolv, hosts = self.base / "resolv.conf", self.base / "hosts"
        resolv.write_text("nameserver 127.0.0.1\n")
        hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {NODE_NAME}\n")
        script = ('mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && '
                  'shift 2 && exec "$@"')  # fmt: skip
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", script, "sh", str(resolv), str(hosts)]  # fmt: skip

    def configuration(self) -> dict[str, Any]:
        """The KubeletConfiguration (JSON is YAML too)."""
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "staticPodPath": str(self.manifests),
            "fileCheckFrequency": "1s",  # how often the manifest dir is read (default 20 s)
            "syncFrequency": "10s",
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "makeIPTablesUtilChains": False,
            "hairpinMode": "none",
            "address": "127.0.0.1",
            "port": free_port(),
            "readOnlyPort": self.read_only_port,
            "healthzPort": 0,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
        }  # fmt: skip

    def start(self) -> None:
        """Start it; it is up when its read-only port answers."""
        self.daemon.start()
        wait_until("kubelet's read-only port", lambda: self.pods() is not None
                   or not self.daemon.running(), timeout=90)  # fmt: skip
        assert self.daemon.running(), f"kubelet exited:\n{self.daemon.log_text()[-3000:]}"

    def stop(self) -> None:
        """SIGTERM (its pods keep running in containerd, as on a real node)."""
        self.daemon.stop()

    def pods(self) -> list[dict[str, Any]] | None:
        """kubelet's pods (`/pods` on the read-only port), or None when it does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.read_only_port}/pods", timeout=5
            ) as reply:
                return list(json.loads(reply.read()).get("items") or [])
        except (OSError, ValueError):
            return None

    def add_pod(self, manifest: dict[str, Any]) -> str:
        """Write a static pod manifest (to a dot file, then renamed: kubelet skips dot files and
        would read a file being written half-way); return the pod's name on this node."""
        name = manifest["metadata"]["name"]
        tmp = self.manifests / f".{name}.json"
        tmp.write_text(json.dumps(manifest))
        tmp.rename(self.manifests / f"{name}.json")
        return f"{name}-{NODE_NAME}"

    def remove_pod(self, name: str) -> None:
        """Delete a static pod's manifest: kubelet then kills the pod."""
        (self.manifests / f"{name}.json").unlink(missing_ok=True)

    def registrations(self, resource: str) -> int:
        """How many times kubelet logged a device plugin's registration request for `resource`."""
        needle = f'registration request from device plugin with resource name "{resource}"'
        return self.daemon.log_text().count(needle)


def healthy_devices(resource: str) -> list[str] | None:
    """The device IDs kubelet holds as healthy for `resource`, from its device manager's
    checkpoint; None when there is no checkpoint (yet).

    kubelet (1.20, pkg/kubelet/cm/devicemanager/manager.go, `writeCheckpoint`) writes the
    checkpoint's `RegisteredDevices` from its `healthyDevices` map after every ListAndWatch update,
    and the node's allocatable count for the resource is `len(healthyDevices[resource])`
    (`GetCapacity`). With no API server there is no node status to read it from; this file is
    the same set, written by kubelet itself.
    """
    try:
        data = json.loads(CHECKPOINT.read_text())
    except (OSError, ValueError):
        return None
    registered = (data.get("Data") or {}).get("RegisteredDevices") or {}
    return sorted(registered.get(resource) or [])


__all__ = ["CHECKPOINT", "KUBELET_DIR", "NODE_NAME", "Containerd", "HostEffects", "Kubelet",
           "free_port", "healthy_devices"]  # fmt: skip
