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
echo; echo "# a bond of two VFs on the two ports (a port or its switch may fail), its files:"
sk bond create bond0 --mode active-backup --port enp59s0f0v0 --port enp59s0f1v0 -o miimon=100 \
    -o primary=enp59s0f0v0
sk bond render bond0 --format networkd
sk bond delete bond0
sk inventory --json > "$host.json" && head -24 "$host.json"
echo; echo "demo host left at $host (try: sriovkit --root $host inventory)"

# Part 2: a VF into a pod and back through the `sriov` CNI plugin. Needs root for netns/veth.
if [ "$(id -u)" != 0 ]; then
    echo; echo "(skipping the CNI part: it needs root for network namespaces)"; exit 0
fi
unset SRIOVKIT_ROOT
work=$(mktemp -d /tmp/sriovkit-demo-cni.XXXXXX)
vhost=$work/host
pod=sriovkit-demo-$$
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    ip netns del "$pod" 2>/dev/null || true
    .venv/bin/sriovkit sim veth-remove "$vhost" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
echo; echo "# a veth-mode host: the VF netdevs are real veth ends, the PF side is simulated"
sk sim veth "$vhost" --vfs 2 --prefix demo
ip netns add "$pod"
sk --root "$vhost" install-cni --bin-dir "$work/bin" --socket "$work/agent.sock" --state-dir "$work/state"
echo; echo "\$ sriovkit --root $vhost agent --socket $work/agent.sock --state-dir $work/state &"
.venv/bin/sriovkit --root "$vhost" agent --socket "$work/agent.sock" --state-dir "$work/state" &
agent_pid=$!
for _ in $(seq 100); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
cat > "$work/net.conf" <<CONF
{"cniVersion": "1.0.0", "name": "demo-sriov", "type": "sriov", "deviceID": "0000:3b:10.0",
 "vlan": 100, "vlanQoS": 2, "mac": "02:00:00:de:00:01", "spoofchk": "on", "mtu": 1400,
 "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": "$work/ipam"}}
CONF
cni() {  # cni VERB CONFIG-FILE: the plugin as a runtime runs it, output kept in $work/out
    echo; echo "\$ CNI_COMMAND=$1 ... $work/bin/sriov < $(basename "$2")"
    rc=0
    CNI_COMMAND=$1 CNI_CONTAINERID=demo-pod CNI_NETNS=/run/netns/$pod CNI_IFNAME=net1 \
        CNI_PATH=/usr/lib/cni "$work/bin/sriov" < "$2" > "$work/out" || rc=$?
    cat "$work/out"; echo " (exit $rc)"
}
cni ADD "$work/net.conf"
echo; echo "\$ ip -n $pod -br addr"; ip -n "$pod" -br addr
sk --root "$vhost" vf show 0000:3b:00.0 0
# CHECK gets the ADD's result as prevResult, as a runtime passes it
.venv/bin/python -c 'import json, sys; c = json.load(open(sys.argv[1]));
c["prevResult"] = json.load(open(sys.argv[2])); json.dump(c, open(sys.argv[3], "w"))' \
    "$work/net.conf" "$work/out" "$work/check.conf"
cni CHECK "$work/check.conf"
cni DEL "$work/net.conf"
cni DEL "$work/net.conf"  # idempotent
echo; echo "# the VF is back in the host netns with its name, MAC and MTU, and its PF-side state:"
ip -br link show demo0v0
sk --root "$vhost" vf show 0000:3b:00.0 0
