"""`sriovkit inventory` and `sriovkit show`: print what ops.discover reads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from sriovkit.errors import NotFound
from sriovkit.host.pciids import PciIds
from sriovkit.host.sysfs import Sysfs
from sriovkit.model.device import Names, NetdevLink, PciDevice
from sriovkit.ops import discover
from sriovkit.wiring import is_simulated

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv


def _ids(dev: PciDevice) -> str:
    return f"[{dev.vendor_id:04x}:{dev.device_id:04x}]"


def _name(names: Names, dev: PciDevice) -> str:
    vendor = names.vendor or f"Vendor {dev.vendor_id:04x}"
    device = names.device or f"Device {dev.device_id:04x}"
    return f"{vendor} {device}"


def _net(info: NetdevLink) -> str:
    link = info.operstate or "?"
    if info.carrier is False:
        link += ", no carrier"
    return f"{info.name} {info.mac or '-'} {link}"


def _netdevs(sysfs: Sysfs, dev: PciDevice) -> str:
    parts = []
    for n in dev.netdevs:
        try:
            parts.append(_net(sysfs.netdev_link(n)))
        except NotFound:
            parts.append(n)
    return "; ".join(parts) or "no netdev"


def _pf_label(dev: PciDevice, names: Names, sysfs: Sysfs) -> list[Line]:
    s = dev.sriov
    assert s is not None
    return [
        (str(dev.address), f" {_ids(dev)} {_name(names, dev)}"),
        ("", f"  driver {dev.driver or '-'}  netdev {_netdevs(sysfs, dev)}"
             f"  NUMA {_opt(dev.numa_node)}  IOMMU group {_opt(dev.iommu_group)}"),
        ("", f"  VFs {s.num_vfs}/{s.total_vfs}  offset {s.offset} stride {s.stride}"
             f"  VF device {s.vf_device_id:04x}  SR-IOV cap at {_hexopt(s.cap_offset)}"),
    ]  # fmt: skip


# A line of the inventory tree: (bold part, plain part); the bold part is the PF's address.
Line = tuple[str, str]


def _tree(title: str, nodes: list[tuple[list[Line], list[str]]]) -> Iterator[tuple[str, Line]]:
    """(guide, line) for a two-level tree: nodes of one or more label lines, each with leaves.

    Drawn with the guides rich's Tree draws, but as plain text: rich took ~0.5 s to lay out a
    tree of 4,096 VFs, where the text costs a few milliseconds.
    """
    yield "", ("", title)
    for i, (label, children) in enumerate(nodes):
        last = i == len(nodes) - 1
        yield "└── " if last else "├── ", label[0]
        indent = "    " if last else "│   "
        for line in label[1:]:
            yield indent, line
        for j, child in enumerate(children):
            yield indent + ("└── " if j == len(children) - 1 else "├── "), ("", child)


def _print_tree(lines: Iterable[tuple[str, Line]]) -> None:
    """Plain text to a pipe or file; on a terminal through rich, with the bold parts bold."""
    if not sys.stdout.isatty():
        sys.stdout.write("".join(f"{guide}{bold}{plain}\n" for guide, (bold, plain) in lines))
        return
    from rich.console import Console  # noqa: PLC0415 - rich costs ~40 ms, only a terminal needs it
    from rich.text import Text  # noqa: PLC0415

    text = Text()
    for guide, (bold, plain) in lines:
        text.append(guide)
        if bold:
            text.append(bold, style="bold")
        text.append(plain + "\n")
    Console(highlight=False, soft_wrap=True).print(text, end="")


def _vf_line(dev: PciDevice, sysfs: Sysfs) -> str:
    return (
        f"VF {_opt(dev.vf_index):>3}  {dev.address} {_ids(dev)}  driver {dev.driver or '-'}"
        f"  {_netdevs(sysfs, dev)}  NUMA {_opt(dev.numa_node)}  IOMMU {_opt(dev.iommu_group)}"
    )


def _opt(v: object) -> str:
    return "-" if v is None else str(v)


def _hexopt(v: int | None) -> str:
    return "-" if v is None else f"{v:#x}"


def _lspci_line(dev: PciDevice, names: Names, rev: int | None) -> str:
    """One line as `lspci -nn -D` prints it (unknown names read "Device", as pciutils does)."""
    cls = names.class_name or "Class"
    vendor_device = " ".join(x for x in (names.vendor, names.device or "Device") if x)
    line = (
        f"{dev.address} {cls} [{dev.class_code >> 8:04x}]: {vendor_device} "
        f"[{dev.vendor_id:04x}:{dev.device_id:04x}]"
    )
    return line + (f" (rev {rev:02x})" if rev else "")


def _write_inventory_json(doc: dict[str, Any]) -> None:
    """One device per line: still readable, but every line goes through json's C encoder.

    `json.dump(indent=...)` falls back to the pure-Python encoder, which costs ~50 ms on a
    host with 4,096 VFs; compact devices on their own lines cost a fraction of that.
    """
    out = sys.stdout
    out.write('{\n  "devices": [\n')
    devices = doc["devices"]
    for i, dev in enumerate(devices):
        out.write("    " + json.dumps(dev) + (",\n" if i < len(devices) - 1 else "\n"))
    rest = {k: v for k, v in doc.items() if k != "devices"}
    out.write("  ]" + "".join(f",\n  {json.dumps(k)}: {json.dumps(v)}" for k, v in rest.items()))
    out.write("\n}\n")


@click.command()
@click.option("--all", "show_all", is_flag=True, help="List every PCI function like `lspci -nn`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output with stable keys.")
@click.pass_obj
def inventory(env: CliEnv, show_all: bool, as_json: bool) -> None:
    """SR-IOV PFs with their VFs, plus the other NICs (or every PCI function with --all)."""
    # Read-only: the plain seam reads a simulated tree as well, and the kernel-emulating one
    # (`wiring.open_sysfs`) only matters for writes while costing ~20 ms to set up.
    sysfs = Sysfs(env.root)
    inv = discover.collect(sysfs, PciIds())
    if as_json:
        _write_inventory_json(discover.inventory_json(inv))
        return
    if inv.pci_ids_note:
        click.echo(f"note: {inv.pci_ids_note}; names are shown as ids", err=True)
    if show_all:
        for dev in inv.devices:
            click.echo(_lspci_line(dev, inv.names[dev.address], sysfs.revision(dev.address)))
        return
    where = f" (simulated host at {env.root})" if is_simulated(env.root) else ""
    pfs = [
        (_pf_label(pf, inv.names[pf.address], sysfs), [_vf_line(vf, sysfs) for vf in vfs])
        for pf, vfs in inv.families()
    ]
    others: list[tuple[list[Line], list[str]]] = [
        (
            [("", f"{dev.address} {_ids(dev)} {_name(inv.names[dev.address], dev)}  "
                  f"driver {dev.driver or '-'}  netdev {_netdevs(sysfs, dev)}"
                  f"  NUMA {_opt(dev.numa_node)}")],
            [],
        )
        for dev in inv.other_nics
    ]  # fmt: skip
    _print_tree([
        *_tree(f"SR-IOV physical functions{where}: {len(pfs)}", pfs),
        *_tree(f"Other network functions: {len(others)}", others),
    ])  # fmt: skip


@click.command()
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(env: CliEnv, target: str, as_json: bool) -> None:
    """Everything known about one device: ADDRESS (0000:3b:00.0 or 3b:00.0) or IFNAME."""
    from sriovkit.host.ethtool import Ethtool  # noqa: PLC0415

    sysfs = Sysfs(env.root)  # read-only, as in `inventory`
    addr = discover.resolve(sysfs, target)
    # ethtool asks the running kernel, which only describes the real host, never a simulated root.
    ethtool = Ethtool() if str(env.root) == "/" else None
    d = discover.detail(sysfs, PciIds(), addr, ethtool)
    data = discover.device_json(d.device, d.names)
    data["revision"] = None if d.revision is None else f"{d.revision:02x}"
    data["driver_info"] = None
    if d.driver_info is not None:
        data["driver_info"] = {
            "driver": d.driver_info.driver,
            "version": d.driver_info.version,
            "firmware": d.driver_info.firmware,
            "bus_info": d.driver_info.bus_info,
        }
    data["capabilities"] = [
        {"offset": c.offset, "id": c.cap_id, "name": c.name, "extended": c.extended,
         "version": c.version}
        for c in (d.config.capabilities if d.config else ())
    ]  # fmt: skip
    if d.config and d.config.pcie:
        p = d.config.pcie
        data["pcie"] = {"type": p.port_type, "link_cap": f"{p.max_speed} x{p.max_width}",
                        "link_status": f"{p.speed} x{p.width}"}  # fmt: skip
    if d.config and d.config.sriov:
        c = d.config.sriov
        data["sriov_capability"] = {
            "initial_vfs": c.initial_vfs, "total_vfs": c.total_vfs, "num_vfs": c.num_vfs,
            "first_vf_offset": c.first_vf_offset, "vf_stride": c.vf_stride,
            "vf_device_id": f"{c.vf_device_id:04x}", "vf_enable": c.vf_enable,
            "supported_page_sizes": f"{c.supported_page_sizes:08x}",
            "system_page_size": f"{c.system_page_size:08x}",
        }  # fmt: skip
    data["iomem"] = [
        {"start": f"{r.start:#x}", "end": f"{r.end:#x}", "claimed_by": r.claimed_by}
        for r in d.iomem
    ]
    data["netdev_info"] = [
        {"name": n.name, "mac": n.mac, "mtu": n.mtu, "operstate": n.operstate,
         "carrier": n.carrier, "speed_mbps": n.speed, "ifindex": n.ifindex,
         "phys_port_name": n.phys_port_name, "phys_switch_id": n.phys_switch_id}
        for n in d.netdevs
    ]  # fmt: skip
    data["vfs"] = [{"index": v.vf_index, "address": str(v.address)} for v in d.vfs]
    if d.config_error:
        data["config_error"] = d.config_error
    if as_json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    _print_detail(data)


def _print_detail(data: dict[str, object]) -> None:
    order = ["address", "vendor_name", "device_name", "vendor_id", "device_id", "class",
             "class_name", "revision", "subsystem_vendor_id", "subsystem_device_id",
             "subsystem_name", "driver", "numa_node", "iommu_group", "modalias", "netdevs",
             "physfn", "vf_index"]  # fmt: skip
    for key in order:
        value = data.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        click.echo(f"{key + ':':<22}{'-' if value is None else value}")
    for section in ("driver_info", "pcie", "sriov", "sriov_capability"):
        block = data.get(section)
        if isinstance(block, dict):
            click.echo(f"{section}:")
            for k, v in block.items():
                click.echo(f"  {k + ':':<22}{'-' if v is None else v}")
    for section, fmt in (
        ("capabilities", _fmt_cap),
        ("iomem", _fmt_iomem),
        ("netdev_info", _fmt_netdev),
        ("vfs", lambda v: f"VF {v['index']} {v['address']}"),
    ):
        items = data.get(section)
        if isinstance(items, list) and items:
            click.echo(f"{section}:")
            for item in items:
                click.echo(f"  {fmt(item)}")


def _fmt_cap(c: dict[str, Any]) -> str:
    version = f" v{c['version']}" if c["extended"] else ""
    return f"[{c['offset']:x}{version}] {c['name']}"


def _fmt_iomem(r: dict[str, Any]) -> str:
    return f"{r['start']}-{r['end']}" + (f" ({r['claimed_by']})" if r["claimed_by"] else "")


def _fmt_netdev(n: dict[str, Any]) -> str:
    return (
        f"{n['name']} mac {n['mac']} mtu {n['mtu']} {n['operstate']} "
        f"speed {n['speed_mbps'] if n['speed_mbps'] is not None else '-'}"
    )
