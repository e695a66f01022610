"""What each port of a bond was before it joined (MTU, MAC, admin state), kept on disk.

The kernel gives a released port back the MTU and MAC it had when it was enslaved and leaves it
down (measured in the lab), so a MAC sriovkit changed to keep two ports apart, or a port that
was up, would not come back by itself. `sriovkit bond create` records each port's original here
and `bond delete` / `remove-port`, run later by another process, give it back from here.

One JSON file per bond under `<root>/var/lib/sriovkit/bonds/` (the simulated host's root keeps
its own), written atomically, 0600; a bond name is a valid interface name (no `/`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from sriovkit.errors import HostError
from sriovkit.host.atomicfile import write_file
from sriovkit.model.attachment import check_ifname
from sriovkit.model.bond_state import PortOriginal

BONDS_DIR = Path("var/lib/sriovkit/bonds")
"""Where the records live, under the host root."""


class BondRecords:
    """The port originals of every bond sriovkit made on the host at `root`."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / BONDS_DIR

    def _path(self, bond: str) -> Path:
        return self.dir / f"{check_ifname(bond, 'bond name')}.json"

    def save(self, bond: str, originals: Sequence[PortOriginal]) -> None:
        """Record `originals` as the ports of `bond` (replacing what was there)."""
        data = [
            {"name": o.name, "mtu": o.mtu, "mac": o.mac, "up": o.up} for o in originals
        ]
        write_file(self._path(bond), json.dumps(data, indent=1).encode(), mode=0o600, parents=True)

    def load(self, bond: str) -> list[PortOriginal] | None:
        """The recorded originals of `bond`, None when sriovkit has no record of it."""
        path = self._path(bond)
        try:
            data = json.loads(path.read_bytes())
            return [PortOriginal(str(d["name"]), int(d["mtu"]), str(d["mac"]), bool(d["up"]))
                    for d in data]  # fmt: skip
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HostError(f"bond record {path} is unreadable: {exc}") from None

    def original(self, bond: str, port: str) -> PortOriginal | None:
        """The recorded original of one port of `bond`, if any."""
        return next((o for o in self.load(bond) or () if o.name == port), None)

    def add(self, bond: str, original: PortOriginal) -> None:
        """Record one more port of `bond`."""
        kept = [o for o in self.load(bond) or () if o.name != original.name]
        self.save(bond, [*kept, original])

    def drop(self, bond: str, port: str) -> None:
        """Forget one port of `bond` (it was released and given back)."""
        originals = self.load(bond)
        if originals is not None:
            self.save(bond, [o for o in originals if o.name != port])

    def forget(self, bond: str) -> None:
        """Forget `bond` (it was deleted)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(bond))


__all__ = ["BONDS_DIR", "BondRecords"]
