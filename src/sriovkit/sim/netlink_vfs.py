"""The fake netlink's VF part: VF attributes through the PF driver's capability table.

Attributes are applied in the kernel's order and the first refused one stops the request with
the driver's errno, leaving the earlier ones applied, exactly as `do_setvfinfo()` does.
"""

from __future__ import annotations

import errno
from dataclasses import replace

from sriovkit.model.vf import ATTR_FIELDS, VfInfo, VfSettings, complete_request
from sriovkit.sim.capabilities import caps_for
from sriovkit.sim.netlink_seam import FakeSeam, refused
from sriovkit.sim.netlink_state import SimLink, World


class FakeVfAttrs(FakeSeam):
    """`VfAttrs` of the fake (see `sriovkit.host.netlink.VfAttrs`)."""

    def _pf(self, w: World, pf: str) -> SimLink:
        link = self._find(w, pf)
        if not link.sriov:
            raise refused(errno.EOPNOTSUPP, f"{pf} has no SR-IOV VFs")
        return link

    def vfs(self, pf: str) -> list[VfInfo]:
        """The VF attributes the PF reports."""
        # A read: the world is saved only if this read initialised the VF table (World.changed).
        return self._run(lambda w: list(w.vf_table(self._pf(w, pf)).values()))

    def set_vf(self, pf: str, index: int, settings: VfSettings) -> None:
        """One VF request, applied attribute by attribute in kernel order (see module doc)."""

        def apply(w: World) -> None:
            self.requests += 1
            link = self._pf(w, pf)
            table = w.vf_table(link)
            what = f"failed to set VF {index} on {pf}"
            if not 0 <= index < len(table):
                raise refused(errno.EINVAL, what)
            caps = caps_for(link.driver)
            current = table[index]
            wanted = current.with_settings(complete_request(current, settings))
            for attr in settings.attrs():
                # Each attribute is applied on its own, on top of what was applied before it.
                step = _only(ATTR_FIELDS[attr], wanted, current)
                code = caps.refusal(attr, step, carrier=link.carrier and link.up, speed=link.speed)
                if code is not None:
                    raise refused(code, f"{what} ({attr.value})")
                current = step
                table[index] = current

        self._run(apply, write=True)


def _only(names: tuple[str, ...], wanted: VfInfo, current: VfInfo) -> VfInfo:
    return replace(current, **{n: getattr(wanted, n) for n in names})


__all__ = ["FakeVfAttrs"]
