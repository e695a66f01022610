"""The simulated host's fixed description, saved as `.sriovkit-sim/host.json`.

Everything needed to (re)generate any part of the tree lives here: each function's place,
ids, BAR addresses and driver, and each PF's SR-IOV geometry, so the kernel emulation can create
VFs later exactly as the builder would have.
"""

from __future__ import annotations

import random
import zlib

import msgspec

from sriovkit.model.pci import PciAddress, vf_address
from sriovkit.sim.chipset import HOST_BRIDGE, NVME, PCH_FUNCTIONS, PCH_SLOTS, ROOT_PORT_CAPS
from sriovkit.sim.config import BridgeRegs, ConfigInput, SriovRegs, build_config, serial_from_mac
from sriovkit.sim.profiles import DRIVERS, PROFILES, BarDef, CapLayout, CardProfile

SPEC_VERSION = 1


class BarSpec(msgspec.Struct, frozen=True):
    """An assigned BAR (for a PF's VF BARs: `start` is VF 0's, `size` is one VF's)."""

    index: int
    size: int
    kind: str
    start: int

    @property
    def definition(self) -> BarDef:
        """The profile-level BAR description."""
        return BarDef(self.index, self.size, self.kind)


class NetSpec(msgspec.Struct, frozen=True):
    """The netdev a network driver registers for a function."""

    name: str
    mac: str
    speed: int
    phys_port_name: str | None = None


class DevSpec(msgspec.Struct):
    """One PCI function that exists from boot (not a VF)."""

    address: str
    path: str
    role: str  # "pf", "rootport", "endpoint", "host"
    vendor: int
    device: int
    subsys: tuple[int, int]
    revision: int
    cls: int
    driver: str | None
    numa: int
    irq: int
    iommu_group: int
    caps: str
    pcie: bool
    link: tuple[int, int]
    bars: list[BarSpec] = msgspec.field(default_factory=list)
    rom: BarSpec | None = None
    multifunction: bool = False
    port_number: int = 0
    bridge: BridgeRegs | None = None
    net: NetSpec | None = None
    profile: str | None = None
    port: int = 0


class PfSpec(msgspec.Struct):
    """SR-IOV parameters of one PF: enough to create its VFs at any later time."""

    address: str
    profile: str
    port: int
    total_vfs: int
    device_total: int
    offset: int
    stride: int
    vf_device: int
    vf_driver: str
    vf_bars: list[BarSpec]
    sriov_cap: int
    ari_hierarchy: bool
    vf_name_base: str
    seed: int

    def vf_address(self, index: int) -> PciAddress:
        """Address of VF `index` (routing id + offset + index * stride)."""
        return vf_address(PciAddress.parse(self.address), self.offset, self.stride, index)

    def vf_mac(self, index: int) -> str:
        """The VF netdev's MAC: random-looking, locally administered, stable per seed."""
        rnd = random.Random(f"{self.seed}:{self.address}:{index}")  # noqa: S311
        octets = [rnd.randrange(256) for _ in range(6)]
        octets[0] = (octets[0] & 0xFC) | 0x02
        return ":".join(f"{o:02x}" for o in octets)


class RootBus(msgspec.Struct, frozen=True):
    """A PCI root bus (host bridge) and the address windows the firmware gave it."""

    bus: int
    node: int
    io: tuple[int, int]
    mem: tuple[int, int]
    mem64: tuple[int, int]


class HostSpec(msgspec.Struct):
    """The whole simulated host."""

    seed: int
    profiles: list[str]
    extras: bool
    nodes: int
    cpus_per_node: int
    root_buses: list[RootBus]
    devices: list[DevSpec]
    pfs: list[PfSpec]
    version: int = SPEC_VERSION

    def device(self, address: str) -> DevSpec | None:
        """The boot-time function at `address`, if any."""
        for dev in self.devices:
            if dev.address == address:
                return dev
        return None

    def pf(self, address: str) -> PfSpec | None:
        """The PF record for `address`, if it is a PF."""
        for pf in self.pfs:
            if pf.address == address:
                return pf
        return None


def encode(spec: HostSpec) -> bytes:
    """host.json bytes."""
    return msgspec.json.format(msgspec.json.encode(spec), indent=1)


def decode(data: bytes) -> HostSpec:
    """Parse host.json."""
    return msgspec.json.decode(data, type=HostSpec)


def caps_of(dev: DevSpec) -> CapLayout:
    """The capability layout named by `dev.caps`."""
    kind, _, name = dev.caps.partition(":")
    if kind == "pf":
        return PROFILES[name].caps
    if kind == "rootport":
        return ROOT_PORT_CAPS
    if kind == "host":
        return HOST_BRIDGE.caps
    if name == "nvme":
        return NVME.caps
    for extra in (*PCH_FUNCTIONS.values(), *(e for _, _, e in PCH_SLOTS)):
        if extra.role == name:
            return extra.caps
    return CapLayout(())


def _ari_next(dev: DevSpec) -> int:
    if dev.role != "pf" or dev.profile is None:
        return 0
    nxt = dev.port + 1
    return nxt if nxt < PROFILES[dev.profile].ports else 0


def device_config(dev: DevSpec, pf: PfSpec | None, num_vfs: int, bound: bool) -> bytes:
    """Config space of a boot-time function in its current state."""
    sriov = None
    if pf is not None:
        sriov = SriovRegs(
            pf.device_total,
            num_vfs,
            pf.offset,
            pf.stride,
            pf.vf_device,
            PciAddress.parse(pf.address).function,
            PROFILES[pf.profile].page_sizes,
            tuple((b.definition, b.start) for b in pf.vf_bars),
            pf.ari_hierarchy,
        )
    serial = serial_from_mac(dev.net.mac) if dev.net else zlib.crc32(dev.address.encode())
    ci = ConfigInput(
        vendor=dev.vendor,
        device=dev.device,
        subsys=dev.subsys,
        revision=dev.revision,
        cls=dev.cls,
        caps=caps_of(dev),
        pcie=dev.pcie,
        link=dev.link,
        bars=tuple((b.definition, b.start) for b in dev.bars),
        rom=(dev.rom.size, dev.rom.start) if dev.rom else None,
        multifunction=dev.multifunction,
        irq_line=dev.irq & 0xFF,
        bound=bound,
        bridge=dev.bridge,
        sriov=sriov,
        serial=serial,
        ari_next=_ari_next(dev),
        port_number=dev.port_number,
    )
    return build_config(ci)


def vf_config(pf_dev: DevSpec, pf: PfSpec, bound: bool) -> bytes:
    """Config space of any VF of `pf` (identical for all its VFs)."""
    prof: CardProfile = PROFILES[pf.profile]
    ci = ConfigInput(
        vendor=pf_dev.vendor,
        device=pf.vf_device,
        subsys=prof.vf_subsys or prof.subsys,
        revision=prof.vf_revision,
        cls=prof.cls,
        caps=prof.vf_caps,
        pcie=True,
        link=pf_dev.link,
        bars=tuple((b.definition, 0) for b in pf.vf_bars),
        bound=bound,
        is_vf=True,
    )
    return build_config(ci)


def netdev_driver(driver: str | None) -> bool:
    """True when `driver` registers a netdev for the functions it binds."""
    return driver is not None and driver in DRIVERS and DRIVERS[driver].netdev
