"""What the node tier takes from `deploy/`: the DaemonSet (as a static pod), the pools ConfigMap
and the plain-CNI conflist, each with the node's production paths replaced by this session's.

The DaemonSet mounts every node path at the same path in the container, because the shim the
agent installs has the agent's socket path baked in and runs on the node: so a session path
replaces a production path everywhere at once, in the volumes' hostPath, the volumeMounts'
mountPath and the agent's `--opt=PATH` arguments (`remap`). What a static pod cannot have
changes too: the pools ConfigMap volume becomes a hostPath to a file with the ConfigMap's own
`config.json`; `imagePullPolicy` becomes Never (no registry). The simulated host is added as a
mount at its own path and `SRIOVKIT_ROOT`, and `SRIOVKIT_AGENT_SOCKET` tells the probes'
`sriovkit agent-status` where the remapped socket is. Everything else (privileges, host
network and PID, probes, resources, the other mounts) is the DaemonSet's, unchanged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _load(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text())


def pools() -> dict[str, Any]:
    """The device plugin's config.json, from the pools ConfigMap."""
    return dict(json.loads(_load("pools-configmap.yaml")["data"]["config.json"]))


def netdevice_resource() -> str:
    """`<prefix>/<name>` of the first pool (the netdevice VFs the conflist takes from)."""
    first = pools()["resourceList"][0]
    return f"{first.get('resourcePrefix', 'intel.com')}/{first['resourceName']}"


def conflist(ipam_dir: Path) -> dict[str, Any]:
    """deploy/'s plain-CNI conflist, host-local's leases kept in `ipam_dir`."""
    data = json.loads((DEPLOY / "cni" / "10-sriovkit.conflist").read_text())
    for plugin in data["plugins"]:
        if plugin.get("ipam", {}).get("type") == "host-local":
            plugin["ipam"]["dataDir"] = str(ipam_dir)
    return dict(data)


def image_name() -> str:
    """The agent image's name and tag (deploy/IMAGE, the one place it is written)."""
    return (DEPLOY / "IMAGE").read_text().strip()


def remap(path: str, paths: Mapping[str, Path]) -> str:
    """`path` with its longest production prefix in `paths` replaced by the session's."""
    for prod in sorted(paths, key=len, reverse=True):
        if path == prod or path.startswith(prod.rstrip("/") + "/"):
            return str(paths[prod]) + path[len(prod):]
    return path


def agent_args(paths: Mapping[str, Path]) -> list[str]:
    """The DaemonSet container's args with the session's paths."""
    container = _load("daemonset.yaml")["spec"]["template"]["spec"]["containers"][0]
    out = []
    for arg in container.get("args", []):
        key, sep, value = str(arg).partition("=")
        out.append(f"{key}={remap(value, paths)}" if sep else str(arg))
    return out


# Host paths the static pod may mount as they are: the kernel's, kubelet's fixed ones, the netns.
HOST_PATHS = ("/sys", "/dev", "/var/lib/kubelet/device-plugins", "/var/lib/kubelet/pod-resources",
              "/run/netns")  # fmt: skip


def _check_host_paths(volumes: list[dict[str, Any]], paths: Mapping[str, Path]) -> None:
    """Refuse a DaemonSet volume this module would mount from the real node path: a node path
    added to deploy/ must be mapped to a session path (AgentPaths.production) or allowed here."""
    session = {str(p) for p in paths.values()}
    for volume in volumes:
        path = volume.get("hostPath", {}).get("path", "")
        if path not in HOST_PATHS and not any(path == s or path.startswith(s + "/")
                                              for s in session):  # fmt: skip
            raise ValueError(
                f"deploy/daemonset.yaml volume {volume['name']!r} ({path}) has no session path: "
                "add it to AgentPaths.production (tests/node/nodeagents.py)"
            )


def agent_static_pod(
    name: str, namespace: str, paths: Mapping[str, Path], root: Path, socket: Path
) -> dict[str, Any]:
    """The DaemonSet's pod template as a static pod (module doc)."""
    daemonset = _load("daemonset.yaml")
    template = copy.deepcopy(daemonset["spec"]["template"])
    spec = template["spec"]
    container = spec["containers"][0]
    container["imagePullPolicy"] = "Never"
    container["args"] = agent_args(paths)
    container["env"] = [*container.get("env", []),
                        {"name": "SRIOVKIT_ROOT", "value": str(root)},
                        {"name": "SRIOVKIT_AGENT_SOCKET", "value": str(socket)}]  # fmt: skip
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for volume in spec["volumes"]:
        mount = mounts[volume["name"]]
        if "configMap" in volume:  # static pods have no ConfigMaps: the same file, on the host
            del volume["configMap"]
            volume["hostPath"] = {"path": remap(mount["mountPath"], paths), "type": "Directory"}
        else:
            volume["hostPath"]["path"] = remap(volume["hostPath"]["path"], paths)
        mount["mountPath"] = remap(mount["mountPath"], paths)
    _check_host_paths(spec["volumes"], paths)
    spec["volumes"].append({"name": "simulated-host",
                            "hostPath": {"path": str(root), "type": "Directory"}})  # fmt: skip
    container["volumeMounts"].append({"name": "simulated-host", "mountPath": str(root)})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": dict(template["metadata"].get("labels") or {})},
            "spec": spec}  # fmt: skip


__all__ = ["agent_args", "agent_static_pod", "conflist", "image_name", "netdevice_resource",
           "pools", "remap"]  # fmt: skip
