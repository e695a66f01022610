"""Write the `sriov` CNI plugin executable: the static C shim or the Python shim.

`--shim static` installs the C shim (`shim.c`, compiled here or given prebuilt) with its settings
in `sriovkit-cni.conf` beside it (`cshim.py`); `--shim python` the Python shim with its
interpreter and settings baked in; `auto` (the default) the static one when it can be had (a
prebuilt binary, or a C compiler that builds it), else the Python one. Every file is replaced
atomically (temp, fsync, rename): a runtime exec'ing the plugin sees the old file or the new one.

The Python shim runs as `#!<real python> -IS`: isolated (no PYTHON* variables, no user site, no
cwd on sys.path) and without `site` (~3 ms). With no `site`, the in-process fallback needs to be
told where sriovkit and its dependencies live, so SITE lists the directory holding the `sriovkit`
package and the installing interpreter's site-packages. The interpreter is the resolved real
binary: a venv's `bin/python` symlink would only work if the venv stayed where it was.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import sysconfig
from importlib import resources
from pathlib import Path

import sriovkit
from sriovkit.cni import cshim
from sriovkit.errors import HostError, InvalidInput
from sriovkit.host.atomicfile import write_file
from sriovkit.host.state import default_state_dir
from sriovkit.model.cni import check_plugin_name

# The lines of the shim's source that install replaces; the default socket itself is defined
# once, as the shim's DEFAULT_SOCKET.
_SOCKET_LINE = "SOCKET = DEFAULT_SOCKET\n"
_SITE_LINE = "SITE: tuple[str, ...] = ()\n"
_SETTINGS_LINE = "SETTINGS: dict[bytes, bytes] = {}\n"
_FALLBACK_LINE = "FALLBACK = True\n"

SHIM_KINDS = ("auto", "static", "python")
NO_FALLBACK = "none"
"""`--fallback none`: no in-process path (the pending-DEL journal takes DEL)."""


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
    socket: Path,
    interpreter: str | None = None,
    settings: dict[str, str] | None = None,
    *,
    site: tuple[str, ...] | None = None,
    fallback: bool = True,
) -> bytes:
    """The Python shim's contents for an agent at `socket`, with `settings` baked in; `site`
    (default `site_dirs()`) is where its in-process path finds sriovkit, `fallback` False
    leaves that path out."""
    source = resources.files("sriovkit.cni").joinpath("shim.py").read_text()
    for line in (_SOCKET_LINE, _SITE_LINE, _SETTINGS_LINE, _FALLBACK_LINE):
        if source.count(line) != 1:
            raise HostError(f"the shim source has lost its {line.split()[0]} line; cannot install")
    source = source.replace(_SOCKET_LINE, f"SOCKET = {str(socket)!r}\n")
    dirs = () if not fallback else site_dirs() if site is None else site
    source = source.replace(_SITE_LINE, f"SITE: tuple[str, ...] = {dirs!r}\n")
    source = source.replace(_FALLBACK_LINE, f"FALLBACK = {fallback!r}\n")
    baked = {k.encode(): v.encode() for k, v in sorted((settings or {}).items())}
    source = source.replace(_SETTINGS_LINE, f"SETTINGS: dict[bytes, bytes] = {baked!r}\n")
    python = interpreter or os.path.realpath(sys.executable)
    return f"#!{python} -IS\n{source}".encode()


def _replace(target: Path, data: bytes, mode: int) -> bool:
    """Write `target` atomically unless it already holds `data` with `mode`; whether it changed."""
    with contextlib.suppress(OSError):
        st = os.stat(target, follow_symlinks=False)
        same_kind = stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == mode
        if same_kind and target.read_bytes() == data:
            return False
    try:
        # Renamed over the old file: a runtime exec'ing the plugin sees the old file or the new.
        write_file(target, data, mode=mode, parents=True)
    except OSError as exc:
        raise HostError(f"cannot install CNI plugin {target}: {exc.strerror}", exc.errno) from None
    return True


def _static_binary(kind: str, shim_binary: Path | None) -> bytes | None:
    """The static shim's bytes, or None when `kind` is auto and it cannot be had."""
    if shim_binary is not None:
        return cshim.read_binary(shim_binary)
    compiler = cshim.find_compiler()
    if compiler is None:
        if kind == "static":
            raise HostError(
                "no C compiler (cc, gcc, clang or $CC) to build the static CNI shim; "
                "give a prebuilt one with --shim-binary, or use --shim python"
            )
        return None
    try:
        return cshim.compile_shim(compiler)
    except HostError as exc:
        if kind == "static":
            raise
        print(f"note: {exc}; installing the Python shim", file=sys.stderr)
        return None


def install_shim(
    bin_dir: Path,
    name: str,
    socket: Path,
    *,
    state_dir: Path | None = None,
    root: Path | None = None,
    kind: str = "python",
    shim_binary: Path | None = None,
    fallback: Path | str | None = None,
) -> tuple[Path, bool]:
    """Write the plugin `bin_dir/name` atomically (mode 0755); (path, whether it changed).

    `socket`, `state_dir` (default $SRIOVKIT_STATE_DIR or /var/lib/sriovkit) and `root` (a
    simulated host; default the real one) are fixed at install and win over whatever
    environment a runtime gives the plugin; it sends the last two with every request, so the
    agent and the in-process fallback share one state directory whatever the agent was started
    with. `kind` is one of `SHIM_KINDS`; `fallback` a host Python with sriovkit for the
    in-process path when the agent is unreachable, or "none" (the static shim's default; the
    Python shim's default is its own interpreter).
    """
    check_plugin_name(name, "--name")
    if kind not in SHIM_KINDS:
        raise InvalidInput("--shim", f"{kind!r} is not one of {', '.join(SHIM_KINDS)}")
    if shim_binary is not None and kind == "python":
        raise InvalidInput("--shim-binary", "is for the static shim, not --shim python")
    python = None if fallback in (None, NO_FALLBACK) else Path(str(fallback))
    fields = (("--socket", socket), ("--state-dir", state_dir), ("--root", root),
              ("--fallback", python))  # fmt: skip
    for field, path in fields:
        if path is not None and not path.is_absolute():
            raise InvalidInput(field, f"{path} is not an absolute path")
    state = state_dir or default_state_dir(os.environ)
    host = root or Path("/")
    site = cshim.probe_python(python) if python is not None else None
    binary = None if kind == "python" else _static_binary(kind, shim_binary)
    target = bin_dir / name
    if binary is not None:
        config = cshim.render_config(socket, state, host, python)
        changed = _replace(bin_dir / cshim.CONFIG_NAME, config, 0o644)
        return target, _replace(target, binary, 0o755) or changed
    # Both always baked, "/" included: a setting left out would let the caller's env choose it.
    settings = {"SRIOVKIT_STATE_DIR": str(state), "SRIOVKIT_ROOT": str(host)}
    if "_socket" not in sys.builtin_module_names:
        # Debian's python3 builds _socket in; pyenv/source builds load it from lib-dynload
        # (~0.3 ms more per call, still no Python-level import). Said, not refused.
        print(
            f"note: {sys.executable} loads _socket as a shared library, not a built-in",
            file=sys.stderr,
        )
    data = render_shim(
        socket,
        interpreter=None if python is None else str(python),
        settings=settings,
        site=site,
        fallback=fallback != NO_FALLBACK,
    )
    return target, _replace(target, data, 0o755)


__all__ = ["NO_FALLBACK", "SHIM_KINDS", "install_shim", "render_shim", "site_dirs"]
