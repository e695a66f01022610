"""The node tier's set-up pieces that need no root: deb-src entries mirroring the configured
archive, the kubelet's version from the source tree's name, single-layer OCI archives."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from sriovkit.errors import NodeUnavailable
from sriovkit.node.build import git_version
from sriovkit.node.oci import Entry, write_archive
from sriovkit.node.setup import deb_src_lines, deb_src_stanzas

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main

Types: deb
URIs: http://example.org/other
Suites: stable
Components: main
"""


def test_deb_src_mirrors_the_release_stanzas_only() -> None:
    out = deb_src_stanzas(DEBIAN_SOURCES, "bookworm")
    assert out == [
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        "Types: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    ]


def test_deb_src_one_line_format() -> None:
    text = (
        "deb http://deb.debian.org/debian bookworm main\n"
        "# deb http://x/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://deb.debian.org/debian-security bookworm-security main\n"
        "deb http://deb.debian.org/debian trixie main\n"
    )
    assert deb_src_lines(text, "bookworm") == [
        "deb-src http://deb.debian.org/debian bookworm main",
        "deb-src [signed-by=/k.gpg] http://deb.debian.org/debian-security bookworm-security main",
    ]


def test_git_version_of_debians_really_version() -> None:
    assert git_version(Path("kubernetes-1.20.5+really1.20.2")) == "v1.20.2"
    assert git_version(Path("kubernetes-1.29.1")) == "v1.29.1"
    with pytest.raises(NodeUnavailable, match="version"):
        git_version(Path("kubernetes-main"))


def test_oci_archive_is_a_valid_single_layer_layout(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    dest = tmp_path / "img.tar"
    entries = [Entry("bin"), Entry("bin/pause", source=binary), Entry("bin/sh", link="pause")]
    digest = write_archive(dest, "localhost/sriovkit/pause:3.4", entries, entrypoint=["/pause"])
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        blobs = {n.rpartition("/")[2]: tar.extractfile(n).read()  # type: ignore[union-attr]
                 for n in names if n.startswith("blobs/")}  # fmt: skip
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert "oci-layout" in names
    for name, data in blobs.items():  # content-addressed
        assert hashlib.sha256(data).hexdigest() == name
    entry = index["manifests"][0]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/sriovkit/pause:3.4"
    manifest = json.loads(blobs[digest.removeprefix("sha256:")])
    layer = blobs[manifest["layers"][0]["digest"].removeprefix("sha256:")]
    config = json.loads(blobs[manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        members = {m.name: m for m in inner.getmembers()}
    assert members["bin"].isdir()
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "pause"
    assert members["bin/pause"].uid == 0 and members["bin/pause"].mode == 0o755
    # The same files give the same image.
    assert write_archive(tmp_path / "again.tar", "localhost/sriovkit/pause:3.4", entries,
                         entrypoint=["/pause"]) == digest  # fmt: skip
