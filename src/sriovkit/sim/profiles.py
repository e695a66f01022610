"""Hardware the simulator can put in a host: real ids, drivers, BAR sizes and SR-IOV geometry.

Figures come from public `lspci -vvv` dumps of the real cards (capability offsets, First VF
Offset / VF Stride per PF, Total VFs, VF BARs) and from the drivers' own limits (igb caps the
82576's 8 VFs at 7, ixgbe the 82599's 64 at 63).
"""

from __future__ import annotations

from dataclasses import dataclass

from sriovkit.sim.hw import (  # re-exported: the profile vocabulary lives in hw
    DRIVERS,
    IO,
    IORESOURCE_IO,
    IORESOURCE_MEM,
    IORESOURCE_MEM_64,
    IORESOURCE_PREFETCH,
    IORESOURCE_SIZEALIGN,
    MEM32,
    MEM64,
    MEM64PF,
    BarDef,
    CapLayout,
    DriverInfo,
    K,
    M,
    resource_flags,
)

__all__ = [
    "DRIVERS",
    "IO",
    "IORESOURCE_IO",
    "IORESOURCE_MEM",
    "IORESOURCE_MEM_64",
    "IORESOURCE_PREFETCH",
    "IORESOURCE_SIZEALIGN",
    "MEM32",
    "MEM64",
    "MEM64PF",
    "PROFILES",
    "BarDef",
    "CapLayout",
    "CardProfile",
    "DriverInfo",
    "K",
    "M",
    "profile_names",
    "resource_flags",
]

# Standard capability layouts (offsets as real cards place them).
_INTEL_STD = ((0x40, "pm"), (0x50, "msi"), (0x70, "msix"), (0xA0, "exp"))
_INTEL_VF = CapLayout(((0x70, "msix"), (0xA0, "exp")), ((0x100, "aer"), (0x150, "ari")), msix=5)


@dataclass(frozen=True, slots=True)
class CardProfile:
    """One SR-IOV capable NIC model as the kernel and lspci see it."""

    name: str
    vendor_name: str
    model: str
    vendor: int
    device: int
    subsys: tuple[int, int]
    revision: int
    driver: str
    vf_driver: str
    vf_device: int
    ports: int
    device_total_vfs: int  # TotalVFs in the SR-IOV capability
    total_vfs: int  # sriov_totalvfs after the driver's own cap
    first_vf_offset: int  # of PF 0
    vf_stride: int
    packed_vfs: bool  # True: each PF's VFs follow the previous PF's (ARI firmware layout)
    link_gen: int  # PCIe generation of the card's link (1=2.5GT/s ... 4=16GT/s)
    link_width: int
    speed_mbps: int
    bars: tuple[BarDef, ...]
    rom_size: int
    vf_bars: tuple[BarDef, ...]
    caps: CapLayout
    vf_caps: CapLayout
    oui: str
    vf_subsys: tuple[int, int] | None = None  # None: same as the PF
    vf_revision: int = 0x01
    page_sizes: int = 0x553
    cls: int = 0x020000

    def vf_offset(self, port: int) -> int:
        """First VF Offset of PF `port` as the firmware lays the VFs out."""
        if not self.packed_vfs:
            return self.first_vf_offset
        # PF k at routing id k: its first VF comes right after PF k-1's last one.
        return self.first_vf_offset - port + port * self.device_total_vfs

    @property
    def summary(self) -> str:
        """One line for `sriovkit sim profiles`."""
        return (
            f"{self.vendor_name} {self.model} [{self.vendor:04x}:{self.device:04x}], "
            f"{self.driver}/{self.vf_driver}, {self.ports} ports, "
            f"{self.total_vfs} VFs per port, {self.speed_mbps // 1000 or 1}G"
        )


def _intel_pf(ext: tuple[tuple[int, str], ...], msix: int) -> CapLayout:
    return CapLayout(_INTEL_STD, ext, msix=msix)


