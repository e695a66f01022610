"""The real netlink seam on pyroute2, composed of its parts by concern.

`Pyroute2Netlink` is every seam of `sriovkit.host.netlink` on the running kernel: links
(`_pyroute2_links.py`), VF attributes (`_pyroute2_vfs.py`), addresses and routes
(`_pyroute2_addrs.py`),
bonds (`_pyroute2_bonds.py`), over one socket and link cache (`_pyroute2_conn.py`). These modules
are the only ones that import pyroute2, and only when a seam is opened (~140 ms): the CNI shim
and the inventory path never import them (`wiring.open_netlink` imports this one lazily).
"""

from __future__ import annotations

from sriovkit.host._pyroute2_addrs import Pyroute2Addresses
from sriovkit.host._pyroute2_bonds import Pyroute2Bonds
from sriovkit.host._pyroute2_conn import socket_in_netns
from sriovkit.host._pyroute2_links import Pyroute2Links
from sriovkit.host._pyroute2_vfs import Pyroute2VfAttrs, parse_vfinfo, vf_request


class Pyroute2Netlink(Pyroute2Links, Pyroute2VfAttrs, Pyroute2Addresses, Pyroute2Bonds):
    """The netlink seam on the running kernel, bound to the caller's netns or to `netns`."""


__all__ = ["Pyroute2Netlink", "parse_vfinfo", "socket_in_netns", "vf_request"]
