#!/bin/bash
# Build the sriovkit node agent image (Containerfile) with podman, with no registry and nothing
# fetched inside the build. Idempotent: each step is cached in $SRIOVKIT_IMAGE_CACHE
# (/var/cache/sriovkit-image) and skipped when its inputs have not changed. Run as root.
#
#   scripts/build-image.sh                      build (or find up to date) the image
#   scripts/build-image.sh --archive FILE       ... and write it as an OCI archive (for
#                                               `ctr -n k8s.io images import FILE`)
#   scripts/build-image.sh --print-env          the image name and the podman settings it
#                                               lives under, as shell assignments
#
# Steps (only what changed is redone):
#   1. base: `debootstrap --variant=minbase bookworm` from Debian's archive, tarred
#      (base.tar) and `podman import`ed as $BASE, the name the Containerfile's FROM uses;
#   2. debs: the .debs each stage installs, downloaded by apt in a throwaway container of the
#      base (host network; the only step that downloads from Debian) into debs/{build,runtime};
#   3. wheels: sriovkit's dependencies for CPython 3.11 manylinux (bookworm's python3) by
#      `pip download`, sriovkit's own wheel by `pip wheel` from this tree;
#   4. `podman build --pull=never --network=none` over a context of those and shim.c.
# podman runs with its own containers.conf and storage (overlay) under the cache directory: nothing
# in /etc/containers is read or written, and the image lives in $CACHE/storage.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

archive=""
print_env=0
while [ $# -gt 0 ]; do
    case "$1" in
        --archive) archive=$(realpath -m "$2"); shift 2 ;;
        --print-env) print_env=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
    esac
done

IMAGE=$(tr -d ' \n' < deploy/IMAGE)
BASE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
MIRROR=${SRIOVKIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SRIOVKIT_IMAGE_CACHE:-/var/cache/sriovkit-image}
BUILD_DEBS="gcc libc6-dev python3 python3-venv"
RUNTIME_DEBS="python3 iproute2 pci.ids"

mkdir -p "$CACHE"/podman
conf=$CACHE/podman/containers.conf
storage=$CACHE/podman/storage.conf
hard_n=$(ulimit -Hn); hard_u=$(ulimit -Hu)
[ "$hard_n" = unlimited ] && hard_n=1024
[ "$hard_u" = unlimited ] && hard_u=4096
nofile=$(( hard_n < 1024 ? hard_n : 1024 )); nproc=$(( hard_u < 4096 ? hard_u : 4096 ))
# Why each setting: tests/runtime/README.md (no systemd, no journald, no CAP_SYS_RESOURCE).
cat > "$conf.tmp" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$CACHE/podman/events.log"
lock_type = "file"
runtime = "runc"
tmp_dir = "$CACHE/podman/tmp"
volume_path = "$CACHE/podman/volumes"
EOF
mv "$conf.tmp" "$conf"
cat > "$storage.tmp" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/podman/run"
EOF
mv "$storage.tmp" "$storage"
export CONTAINERS_CONF=$conf CONTAINERS_STORAGE_CONF=$storage
unset CONTAINERS_REGISTRIES_CONF

if [ "$print_env" = 1 ]; then
    printf 'IMAGE=%s\nCONTAINERS_CONF=%s\nCONTAINERS_STORAGE_CONF=%s\n' "$IMAGE" "$conf" "$storage"
    exit 0
fi

t0=$(date +%s)
step() { echo "build-image: $*"; }
# The podman lock: other users of podman on this machine (the runtime tier's sessions) share
# runc, the CNI result cache and /run/netns; one podman-heavy job at a time.
# A caller that holds it already (the image tier's fixture) says so.
if [ -z "${SRIOVKIT_PODMAN_LOCK_HELD:-}" ]; then
    exec 9>/tmp/sriovkit-podman.lock
    flock 9
fi

# 1. The base image.
if [ ! -s "$CACHE/base.tar" ]; then
    step "debootstrap --variant=minbase $SUITE (once; cached in $CACHE/base.tar)"
    tree=$CACHE/base-tree.tmp
    rm -rf "$tree"
    debootstrap --variant=minbase "$SUITE" "$tree" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree"/tmp/*
    tar -C "$tree" --numeric-owner -cf "$CACHE/base.tar.tmp" .
    mv "$CACHE/base.tar.tmp" "$CACHE/base.tar"
    rm -rf "$tree" "$CACHE/base.imported"
fi
if [ ! -f "$CACHE/base.imported" ] || ! podman image exists "$BASE"; then
    step "podman import base.tar as $BASE"
    podman import --quiet "$CACHE/base.tar" "$BASE" >/dev/null
    touch "$CACHE/base.imported"
