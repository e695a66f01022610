"""Lay out a simulated host: root buses, root ports, bus numbers, BAR addresses, names, groups.

The layout follows a two-socket Xeon Scalable server: root bus 00 carries the chipset (PCH),
each socket has further PCIe root buses ("stacks") with root ports 00.0-03.0, and each card sits
alone behind a root port. Bus numbers are handed out so that VFs which spill onto following buses
(routing id + offset + n*stride > 0xff) never collide with another card's bus.
"""

from __future__ import annotations

import random

from sriovkit.errors import InvalidInput
from sriovkit.model.pci import PciAddress
from sriovkit.sim.chipset import HOST_BRIDGE, NVME, PCH_FUNCTIONS, PCH_SLOTS, ExtraDevice
from sriovkit.sim.config import BridgeRegs
from sriovkit.sim.layout import (
    CARD_STACKS,
    CPUS_PER_NODE,
    MB,
    ROOT_BUSES,
    ROOT_PORT_IDS,
    Fn,
    Root,
    window,
)
from sriovkit.sim.profiles import DRIVERS, IO, MEM64PF, PROFILES, BarDef, CardProfile
from sriovkit.sim.spec import BarSpec, DevSpec, HostSpec, NetSpec, PfSpec


class Planner:
    """Builds a HostSpec; one instance per host."""

    def __init__(self, seed: int, extras: bool) -> None:
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - MACs, not secrets
        self.extras = extras
        self.roots = {b: Root(b, n, last, i) for i, (b, n, last) in enumerate(ROOT_BUSES)}
        self.devices: list[DevSpec] = []
        self.pfs: list[PfSpec] = []
        self.irq = 24
        self.slot = 10
        self.cards = 0

    # -- placement ---------------------------------------------------------------------------
    def _place(
        self, root: Root, fns: list[Fn]
    ) -> tuple[tuple[int, int] | None, tuple[int, int] | None, tuple[int, int] | None]:
        io: list[tuple[Fn, str, int, int]] = []
        mem: list[tuple[Fn, str, int, int]] = []
        pref: list[tuple[Fn, str, int, int]] = []
        for fn in fns:
            for bar in fn.bars:
                target = io if bar.kind == IO else pref if bar.kind == MEM64PF else mem
                target.append((fn, "bar", bar.index, bar.size))
            if fn.rom_size:
                mem.append((fn, "rom", 0, fn.rom_size))
            for bar in fn.vf_bars:
                target = pref if bar.kind == MEM64PF else mem
                target.append((fn, "vf", bar.index, bar.size * fn.vf_total))
        windows: list[tuple[int, int] | None] = []
        for items, attr, gran in ((io, "io", 0x1000), (mem, "mem", MB), (pref, "mem64", MB)):
            if not items:
                windows.append(None)
                continue
            lo, hi = window(items, getattr(root, attr), gran)
            setattr(root, attr, hi)
            windows.append((lo, hi - 1))
        return windows[0], windows[1], windows[2]

    def _bars(self, fn: Fn, key: str, defs: tuple[BarDef, ...]) -> list[BarSpec]:
        return [BarSpec(b.index, b.size, b.kind, fn.assigned[(key, b.index)]) for b in defs]

    def _spec(
        self,
        fn: Fn,
        addr: PciAddress,
        path: str,
        root: Root,
        role: str,
        net: NetSpec | None = None,
        port_number: int = 0,
        bridge: BridgeRegs | None = None,
    ) -> DevSpec:
        self.irq += 1
        rom = None
        if fn.rom_size:
            rom = BarSpec(6, fn.rom_size, "rom", fn.assigned[("rom", 0)])
        return DevSpec(
            address=str(addr),
            path=path,
            role=role,
            vendor=fn.vendor,
            device=fn.device,
            subsys=fn.subsys,
            revision=fn.revision,
            cls=fn.cls,
            driver=fn.driver,
            numa=root.node,
            irq=self.irq,
            iommu_group=-1,
            caps=fn.caps,
            pcie=fn.pcie,
            link=fn.link,
            bars=self._bars(fn, "bar", fn.bars),
            rom=rom,
            multifunction=fn.multifunction,
            port_number=port_number,
            bridge=bridge,
            net=net,
            profile=fn.profile.name if fn.profile else None,
            port=fn.port,
        )

    def _slot(self, root: Root, fns: list[Fn], buses: int, rp: tuple[int, int, int]) -> str:
        """Put `fns` on a new bus behind root port (slot, function, device id) of `root`."""
        sec = root.next_bus
        sub = sec + buses - 1
        if sub > root.last_bus:
            raise InvalidInput("profiles", f"root bus {root.bus:02x} has no bus numbers left")
        root.next_bus = sub + 1
        io, mem, pref = self._place(root, fns)
        rp_addr = PciAddress(0, root.bus, rp[0], rp[1])
        gen = max(f.link[0] for f in fns)
        width = max(f.link[1] for f in fns)
        port_fn = Fn(
            0,
            0x8086,
            rp[2],
            (0x15D9, 0x095D),
            0x04,
            0x060400,
            "pcieport",
            "rootport:",
            True,
            (max(gen, 3), max(width, 4)),
            (),
        )
        rp_path = f"sys/devices/pci0000:{root.bus:02x}/{rp_addr}"
        self.devices.append(
            self._spec(
                port_fn,
                rp_addr,
                rp_path,
                root,
                "rootport",
                port_number=self._next_slot(),
                bridge=BridgeRegs(root.bus, sec, sub, io, mem, pref),
            )
        )
        return rp_path

    def _next_slot(self) -> int:
        # Physical slot numbers are unique per host (PCH ports take 1 and 9 below).
        self.slot += 1
        return self.slot

    # -- cards ---------------------------------------------------------------------------------
    def _mac(self, oui: str) -> str:
        tail = [self.rng.randrange(256) for _ in range(3)]
        tail[2] &= 0xF0  # room for consecutive port MACs
        return oui + "".join(f":{o:02x}" for o in tail)

    def add_card(self, prof: CardProfile) -> None:
        """Place one card of `prof` behind the next free root port."""
        max_rid = max(
            k + prof.vf_offset(k) + (prof.device_total_vfs - 1) * prof.vf_stride
            for k in range(prof.ports)
        )
        buses = max_rid // 256 + 1
        root = self._next_stack(buses)
        rp_dev = root.next_port
        root.next_port += 1
        fns = [
            Fn(
                k,
                prof.vendor,
                prof.device,
                prof.subsys,
                prof.revision,
                prof.cls,
                prof.driver,
                f"pf:{prof.name}",
                True,
                (prof.link_gen, prof.link_width),
                prof.bars,
                prof.rom_size,
                prof.vf_bars,
                prof.device_total_vfs,
                multifunction=prof.ports > 1,
                profile=prof,
                port=k,
            )
            for k in range(prof.ports)
        ]
        rp_path = self._slot(root, fns, buses, (rp_dev, 0, ROOT_PORT_IDS[rp_dev % 4]))
        sec = root.next_bus - buses
        base_mac = self._mac(prof.oui)
        ppn = DRIVERS[prof.driver].phys_port_name
        for fn in fns:
            addr = PciAddress(0, sec, 0, fn.fn)
            mac = base_mac[:-2] + f"{int(base_mac[-2:], 16) + fn.fn:02x}"
            base = f"enp{sec}s0f{fn.fn}"
            net = NetSpec(
                base + (f"np{fn.port}" if ppn else ""),
                mac,
                prof.speed_mbps,
                f"p{fn.port}" if ppn else None,
            )
            self.devices.append(self._spec(fn, addr, f"{rp_path}/{addr}", root, "pf", net))
            sriov_cap = next(off for off, name in prof.caps.ext if name == "sriov")
            self.pfs.append(
                PfSpec(
                    address=str(addr),
                    profile=prof.name,
                    port=fn.port,
                    total_vfs=prof.total_vfs,
                    device_total=prof.device_total_vfs,
                    offset=prof.vf_offset(fn.port),
                    stride=prof.vf_stride,
                    vf_device=prof.vf_device,
                    vf_driver=prof.vf_driver,
                    vf_bars=self._bars(fn, "vf", prof.vf_bars),
                    sriov_cap=sriov_cap,
                    ari_hierarchy=True,
                    vf_name_base=base,
                    seed=self.seed,
                )
            )
        self.cards += 1

    def _next_stack(self, buses: int) -> Root:
        order = CARD_STACKS[self.cards % len(CARD_STACKS) :] + CARD_STACKS
        for bus in order:
            root = self.roots[bus]
            if root.next_port < 4 and root.next_bus + buses - 1 <= root.last_bus:
                return root
        raise InvalidInput("profiles", "too many cards: no free root port with enough buses")

    # -- chipset and friends -----------------------------------------------------------------------
    def _extra_fn(self, extra: ExtraDevice, fn: int, slot: int = 0, mf: bool = False) -> Fn:
        return Fn(
            fn,
            extra.vendor,
            extra.device,
            extra.subsys,
            extra.revision,
            extra.cls,
            extra.driver,
            f"extra:{extra.role}",
            extra.pcie,
            extra.link,
            extra.bars,
            extra.rom_size,
            slot=slot,
            multifunction=mf,
        )

    def add_extras(self) -> None:
        """Host bridge, PCH functions, a plain I210, a VGA and an NVMe drive."""
        root0 = self.roots[0]
        host = Fn(
            0,
            HOST_BRIDGE.vendor,
            HOST_BRIDGE.device,
            HOST_BRIDGE.subsys,
            HOST_BRIDGE.revision,
            HOST_BRIDGE.cls,
            None,
            "host:",
            True,
            (3, 4),
            (),
        )
        pch = [self._extra_fn(e, fn, slot, slot == 0x1F) for (slot, fn), e in PCH_FUNCTIONS.items()]
        self._place(root0, pch)
        self.devices.append(
            self._spec(
                host, PciAddress(0, 0, 0, 0), "sys/devices/pci0000:00/0000:00:00.0", root0, "host"
            )
        )
        for (slot, rp_id, extra), port in zip(PCH_SLOTS, (1, 9), strict=True):
            fn = self._extra_fn(extra, 0)
            rp_path = self._slot(root0, [fn], 1, (slot, 0, rp_id))
            self.devices[-1].port_number = port
            addr = PciAddress(0, root0.next_bus - 1, 0, 0)
            net = None
            if extra.oui:
                net = NetSpec(f"eno{port}", self._mac(extra.oui), extra.speed_mbps)
            self.devices.append(self._spec(fn, addr, f"{rp_path}/{addr}", root0, "endpoint", net))
        for fn in pch:
            addr = PciAddress(0, 0, fn.slot, fn.fn)
            self.devices.append(
                self._spec(fn, addr, f"sys/devices/pci0000:00/{addr}", root0, "endpoint")
            )
        nvme_root = self.roots[0x17]
        fn = self._extra_fn(NVME, 0)
        rp_path = self._slot(nvme_root, [fn], 1, (0, 0, ROOT_PORT_IDS[0]))
        nvme_root.next_port = 1
        addr = PciAddress(0, nvme_root.next_bus - 1, 0, 0)
        self.devices.append(self._spec(fn, addr, f"{rp_path}/{addr}", nvme_root, "endpoint"))

    def finish(self, profiles: list[str]) -> HostSpec:
        """Number IOMMU groups in bus order (PCH 1f.x functions share one) and return the spec."""
        self.devices.sort(key=lambda d: PciAddress.parse(d.address))
        group = 0
        pch_group: int | None = None
        for dev in self.devices:
            if dev.address.startswith("0000:00:1f."):
                if pch_group is None:
                    pch_group = group
                    group += 1
                dev.iommu_group = pch_group
                continue
            dev.iommu_group = group
            group += 1
        roots = [r.spec for r in self.roots.values() if r.spec is not None]
        return HostSpec(
            self.seed, profiles, self.extras, 2, CPUS_PER_NODE, roots, self.devices, self.pfs
        )


def plan_host(profiles: list[str], seed: int, extras: bool) -> HostSpec:
    """The HostSpec for one card per entry of `profiles` (names from PROFILES)."""
    planner = Planner(seed, extras)
    if extras:
        planner.add_extras()
    for name in profiles:
        prof = PROFILES.get(name)
        if prof is None:
            known = ", ".join(sorted(PROFILES))
            raise InvalidInput("profile", f"unknown profile {name!r} (known: {known})")
        planner.add_card(prof)
    return planner.finish(list(profiles))
