"""A bond's persistent configuration: render and parse back the files hosts actually use.

Pure: `render(spec)` gives file names and texts, `parse(files)` takes them back; a caller writes
and reads the files. One module per format, each citing where its rules come from:

- `ifcfg`: network-scripts `ifcfg-<bond>` (BONDING_OPTS) and `ifcfg-<port>` (MASTER=, SLAVE=yes);
- `modprobe`: `/etc/modprobe.d/<bond>.conf` (`alias <bond> bonding`, `options <bond> ...`);
- `nm`: NetworkManager keyfiles, the bond's and one per port (controller=, [bond-port]);
- `networkd`: systemd-networkd `<bond>.netdev` ([Bond]) and `<port>.network` (Bond=);
- `interfaces`: ifupdown stanzas with ifenslave's `bond-*` options.

Every format keeps the same promise: model -> files -> model is identity for every option it can
express, and `Rendered.unsupported` names every option it cannot (nothing is dropped silently).
Parsing reports, in `Parsed.unknown`, every key or line it met and did not map; text that is not
the format, or a value the kernel would refuse, raises InvalidInput naming the file and key.
"""

from __future__ import annotations

from collections.abc import Mapping

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import BondSpec
from sriovkit.model.bond_files import ifcfg, interfaces, modprobe, networkd, nm
from sriovkit.model.bond_files._common import BondFormat, Parsed, Rendered, Unsupported, without

FORMATS: dict[str, BondFormat] = {
    "ifcfg": BondFormat("ifcfg", "network-scripts ifcfg-<bond> and ifcfg-<port>",
                        ifcfg.render, ifcfg.parse),
    "modprobe": BondFormat("modprobe", "/etc/modprobe.d/<bond>.conf (module parameters)",
                           modprobe.render, modprobe.parse),
    "nm": BondFormat("nm", "NetworkManager keyfiles (.nmconnection)", nm.render, nm.parse),
    "networkd": BondFormat("networkd", "systemd-networkd .netdev and .network",
                           networkd.render, networkd.parse),
    "interfaces": BondFormat("interfaces", "ifupdown /etc/network/interfaces.d/<bond>",
                             interfaces.render, interfaces.parse),
}  # fmt: skip
"""Every format by the name `bond render --format` takes."""


def get_format(name: str) -> BondFormat:
    """The format called `name`, or InvalidInput naming the choices."""
    try:
        return FORMATS[name]
    except KeyError:
        raise InvalidInput("format", f"{name!r} is not one of {', '.join(FORMATS)}") from None


def render(spec: BondSpec, fmt: str) -> Rendered:
    """The files of format `fmt` for `spec`."""
    return get_format(fmt).render(spec)


def parse(fmt: str, files: Mapping[str, str], bond: str | None = None) -> Parsed:
    """The bond `bond` (or the only one) read back from files of format `fmt`."""
    return get_format(fmt).parse(files, bond)


__all__ = [
    "FORMATS",
    "BondFormat",
    "Parsed",
    "Rendered",
    "Unsupported",
    "get_format",
    "parse",
    "render",
    "without",
]
