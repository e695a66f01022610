"""A bond's options from sysfs (`/sys/class/net/<bond>/bonding/*`), typed like netlink's.

Pure: the caller reads the files (`host/sysfs` `SysfsReader.bonding`). The kernel writes enums
as `word number` (`active-backup 1`, `lacp_active`'s `on 1`), booleans as 0/1, target lists
space-separated, and an empty file where nothing is set (`primary`, `active_slave`); the 802.3ad
files are empty (or unreadable) outside 802.3ad, and `N/A` means the same. There is no file for
`ns_ip6_target` or (on 6.12) `coupled_control`: those stay None. `num_grat_arp` is the file of
`num_peer_notif`. Checked against every bond the lab's kernel showed (tests/fixtures/bonding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sriovkit.errors import InvalidInput
from sriovkit.model.bond import OPTIONS, BondOptions, parse_option
from sriovkit.model.bond_enums import BondMode

_FILE_OF = {"num_peer_notif": "num_grat_arp"}
"""sysfs file names that differ from the option's name."""


def parse_bonding_sysfs(
    files: Mapping[str, str], where: str = "sysfs bonding"
) -> tuple[BondMode, BondOptions]:
    """(mode, options) from the bonding directory's files, file name -> contents."""
    if "mode" not in files:
        raise InvalidInput(where, "has no mode file: not a bond's bonding/ directory")
    mode = BondMode.parse(files["mode"].strip(), f"{where}/mode")
    values: dict[str, Any] = {}
    for option, info in OPTIONS.items():
        name = _FILE_OF.get(option, option)
        text = files.get(name, "").strip()
        if info.kind == "ipv4s" and name in files and not text:
            values[option] = ()  # the file is there and lists no target (netlink's empty list)
            continue
        if not text or text == "N/A":
            continue
        if info.kind == "ipv4s":
            text = ",".join(text.split())
        elif info.kind is bool:
            text = text.split()[-1]  # `on 1`: the number
        try:
            values[option] = parse_option(option, text)[1]
        except InvalidInput as exc:
            raise InvalidInput(f"{where}/{option}", exc.reason) from None
    return mode, BondOptions(**values)


__all__ = ["parse_bonding_sysfs"]
