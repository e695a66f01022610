"""Single-layer OCI image archives, written without a registry or an image builder.

`ctr -n k8s.io images import FILE` reads an OCI image layout tar (`oci-layout`, `index.json`,
`blobs/sha256/...`) and names the image after the index entry's `io.containerd.image.name`
annotation. One uncompressed layer is all a pause binary or a busybox tree needs; the layer is
built with fixed owners and times, so the same files give the same digests every time.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of the image's file system: a file (from `source` or `data`), a symlink to
    `link`, or, with none of them, a directory."""

    path: str
    source: Path | None = None
    data: bytes | None = None
    link: str | None = None
    mode: int = 0o755


def _tarinfo(entry: Entry, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path.strip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    info.mode = entry.mode
    if entry.link is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = entry.link
        info.mode = 0o777
    elif entry.source is None and entry.data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = size
    return info


def layer(entries: Iterable[Entry]) -> bytes:
    """The uncompressed layer tar of `entries` (parents before children, as given)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            data = entry.data
            if entry.source is not None:
                data = entry.source.read_bytes()
            info = _tarinfo(entry, len(data or b""))
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.removeprefix("sha256:"))
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))
    return digest


def _file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def write_archive(
    dest: Path,
    name: str,
    entries: Sequence[Entry],
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
) -> str:
    """Write the OCI archive of a one-layer linux/amd64 image called `name` (a full reference,
    e.g. `localhost/sriovkit/pause:3.4`) to `dest`; return the manifest's digest."""
    diff = layer(entries)
    diff_id = "sha256:" + hashlib.sha256(diff).hexdigest()
    config: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint) or None, "Cmd": list(cmd) or None,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "sriovkit.node.oci"}],
    }  # fmt: skip
    config_bytes = json.dumps(config, sort_keys=True).encode()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        _file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        layer_digest = _blob(tar, diff)
        config_digest = _blob(tar, config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": len(diff)}],
        }  # fmt: skip
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest_bytes)
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": MANIFEST_TYPE, "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"io.containerd.image.name": name,
                                "org.opencontainers.image.ref.name": tag},
            }],
        }  # fmt: skip
        _file(tar, "index.json", json.dumps(index, sort_keys=True).encode())
    tmp.replace(dest)
    return manifest_digest


__all__ = ["Entry", "layer", "write_archive"]
