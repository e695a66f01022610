"""Write the `sriov` CNI plugin executable: the shim with its interpreter and paths baked in.

The shim runs as `#!<real python> -IS`: isolated (no PYTHON* variables, no user site, no cwd on
sys.path) and without `site` (~3 ms). With no `site`, the in-process fallback needs to be told
where sriovkit and its dependencies live, so SITE lists the directory holding the `sriovkit`
package and the installing interpreter's site-packages. The interpreter is the resolved real
binary: a venv's `bin/python` symlink would only work if the venv stayed where it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from importlib import resources
from pathlib import Path

import sriovkit
from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.atomicfile import write_file
from sriovkit.host.state import default_state_dir
from sriovkit.model.cni import check_plugin_name

# The lines of the shim's source that install replaces; the default socket itself is defined
# once, as the shim's DEFAULT_SOCKET.
_SOCKET_LINE = "SOCKET = DEFAULT_SOCKET\n"
_SITE_LINE = "SITE: tuple[str, ...] = ()\n"
_SETTINGS_LINE = "SETTINGS: dict[bytes, bytes] = {}\n"


def site_dirs() -> tuple[str, ...]:
    """Where the in-process path finds sriovkit, msgspec and pyroute2."""
    package_parent = str(Path(sriovkit.__file__).resolve().parent.parent)
    paths = sysconfig.get_paths()
    out: list[str] = []
    for entry in (package_parent, paths["purelib"], paths["platlib"]):
        if entry not in out:
            out.append(entry)
    return tuple(out)


def render_shim(
    socket: Path, interpreter: str | None = None, settings: dict[str, str] | None = None
) -> bytes:
    """The plugin file's contents for an agent at `socket`, with `settings` baked in."""
    source = resources.files("sriovkit.cni").joinpath("shim.py").read_text()
    for line in (_SOCKET_LINE, _SITE_LINE, _SETTINGS_LINE):
        if source.count(line) != 1:
            raise HostError(f"the shim source has lost its {line.split()[0]} line; cannot install")
    source = source.replace(_SOCKET_LINE, f"SOCKET = {str(socket)!r}\n")
    source = source.replace(_SITE_LINE, f"SITE: tuple[str, ...] = {site_dirs()!r}\n")
    baked = {k.encode(): v.encode() for k, v in sorted((settings or {}).items())}
    source = source.replace(_SETTINGS_LINE, f"SETTINGS: dict[bytes, bytes] = {baked!r}\n")
    python = interpreter or os.path.realpath(sys.executable)
    return f"#!{python} -IS\n{source}".encode()


def install_shim(
    bin_dir: Path,
    name: str,
    socket: Path,
    *,
    state_dir: Path | None = None,
    root: Path | None = None,
) -> tuple[Path, bool]:
    """Write the plugin `bin_dir/name` atomically (mode 0755); (path, whether it changed).

    `socket`, `state_dir` (default $SRIOVKIT_STATE_DIR or /var/lib/sriovkit) and `root` (a
    simulated host; default the real one) are baked into the shim and win over whatever
    environment a runtime gives it; it sends the last two with every request, so the agent and
    the in-process fallback share one state directory whatever the agent was started with.
    """
    check_plugin_name(name, "--name")
    for field, path in (("--socket", socket), ("--state-dir", state_dir), ("--root", root)):
        if path is not None and not path.is_absolute():
            raise InvalidInput(field, f"{path} is not an absolute path")
    # Both always baked, "/" included: a setting left out would let the caller's env choose it.
    settings = {
        "SRIOVKIT_STATE_DIR": str(state_dir or default_state_dir(os.environ)),
        "SRIOVKIT_ROOT": str(root or "/"),
    }
    if "_socket" not in sys.builtin_module_names:
        # Debian's python3 builds _socket in; pyenv/source builds load it from lib-dynload
        # (~0.3 ms more per call, still no Python-level import). Said, not refused.
        print(
            f"note: {sys.executable} loads _socket as a shared library, not a built-in",
            file=sys.stderr,
        )
    data = render_shim(socket, settings=settings)
    target = bin_dir / name
    with contextlib.suppress(OSError):
        if target.read_bytes() == data and os.access(target, os.X_OK):
            return target, False
    try:
        # Renamed over the old plugin: a runtime exec'ing it sees the old file or the new one.
        write_file(target, data, mode=0o755, parents=True)
    except OSError as exc:
        raise HostError(f"cannot install CNI plugin {target}: {exc.strerror}", exc.errno) from None
    return target, True


__all__ = ["install_shim", "render_shim", "site_dirs"]