_MLX_PF_EXT = ((0x100, "aer"), (0x150, "ari"), (0x180, "sriov"), (0x1C0, "sec"), (0x230, "acs"))
_MLX_PF = CapLayout(((0x60, "exp"), (0x9C, "msix"), (0x40, "pm")), _MLX_PF_EXT, msix=64)
_MLX_VF = CapLayout(((0x60, "exp"), (0x9C, "msix")), ((0x100, "aer"), (0x150, "ari")), msix=12)

PROFILES: dict[str, CardProfile] = {
    p.name: p
    for p in (
        CardProfile(
            "82576",
            "Intel",
            "82576 Gigabit ET Dual Port Server Adapter",
            0x8086,
            0x10C9,
            (0x8086, 0xA03C),
            0x01,
            "igb",
            "igbvf",
            0x10CA,
            2,
            8,
            7,
            128,
            2,
            False,
            1,
            4,
            1000,
            (
                BarDef(0, 128 * K, MEM32),
                BarDef(1, 4 * M, MEM32),
                BarDef(2, 32, IO),
                BarDef(3, 16 * K, MEM32),
            ),
            4 * M,
            (BarDef(0, 16 * K, MEM64), BarDef(3, 16 * K, MEM64)),
            _intel_pf(((0x100, "aer"), (0x140, "dsn"), (0x150, "ari"), (0x160, "sriov")), 10),
            CapLayout(((0x70, "msix"), (0xA0, "exp")), ((0x100, "aer"), (0x150, "ari")), msix=3),
            "00:1b:21",
        ),
        CardProfile(
            "82599es",
            "Intel",
            "82599ES Ethernet Server Adapter X520-2",
            0x8086,
            0x10FB,
            (0x8086, 0x0003),
            0x01,
            "ixgbe",
            "ixgbevf",
            0x10ED,
            2,
            64,
            63,
            128,
            2,
            False,
            2,
            8,
            10000,
            (BarDef(0, 512 * K, MEM64), BarDef(2, 32, IO), BarDef(4, 16 * K, MEM64)),
            512 * K,
            (BarDef(0, 16 * K, MEM64), BarDef(3, 16 * K, MEM64)),
            _intel_pf(((0x100, "aer"), (0x140, "dsn"), (0x150, "ari"), (0x160, "sriov")), 64),
            CapLayout(((0x70, "msix"), (0xA0, "exp")), ((0x100, "aer"), (0x150, "ari")), msix=3),
            "90:e2:ba",
        ),
        CardProfile(
            "x710",
            "Intel",
            "Ethernet Converged Network Adapter X710-2",
            0x8086,
            0x1572,
            (0x8086, 0x0007),
            0x02,
            "i40e",
            "iavf",
            0x154C,
            2,
            64,
            64,
            16,
            1,
            True,
            3,
            8,
            10000,
            (BarDef(0, 8 * M, MEM64PF), BarDef(3, 32 * K, MEM64PF)),
            512 * K,
            (BarDef(0, 64 * K, MEM64PF), BarDef(3, 16 * K, MEM64PF)),
            _intel_pf(
                ((0x100, "aer"), (0x140, "dsn"), (0x150, "ari"), (0x160, "sriov"), (0x1B0, "acs")),
                129,
            ),
            _INTEL_VF,
            "3c:fd:fe",
            vf_subsys=(0x8086, 0x0000),
        ),
        CardProfile(
            "e810",
            "Intel",
            "Ethernet 100G 2P E810-C Adapter",
            0x8086,
            0x1592,
            (0x8086, 0x000B),
            0x02,
            "ice",
            "iavf",
            0x1889,
            2,
            256,
            256,
            8,
            1,
            True,
            4,
            16,
            100000,
            (BarDef(0, 32 * M, MEM64PF), BarDef(3, 64 * K, MEM64PF)),
            1 * M,
            (BarDef(0, 128 * K, MEM64PF), BarDef(3, 16 * K, MEM64PF)),
            _intel_pf(
                (
                    (0x100, "aer"),
                    (0x148, "ari"),
                    (0x150, "dsn"),
                    (0x160, "sriov"),
                    (0x1B0, "acs"),
                    (0x1D0, "sec"),
                ),
                1024,
            ),
            _INTEL_VF,
            "b4:96:91",
            vf_subsys=(0x8086, 0x0000),
        ),
        CardProfile(
            "e810-xxv4",
            "Intel",
            "Ethernet Network Adapter E810-XXV-4",
            0x8086,
            0x1593,
            (0x8086, 0x0005),
            0x02,
            "ice",
            "iavf",
            0x1889,
            4,
            64,
            64,
            8,
            1,
            True,
            4,
            8,
            25000,
            (BarDef(0, 32 * M, MEM64PF), BarDef(3, 64 * K, MEM64PF)),
            1 * M,
            (BarDef(0, 128 * K, MEM64PF), BarDef(3, 16 * K, MEM64PF)),
            _intel_pf(
                (
                    (0x100, "aer"),
                    (0x148, "ari"),
                    (0x150, "dsn"),
                    (0x160, "sriov"),
                    (0x1B0, "acs"),
                    (0x1D0, "sec"),
                ),
                1024,
            ),
            _INTEL_VF,
            "40:a6:b7",
            vf_subsys=(0x8086, 0x0000),
        ),
        CardProfile(
            "cx5",
            "Mellanox",
            "ConnectX-5 EN MCX512A-ACAT 2x25G",
            0x15B3,
            0x1017,
            (0x15B3, 0x0020),
            0x00,
            "mlx5_core",
            "mlx5_core",
            0x1018,
            2,
            8,
            8,
            2,
            1,
            True,
            3,
            8,
            25000,
            (BarDef(0, 32 * M, MEM64PF),),
            1 * M,
            (BarDef(0, 1 * M, MEM64PF),),
            _MLX_PF,
            _MLX_VF,
            "0c:42:a1",
            vf_subsys=(0x15B3, 0x0020),
            vf_revision=0x00,
            page_sizes=0x7FF,
        ),
        CardProfile(
            "cx6dx",
            "Mellanox",
            "ConnectX-6 Dx MCX623106AN-CDAT 2x100G",
            0x15B3,
            0x101D,
            (0x15B3, 0x0016),
            0x00,
            "mlx5_core",
            "mlx5_core",
            0x101E,
            2,
            16,
            16,
            2,
            1,
            True,
            4,
            16,
            100000,
            (BarDef(0, 32 * M, MEM64PF),),
            1 * M,
            (BarDef(0, 1 * M, MEM64PF),),
            _MLX_PF,
            _MLX_VF,
            "b8:ce:f6",
            vf_subsys=(0x15B3, 0x0016),
            vf_revision=0x00,
            page_sizes=0x7FF,
        ),
        CardProfile(
            "bcm57414",
            "Broadcom",
            "BCM957414A4142CC 2x25G",
            0x14E4,
            0x16D7,
            (0x14E4, 0x1402),
            0x01,
            "bnxt_en",
            "bnxt_en",
            0x16DC,
            2,
            64,
            64,
            2,
            1,
            True,
            3,
            8,
            25000,
            (BarDef(0, 64 * K, MEM64PF), BarDef(2, 64 * K, MEM64PF), BarDef(4, 8 * K, MEM64PF)),
            512 * K,
            (BarDef(0, 16 * K, MEM64PF), BarDef(2, 16 * K, MEM64PF), BarDef(4, 16 * K, MEM64PF)),
            CapLayout(
                ((0x48, "pm"), (0x58, "msi"), (0xA0, "msix"), (0xAC, "exp")),
                ((0x100, "aer"), (0x13C, "dsn"), (0x1B8, "ari"), (0x1C0, "sriov")),
                msix=74,
            ),
            CapLayout(((0xA0, "msix"), (0xAC, "exp")), ((0x100, "aer"), (0x1B8, "ari")), msix=8),
            "00:0a:f7",
            vf_subsys=(0x14E4, 0x1402),
        ),
    )
}


def profile_names() -> list[str]:
    """Names accepted by `create_host(profiles=...)` and `sriovkit sim create --profile`."""
    return sorted(PROFILES)
