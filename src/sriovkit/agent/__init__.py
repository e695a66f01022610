"""The sriovkit node agent: a resident process, a supervisor of services.

- `supervisor`: the process's part (signals, logging, shutdown) and the `Service` protocol;
- `main.run_agent`: which services the agent runs, in order (a new service is added there);
- `cni_service`: the CNI socket server as a service; `server` serves the shim's requests,
  `reader` reads them, `protocol` frames them (the shim, `sriovkit.cni.shim`, has the other side).
"""

from __future__ import annotations
