"""`sriovkit agent-status`: the DaemonSet's probe asks the real agent for CNI STATUS."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sriovkit.agent.server import Agent
from sriovkit.cli import main
from sriovkit.commands.agent_status import probe
from sriovkit.errors import Unavailable


@pytest.fixture
def base() -> Iterator[Path]:
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="skas", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def real_agent(sock: Path, state: Path) -> Iterator[Agent]:
    """The agent's server with the real CNI dispatcher, in a thread."""
    agent = Agent(sock, {"SRIOVKIT_STATE_DIR": str(state)})
    agent.open()
    worker = threading.Thread(target=agent.serve, daemon=True)
    worker.start()
    try:
        yield agent
    finally:
        agent.stop()
        worker.join(10)
        agent.close()


def test_ready_agent_exits_0(base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = base / "run/agent.sock"
    with real_agent(sock, base / "state"):
        assert main(["agent-status", "--socket", str(sock)]) == 0
    assert capsys.readouterr().out == f"sriovkit agent at {sock}: ready\n"
    assert (base / "state").is_dir()  # STATUS really ran: it made the state tree


def test_unusable_state_dir_is_not_ready_with_the_agents_reason(base: Path) -> None:
    sock = base / "run/agent.sock"
    (base / "elsewhere").mkdir()
    (base / "state").symlink_to(base / "elsewhere")  # the state store refuses symlinks
    with real_agent(sock, base / "state"), pytest.raises(Unavailable) as err:
        probe(sock, 5.0)
    assert "is not ready" in str(err.value)
    assert "state directory" in str(err.value)
    assert "(CNI code 50)" in str(err.value)


def test_no_agent_exits_5_naming_the_socket(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = base / "agent.sock"
    assert main(["agent-status", "--socket", str(sock)]) == 5
    err = capsys.readouterr().err
    assert f"sriovkit agent at {sock} is not serving" in err
    assert not (base / "state").exists()  # never ran in-process


def test_relative_socket_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent-status", "--socket", "agent.sock"]) == 2
    assert "not an absolute path" in capsys.readouterr().err