fi

# 2. The .debs, resolved against the base by apt itself (so the set is exactly what each stage's
# `apt-get install` needs), keyed by the package lists.
debs_key="$SUITE|$BUILD_DEBS|$RUNTIME_DEBS"
if [ "$(cat "$CACHE/debs/key" 2>/dev/null)" != "$debs_key" ]; then
    step "downloading .debs from Debian's archive: build [$BUILD_DEBS], runtime [$RUNTIME_DEBS]"
    rm -rf "$CACHE/debs"
    mkdir -p "$CACHE/debs/build" "$CACHE/debs/runtime"
    podman run --rm --pull=never --network=host -v "$CACHE/debs:/debs" "$BASE" sh -ec "
        apt-get update -qq
        for set in build:'$BUILD_DEBS' runtime:'$RUNTIME_DEBS'; do
            dir=/debs/\${set%%:*}
            rm -f /var/cache/apt/archives/*.deb
            apt-get install -qq --download-only -y --no-install-recommends \${set#*:} >/dev/null
            cp /var/cache/apt/archives/*.deb \"\$dir\"/
        done"
    echo "$debs_key" > "$CACHE/debs/key"
fi

# 3. The wheelhouse: dependencies (keyed by pyproject's dependency list), then sriovkit itself.
deps=$(.venv/bin/python - <<'EOF'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
EOF
)
wheels=$CACHE/wheels
if [ "$(cat "$wheels/key" 2>/dev/null)" != "$deps" ]; then
    step "pip download of sriovkit's dependencies for cp311 manylinux x86_64"
    rm -rf "$wheels"
    mkdir -p "$wheels"
    printf '%s\n' "$deps" > "$CACHE/requirements.txt"
    .venv/bin/python -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d "$wheels" -r "$CACHE/requirements.txt"
    printf '%s\n' "$deps" > "$wheels/key"
fi

shim_c=src/sriovkit/cni/shim.c
if [ ! -f "$shim_c" ]; then
    echo "build-image: $shim_c is missing" >&2
    exit 1
fi

# Everything the image is made of; unchanged since the last build (and the image still there):
# nothing to do.
inputs=$( { cat Containerfile "$CACHE/debs/key" "$wheels/key" deploy/IMAGE pyproject.toml README.md
            stat -c '%s %Y' "$CACHE/base.tar"
            find src -name '*.egg-info' -prune -o -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum)
if [ "$(cat "$CACHE/image.key" 2>/dev/null)" = "$inputs" ] && podman image exists "$IMAGE"; then
    step "$IMAGE is up to date"
    build=0
else
    build=1
fi

context=$CACHE/context
if [ "$build" = 1 ]; then
rm -rf "$context.tmp"
mkdir -p "$context.tmp/wheels"
cp -a "$CACHE/debs" "$context.tmp/debs"
rm -f "$context.tmp/debs/key"
cp "$wheels"/*.whl "$context.tmp/wheels/"
cp "$shim_c" src/sriovkit/cni/shim.cflags "$context.tmp/"
# sriovkit's own wheel from this tree; a fixed SOURCE_DATE_EPOCH keeps its bytes (and so the
# build's layer cache) the same while the tree is.
SOURCE_DATE_EPOCH=315532800 \
    .venv/bin/python -m pip wheel -q --disable-pip-version-check --no-deps \
    -w "$context.tmp/wheels" "$repo" >/dev/null
rm -rf "$repo/build"
rm -rf "$context"
mv "$context.tmp" "$context"

# 4. The build. --network=none: a RUN step that tried to fetch anything would fail.
step "podman build $IMAGE"
podman build --pull=never --network=none --layers \
    --build-arg "BASE=$BASE" -f "$repo/Containerfile" -t "$IMAGE" "$context" > "$CACHE/build.log" 2>&1 ||
    { tail -30 "$CACHE/build.log" >&2; exit 1; }
# The build stage's layers are untagged: pruning them would defeat the next build's cache, so
# only those of builds older than a day go.
podman image prune -f --filter until=24h >/dev/null 2>&1 || true
echo "$inputs" > "$CACHE/image.key"
fi
id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
step "$IMAGE is ${id:0:12} ($(( $(date +%s) - t0 )) s)"

if [ -n "$archive" ]; then
    mkdir -p "$(dirname "$archive")"
    rm -f "$archive.tmp"
    podman save --quiet --format oci-archive -o "$archive.tmp" "$IMAGE"
    mv "$archive.tmp" "$archive"
    step "wrote $archive (oci-archive)"
fi
