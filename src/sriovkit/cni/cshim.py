"""The static C shim (`shim.c`): compile it, check a prebuilt one, write its config.

`shim.c` ships as package data, so an installed sriovkit can build it where a C compiler is
present (`sriovkit install-cni --shim static|auto`); the image build compiles the same file with
the same flags, which live in one place, `shim.cflags` (also package data):

    cc $(cat shim.cflags) -o sriov shim.c

The binary finds its settings in `sriovkit-cni.conf` beside itself (the directory of
/proc/self/exe): a runtime gives a plugin only CNI_* variables and PATH, so neither the
environment nor the command line can carry them, and one binary then serves any socket, state
directory and root chosen at install time without recompiling. `render_config` writes the
format that `shim.c`'s strict reader accepts (its header comment is the reference).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from sriovkit.errors import HostError

CONFIG_NAME = "sriovkit-cni.conf"
"""The static shim's settings file, in the directory of the executable."""
SOURCE = "shim.c"
CFLAGS_FILE = "shim.cflags"
COMPILERS = ("cc", "gcc", "clang")
_ELF = b"\x7fELF"
_MAX_BINARY = 64 << 20


def cflags() -> list[str]:
    """The compile flags, from `shim.cflags` (the one place they are written)."""
    return resources.files("sriovkit.cni").joinpath(CFLAGS_FILE).read_text().split()


def source() -> bytes:
    """`shim.c` as shipped."""
    return resources.files("sriovkit.cni").joinpath(SOURCE).read_bytes()


def find_compiler(env: dict[str, str] | None = None) -> str | None:
    """`$CC` (one word) if set, else the first of cc, gcc, clang on PATH; None if none."""
    environ = os.environ if env is None else env
    named = environ.get("CC", "").strip()
    if named:
        return shutil.which(named)
    for cc in COMPILERS:
        found = shutil.which(cc)
        if found:
            return found
    return None


def compile_shim(compiler: str, timeout: float = 120.0) -> bytes:
    """Build the static shim with `compiler`; its bytes (HostError with the compiler's words)."""
    with tempfile.TemporaryDirectory(prefix="sriovkit-shim-") as tmp:
        src = Path(tmp) / SOURCE
        src.write_bytes(source())
        out = Path(tmp) / "shim"
        try:
            proc = subprocess.run(
                [compiler, *cflags(), "-o", str(out), str(src)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostError(f"cannot compile the static CNI shim with {compiler}: {exc}") from None
        if proc.returncode != 0 or not out.is_file():
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise HostError(f"cannot compile the static CNI shim with {compiler}: {why}")
        return out.read_bytes()


def read_binary(path: Path) -> bytes:
    """A prebuilt shim given by `--shim-binary`: a regular ELF file, read whole."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise HostError(f"--shim-binary {path}: {exc.strerror}", exc.errno) from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not os.path.isfile(f"/proc/self/fd/{f.fileno()}"):
                raise HostError(f"--shim-binary {path} is not a regular file")
            data = f.read(_MAX_BINARY + 1)
    except OSError as exc:
        raise HostError(f"--shim-binary {path}: {exc.strerror}", exc.errno) from None
    if len(data) > _MAX_BINARY or not data.startswith(_ELF):
        raise HostError(f"--shim-binary {path} is not an executable (ELF) of a sane size")
    return data


def render_config(socket: Path, state_dir: Path, root: Path, fallback: Path | None) -> bytes:
    """`sriovkit-cni.conf`'s contents (see the format in `shim.c`)."""
    lines = [
        "# sriovkit's static CNI shim settings, written by `sriovkit install-cni`.",
        f"socket={socket}",
        f"state_dir={state_dir}",
        f"root={root}",
    ]
    if fallback is not None:
        lines.append(f"fallback={fallback}")
    for line in lines:
        if "\n" in line or "\0" in line:
            raise HostError(f"cannot write {CONFIG_NAME}: {line!r} holds a newline or NUL")
    return ("\n".join(lines) + "\n").encode()


def probe_python(python: Path, timeout: float = 60.0) -> tuple[str, ...]:
    """Check that `python` can run sriovkit's in-process path; the directories it finds it in
    (the Python shim's SITE when that interpreter runs it)."""
    code = (
        "import sriovkit.cni.dispatch\n"
        "from sriovkit.cni.install import site_dirs\n"
        "print('\\0'.join(('sriovkit', *site_dirs())))\n"
    )
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", code],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"--fallback {python} cannot be run: {exc}") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise HostError(f"--fallback {python} cannot import sriovkit: {why}")
    marker, *dirs = proc.stdout.strip().split("\0")
    if marker != "sriovkit":
        raise HostError(f"--fallback {python} is not a Python that can import sriovkit")
    return tuple(p for p in dirs if p)


__all__ = [
    "CONFIG_NAME",
    "cflags",
    "compile_shim",
    "find_compiler",
    "probe_python",
    "read_binary",
    "render_config",
    "source",
]
