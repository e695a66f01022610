"""The CNI plugin `sriov`: the dispatcher shared by the node agent and the in-process path.

`dispatch.execute(env, stdin)` is the whole plugin as a function; `shim.py` is the installed
executable (built-in modules only) that forwards to the agent or falls back to `execute`.
"""

from __future__ import annotations
