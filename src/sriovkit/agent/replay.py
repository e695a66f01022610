"""At the agent's start: replay the pending-DEL journal, then install the CNI shims.

Both run after the socket listens and before the agent serves (`CniService.start`): shims that
connect meanwhile wait in the listen backlog. The journal (`host/journal.py`) holds DELs that
shims wrote while no agent answered; each goes through the ordinary DEL path
(`dispatch.execute`), whose netns-gone restore gives the VF back when the pod is gone, and is
removed only once that DEL succeeded. A DEL of an attachment already released (by GC, or a
later DEL) finds no record and succeeds: a no-op. A DEL that fails stays for the next start
(and its VF stays recorded, so no ADD can take it); an entry that is not a well-formed DEL of
the attachment its name says, or not a regular file, is refused and reported, never run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sriovkit.cni.dispatch import ContextFactory, execute, host_context
from sriovkit.host.journal import Journal, Refused
from sriovkit.host.state import STATE_DIR_ENV, default_state_dir
from sriovkit.model.journal import entry_name

log = logging.getLogger("sriovkit.agent")

_SETTINGS = ("SRIOVKIT_ROOT", "SRIOVKIT_KUBELET_DIR")


@dataclass
class ReplayReport:
    """What one replay did: entries whose DEL ran (and were removed), failed (kept), refused."""

    replayed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def replay_pending(
    defaults: Mapping[str, str],
    ctx_factory: ContextFactory = host_context,
    run: Callable[..., tuple[int, bytes]] = execute,
) -> ReplayReport:
    """Run every pending DEL of the agent's state directory (`defaults`), by name, through
    `run` (`dispatch.execute`)."""
    state = default_state_dir(defaults)
    journal = Journal(state)
    report = ReplayReport()
    with journal.held() as dfd:
        if dfd is None:
            return report
        pending, report.refused = journal.entries(dfd)
        for refused in report.refused:
            log.error("pending DEL %s refused: %s", journal.dir / refused.name, refused.why)
        for entry in pending:
            name = entry_name(entry.key)
            written_for = entry.env.get(STATE_DIR_ENV)
            if written_for and Path(written_for) != state:
                why = f"written for state directory {written_for}, found in {state}"
                report.refused.append(Refused(name, why))
                log.error("pending DEL %s refused: %s", journal.dir / name, why)
                continue
            env = dict(defaults)
            env.update({k: v for k, v in entry.env.items() if k.startswith("CNI_")})
            env.update({k: entry.env[k] for k in _SETTINGS if entry.env.get(k)})
            env[STATE_DIR_ENV] = str(state)
            code, out = run(env, entry.stdin, ctx_factory=ctx_factory)
            if code != 0:
                why = out.decode("utf-8", "replace").strip()
                report.failed.append((name, why))
                log.error("pending DEL %s failed, kept for the next start: %s", name, why)
                continue
            journal.remove(dfd, name)
            report.replayed.append(name)
            log.info("pending DEL %s replayed", name)
    return report


@dataclass(frozen=True)
class CniInstall:
    """`sriovkit agent --install-cni-dir DIR [--shim-binary PATH]`: the shims the agent installs
    at start, for its own socket, state directory and root, with no fallback (the agent's
    Python lives in its container, not on the host that runs the shims)."""

    bin_dir: Path
    socket: Path
    state_dir: Path | None
    root: Path
    shim_binary: Path | None = None

    def run(self) -> None:
        """Install the static shim under each plugin name (atomic replace): `shim_binary`, or
        compiled here. Never the Python shim: its interpreter line would name this process's
        Python, which the host running the plugin may not have (the agent's container)."""
        from sriovkit.cni.install import NO_FALLBACK, install_shim  # noqa: PLC0415
        from sriovkit.ops.cni.plugins import PLUGINS  # noqa: PLC0415

        for name in PLUGINS:
            target, changed = install_shim(
                self.bin_dir, name, self.socket, state_dir=self.state_dir, root=self.root,
                kind="static", shim_binary=self.shim_binary, fallback=NO_FALLBACK,
            )  # fmt: skip
            log.info("CNI plugin %s %s", target, "installed" if changed else "unchanged")


__all__ = ["CniInstall", "ReplayReport", "replay_pending"]
