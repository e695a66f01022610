"""The sriovkit node agent: a resident process serving CNI requests from the shim.

See `server` for the socket, the protocol and the threading rules.
"""

from __future__ import annotations
