"""Simulated Linux hosts: sysfs/procfs trees with real-looking SR-IOV hardware, plus a kernel
emulation for writes, so every layer can run without the hardware.

```python
from sriovkit.sim import create_host
host = create_host(tmp_path, ["e810", "82576"], vfs=4)
```
"""

from __future__ import annotations

from sriovkit.sim.host import PfRecord, SimHost, create_host
from sriovkit.sim.profiles import PROFILES, CardProfile, profile_names

__all__ = ["PROFILES", "CardProfile", "PfRecord", "SimHost", "create_host", "profile_names"]
