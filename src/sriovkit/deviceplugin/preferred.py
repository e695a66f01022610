"""GetPreferredAllocation: which `size` of the available devices kubelet should take.

Order of concerns, each only among the devices the previous ones leave equal:
1. every must_include device (kubelet requires them in the answer);
2. the NUMA node(s) of the must_include devices, so the pod's devices share a node; without
   must_include, the NUMA node with the most free healthy devices if it holds the whole request;
3. the resource's policy: `spread` takes from the PF with the fewest devices chosen so far (a
   bond of VFs survives a PF's failure), `pack` from the PF with the most (fills one PF, leaving
   others whole), `none` keeps kubelet's order;
4. kubelet's order.
Unhealthy or unknown available ids come last: kubelet should not be offered them, but if it
asks for more than there are healthy devices, the answer still has `size` ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sriovkit.deviceplugin.model import Device, Resource


def preferred(
    resource: Resource, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    known = resource.by_id()
    chosen = list(dict.fromkeys(must_include))
    taken = set(chosen)
    candidates = [i for i in dict.fromkeys(available) if i not in taken]
    want = size - len(chosen)
    if want <= 0 or not candidates:
        return chosen
    good = [i for i in candidates if i in known and known[i].healthy]
    bad = [i for i in candidates if i not in known or not known[i].healthy]
    numa = _numa_nodes(chosen, known) or _best_node([known[i] for i in good], want)
    order = {dev_id: n for n, dev_id in enumerate(good)}
    per_pf = Counter(known[i].pf for i in chosen if i in known and known[i].pf is not None)
    left = Counter(known[i].pf for i in good if known[i].pf is not None)
    pool = list(good)

    def key(dev_id: str) -> tuple[int, int, int, int]:
        dev = known[dev_id]
        tier = 0 if not numa or dev.numa in numa else 1
        if resource.policy == "none" or dev.pf is None:
            return (tier, 0, 0, order[dev_id])
        if resource.policy == "spread":
            return (tier, per_pf[dev.pf], 0, order[dev_id])
        return (tier, -per_pf[dev.pf], -left[dev.pf], order[dev_id])

    while want > 0 and pool:
        best = min(pool, key=key)
        pool.remove(best)
        chosen.append(best)
        pf = known[best].pf
        if pf is not None:
            per_pf[pf] += 1
            left[pf] -= 1
        want -= 1
    chosen.extend(bad[:want])
    return chosen


def _numa_nodes(ids: Sequence[str], known: dict[str, Device]) -> set[int]:
    return {d.numa for i in ids if (d := known.get(i)) is not None and d.numa is not None}


def _best_node(devices: Sequence[Device], want: int) -> set[int]:
    free = Counter(d.numa for d in devices if d.numa is not None)
    if not free:
        return set()
    node, count = min(free.items(), key=lambda kv: (-kv[1], kv[0]))
    return {node} if count >= want else set()
