"""Simulated Linux hosts: sysfs/procfs trees with real-looking SR-IOV hardware, plus a kernel
emulation for writes, so every layer can run without the hardware.

```python
from sriovkit.sim import create_host
host = create_host(tmp_path, ["e810", "82576"], vfs=4)
```

The names below are imported when first asked for: a process that only needs the fake netlink
seam or the simulated events (the agent on a simulated host) does not pay for the tree
builder, the card profiles and the machine model (~100 ms of imports).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sriovkit.sim.host import PfRecord, SimHost, create_host
    from sriovkit.sim.profiles import PROFILES, CardProfile, profile_names

_LAZY = {
    "PROFILES": "sriovkit.sim.profiles",
    "CardProfile": "sriovkit.sim.profiles",
    "profile_names": "sriovkit.sim.profiles",
    "PfRecord": "sriovkit.sim.host",
    "SimHost": "sriovkit.sim.host",
    "create_host": "sriovkit.sim.host",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["PROFILES", "CardProfile", "PfRecord", "SimHost", "create_host", "profile_names"]
