"""`ethtool -i` for one netdev: driver, version, firmware and bus info via ETHTOOL_GDRVINFO.

The firmware version has no sysfs file; only the driver's ethtool hook reports it. This is a
single ioctl on an AF_INET datagram socket in the caller's network namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from sriovkit.model.device import DriverInfo

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
_DRVINFO_SIZE = 196  # u32 cmd, 5 x char[32], char[12], 5 x u32 (include/uapi/linux/ethtool.h)


def _cstr(raw: bytes) -> str | None:
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return text or None


class Ethtool:
    """Driver information of netdevs in the current network namespace."""

    def drvinfo(self, ifname: str) -> DriverInfo | None:
        """What `ethtool -i IFNAME` prints, or None when the interface or ioctl is unavailable."""
        if not ifname or len(ifname) >= 16:
            return None
        buf = ctypes.create_string_buffer(struct.pack("I", ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf))
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError:
            return None
        raw = buf.raw
        return DriverInfo(
            driver=_cstr(raw[4:36]),
            version=_cstr(raw[36:68]),
            firmware=_cstr(raw[68:100]),
            bus_info=_cstr(raw[100:132]),
            extra={"expansion-rom-version": v} if (v := _cstr(raw[132:164])) else {},
        )
