#!/bin/sh
# Install what sriovkit needs on a Debian machine (run as root): Debian packages, then a venv.
# Idempotent: a second run installs nothing and takes about a second.
set -eu
cd "$(dirname "$0")/.."

apt_need=""
# podman + runc (with conmon, pulled in by podman): the runtime and image tiers' container
# runtime; debootstrap: the agent image's base (scripts/build-image.sh); gcc + libc6-dev (libc.a):
# the static C CNI shim that install-cni builds (the integration tier runs both shims).
for pkg in pciutils pci.ids iproute2 ethtool iputils-ping containernetworking-plugins make \
           podman runc debootstrap gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || apt_need="$apt_need $pkg"
done
# The runtime tier's image is one busybox. busybox-static and Debian's (dynamic) busybox conflict:
# either will do, so install busybox-static only when neither is there.
if ! dpkg-query -W -f='${Status}' busybox 2>/dev/null | grep -q "ok installed" &&
   ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
    apt_need="$apt_need busybox-static"
fi
# A fresh Debian may lack python3 or its venv module (Debian splits it into python3-venv).
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    apt_need="$apt_need python3 python3-venv python3-pip"
fi
if [ -n "$apt_need" ]; then
    echo "bootstrap: installing Debian packages:$apt_need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $apt_need >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.sriovkit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing sriovkit and its dev tools into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
