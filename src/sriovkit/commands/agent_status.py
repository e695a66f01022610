"""`sriovkit agent-status`: ask the running agent for CNI STATUS over its socket (a probe).

The DaemonSet's liveness and readiness probes run it inside the agent's container. It asks
exactly what a runtime's STATUS asks through the shim (same framing, same socket), so "ready"
means the agent accepts connections, reads a request, runs the CNI code and finds its state
directory usable. It never falls back to running the plugin in-process: a probe of a dead
agent must fail.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from sriovkit.cni import shim
from sriovkit.commands.agent import SOCKET_HELP, socket_default
from sriovkit.errors import InvalidInput, Unavailable

PROBE_CONFIG = b'{"cniVersion":"1.1.0","name":"sriovkit-probe","type":"sriov"}'
"""The network config a probe sends: no IPAM, so STATUS looks at the agent alone."""


def probe(socket_path: Path, timeout: float) -> str:
    """STATUS through the agent at `socket_path`; a one-line verdict, or Unavailable naming the
    socket and what the agent said."""
    env = {b"CNI_COMMAND": b"STATUS", b"CNI_PATH": b"/nonexistent"}
    env[shim.DEADLINE_ENV] = repr(time.time() + timeout).encode()
    try:
        code, out = shim.call_agent(
            str(socket_path), shim.encode_request(env, PROBE_CONFIG), timeout
        )
    except (shim.AgentUnreachable, shim.AgentLost) as exc:
        raise Unavailable(f"sriovkit agent at {socket_path} is not serving: {exc}") from None
    if code == 0:
        return f"sriovkit agent at {socket_path}: ready"
    try:
        answer = json.loads(out)
        why = f"{answer.get('msg', '')} (CNI code {answer.get('code')})"
    except (ValueError, AttributeError):
        why = out.decode(errors="replace").strip() or f"exit code {code}"
    raise Unavailable(f"sriovkit agent at {socket_path} is not ready: {why}")


@click.command("agent-status")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path),
    help=SOCKET_HELP,
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds for the whole exchange.",
)
def agent_status(socket_path: Path | None, timeout: float) -> None:
    """Ask the running agent for CNI STATUS: exit 0 when it is ready, 5 (with the reason on
    stderr) when it is not or does not answer. For Kubernetes liveness/readiness probes."""
    path = socket_path or socket_default()
    if not path.is_absolute():
        raise InvalidInput("--socket", f"{path} is not an absolute path")
    click.echo(probe(path, timeout))


__all__ = ["PROBE_CONFIG", "agent_status", "probe"]
