#!/bin/bash
# The main job on a simulated host: see the hardware, make VFs, configure them, bind one to vfio-pci.
# Every command is the real CLI with --root pointing at a generated host tree.
set -euo pipefail
cd "$(dirname "$0")/.."
sk() { echo; echo "\$ sriovkit $*"; .venv/bin/sriovkit "$@"; }

host=${DEMO_HOST:-$PWD/demo-host}
rm -rf "$host"
sk sim profiles
sk sim create "$host" --profile 82576 --profile e810 --profile cx5 --vfs 2
export SRIOVKIT_ROOT=$host
sk inventory
sk inventory --all
sk show enp59s0f0
sk vfs enp59s0f0 --count 4 --dry-run
sk vfs enp59s0f0 --count 4
sk vf set enp59s0f0 0 --mac 02:00:00:00:00:10 --vlan 100 --qos 5 --spoofchk on --trust on
sk vf set 0000:3b:00.0 1 --vlan 200 --max-rate 500
sk vf show enp59s0f0
echo; echo "# igb refuses link-state (EOPNOTSUPP); the VF is left as it was:"
sk vf set enp59s0f0 2 --mac 02:00:00:00:00:12 --state enable || true
sk vf show enp59s0f0 2
echo; echo "# bad input is refused before anything changes:"
sk vf set enp59s0f0 3 --qos 3 || true
sk vfs enp59s0f0 --count 9 || true
echo; echo "# bind a VF to vfio-pci (the simulated kernel loads the module) and back:"
.venv/bin/python -c "from sriovkit.sim.kernel import load_module; from pathlib import Path; load_module(Path('$host'), 'vfio-pci')"
sk vf bind 0000:3b:10.2 --driver vfio-pci
sk vfs enp59s0f0
sk vf bind 0000:3b:10.2 --driver kernel
sk vf reset enp59s0f0 0
sk inventory --json > "$host.json" && head -24 "$host.json"
echo; echo "demo host left at $host (try: sriovkit --root $host inventory)"
