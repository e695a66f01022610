"""`sriovkit agent` (the node agent, foreground) and `sriovkit install-cni` (write the shim)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sriovkit.cni import shim

if TYPE_CHECKING:
    from sriovkit.commands.env import CliEnv

# The shim defines the default socket and its variable (it imports nothing, so it is cheap here).
_SOCKET_ENV = shim.SOCKET_ENV.decode()
SOCKET_HELP = f"The agent's unix socket [{shim.DEFAULT_SOCKET} or ${_SOCKET_ENV}]."
"""The help of every command's --socket (the agent's, install-cni's, agent-status')."""


def socket_default() -> Path:
    """The agent's socket when --socket is not given: $SRIOVKIT_AGENT_SOCKET, else the default."""
    return Path(os.environ.get(_SOCKET_ENV) or shim.DEFAULT_SOCKET)


@click.command()
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), help=SOCKET_HELP)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Attachment records and VF locks, for requests that name none "
    "[/var/lib/sriovkit or $SRIOVKIT_STATE_DIR].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
@click.option("--device-plugin", is_flag=True, help="Also serve kubelet's device plugin API.")
@click.option(
    "--dp-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The device plugin's config: config.json, or its YAML form (.yaml/.yml) "
    "[/etc/pcidp/config.json under --root]. Edits apply while the agent runs.",
)
@click.option(
    "--kubelet-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/var/lib/kubelet"),
    show_default=True,
    help="kubelet's root directory (device-plugins/ is under it, and pod-resources/, which the "
    "`sriov` CNI asks for a resourceName config's VF).",
)
@click.option("--cdi", is_flag=True, help="Device plugin: CDI specs and CDI device names.")
@click.option(
    "--dp-registration",
    type=click.Choice(["socket", "watcher"]),
    default="socket",
    show_default=True,
    help="Device plugin: Register on kubelet.sock, or a socket in plugins_registry/ for "
    "kubelet's plugin watcher.",
)
@click.option(
    "--install-cni-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="At start, after replaying pending DELs and before serving, install the static CNI "
    "shim (--shim-binary, else compiled here; no fallback) into this directory.",
)
@click.option(
    "--shim-binary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A prebuilt static shim to install (else it is compiled, if a C compiler is present).",
)
@click.pass_obj
def agent(
    env: CliEnv,
    socket_path: Path | None,
    state_dir: Path | None,
    verbose: bool,
    device_plugin: bool,
    dp_config: Path | None,
    kubelet_dir: Path,
    cdi: bool,
    dp_registration: str,
    install_cni_dir: Path | None,
    shim_binary: Path | None,
) -> None:
    """Run the node agent in the foreground: serve the `sriov` CNI shim (and, with
    --device-plugin, kubelet's device plugin API) until SIGTERM."""
    from sriovkit.agent.main import DevicePluginSetup, run_agent  # noqa: PLC0415 - heavy
    from sriovkit.agent.supervisor import setup_logging  # noqa: PLC0415
    from sriovkit.errors import InvalidInput  # noqa: PLC0415

    setup_logging(verbose)
    path = socket_path or socket_default()
    if not path.is_absolute():
        raise InvalidInput("--socket", f"{path} is not an absolute path")
    defaults: dict[str, str] = {}
    if str(env.root) != "/":
        defaults["SRIOVKIT_ROOT"] = str(Path(env.root).resolve())
    state = state_dir or (Path(s) if (s := os.environ.get("SRIOVKIT_STATE_DIR")) else None)
    if state is not None:
        if not state.is_absolute():
            raise InvalidInput("--state-dir", f"{state} is not an absolute path")
        defaults["SRIOVKIT_STATE_DIR"] = str(state)
    defaults["SRIOVKIT_KUBELET_DIR"] = str(kubelet_dir.resolve())
    setup = None
    if device_plugin:
        from sriovkit.deviceplugin.pools import DEFAULT_CONFIG  # noqa: PLC0415 - inventory

        config = dp_config or Path(env.root) / DEFAULT_CONFIG
        setup = DevicePluginSetup(
            Path(env.root), config, kubelet_dir, cdi=cdi, registration=dp_registration
        )
    elif dp_config is not None or cdi:
        raise InvalidInput("--dp-config" if dp_config is not None else "--cdi",
                           "needs --device-plugin")  # fmt: skip
    if shim_binary is not None and install_cni_dir is None:
        raise InvalidInput("--shim-binary", "needs --install-cni-dir")
    install = None
    if install_cni_dir is not None:
        from sriovkit.agent.replay import CniInstall  # noqa: PLC0415

        root = Path(env.root).resolve()
        install = CniInstall(install_cni_dir, path, state, root, shim_binary)
    run_agent(path, defaults, device_plugin=setup, install_cni=install)


@click.command("install-cni")
@click.option(
    "--bin-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The runtime's CNI bin dir (e.g. /opt/cni/bin).",
)
@click.option("--name", default="sriov", show_default=True, help="The plugin's file name.")
@click.option(
    "--shim",
    "kind",
    type=click.Choice(["auto", "static", "python"]),
    default="auto",
    show_default=True,
    help="static: the C shim (compiled here, or --shim-binary); python: the Python shim; "
    "auto: static when it can be had, else python.",
)
@click.option(
    "--shim-binary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A prebuilt static shim to install instead of compiling one.",
)
@click.option(
    "--fallback",
    metavar="PYTHON|none",
    help="A host Python that can import sriovkit: run in-process when the agent is unreachable. "
    "'none': no fallback (pending DELs are journaled). Default: none for the static shim, the "
    "installing interpreter for the Python shim.",
)
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), help=SOCKET_HELP)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory the plugin uses, through the agent or not "
    "[/var/lib/sriovkit or $SRIOVKIT_STATE_DIR].",
)
@click.pass_obj
def install_cni(
    env: CliEnv | None,
    bin_dir: Path,
    name: str,
    kind: str,
    shim_binary: Path | None,
    fallback: str | None,
    socket_path: Path | None,
    state_dir: Path | None,
) -> None:
    """Write the `sriov` CNI plugin (a shim that forwards to the agent) into BIN_DIR.

    The socket, the state directory and `--root` are baked in and win over the environment a
    runtime runs the plugin with; requests carry the last two, so the agent and the
    in-process fallback can never use different records or locks.
    """
    from sriovkit.cni.install import install_shim  # noqa: PLC0415

    # None: invoked outside the `sriovkit` group. Resolved as `agent` resolves it.
    root = Path(env.root).resolve() if env is not None else None
    target, changed = install_shim(
        bin_dir, name, socket_path or socket_default(), state_dir=state_dir, root=root,
        kind=kind, shim_binary=shim_binary, fallback=fallback,
    )  # fmt: skip
    click.echo(f"{'installed' if changed else 'unchanged'}: {target}")


__all__ = ["agent", "install_cni"]
