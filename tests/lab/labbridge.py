"""The lab tier in pytest, host side: `lab` tests run in one guest, results come back as junit.

It lives with the tests (imported by `conftest.py` beside it): the shipped package must not
import pytest.

On the host (env `SRIOVKIT_IN_LAB` unset) every selected `lab` test is replaced by a `LabProxyItem`
with the same node id. The first proxy to run sets the lab up (cached), boots ONE guest running
`python -m pytest -m lab <all selected lab node ids> --junitxml=<share>/junit.xml` in the project
directory, streams its output, and every proxy then reports its own test's outcome from that XML:
pass, fail with the guest's failure text, or skip with the guest's reason.

Where the lab cannot be had the proxies skip with the reason; with env `CI` set they fail instead.
Inside the guest (`SRIOVKIT_IN_LAB=1`) nothing is replaced: the tests run for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sriovkit.lab.errors import LabUnavailable
from sriovkit.lab.junit import Status, TestOutcome, junit_key, read_junit
from sriovkit.lab.runner import GUEST_SHARE, GuestResult, Outcome, run_in_guest
from sriovkit.lab.setup import default_cache, ensure_lab

IN_LAB_ENV = "SRIOVKIT_IN_LAB"
TIMEOUT_ENV = "SRIOVKIT_LAB_TIMEOUT"
DEFAULT_TIMEOUT = 1500.0
# Guest sessions started when the guest kernel reports an RCU stall (see runner.KERNEL_ARGS): an
# emulator fault seen twice so far under TCG, each time reported ~40 s into the session.
STALL_ATTEMPTS = 3
SILENCE = 240.0
"""Seconds a guest session may print nothing before it counts as stalled (a verbose pytest
prints a line per test; the slowest lab test takes well under a minute under TCG)."""
_SESSION_KEY = pytest.StashKey["LabSession"]()


def in_lab() -> bool:
    """True inside the lab guest."""
    return os.environ.get(IN_LAB_ENV) == "1"


def in_ci() -> bool:
    """True when env CI says so (CI must run the lab tier, never skip it)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def _terminal(config: pytest.Config) -> Iterator[None]:
    # The guest's output is the lab tier's log: show it live instead of capturing it.
    capman: Any = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


class LabSession:
    """The one guest run shared by every selected lab test of a pytest session."""

    def __init__(self, config: pytest.Config, nodeids: list[str]) -> None:
        self.config = config
        self.nodeids = nodeids
        self.unavailable: str | None = None
        self.result: GuestResult | None = None
        self.outcomes: dict[tuple[str, str], TestOutcome] | None = None
        self.share: Path | None = None

    def _say(self, line: str) -> None:
        sys.stdout.write(f"\nlab: {line}\n")
        sys.stdout.flush()

    def _guest_command(self, verbose: bool) -> list[str]:
        color = "yes" if self.config.getoption("color", "auto") == "yes" else "no"
        # Under TCG every import is slow: hypothesis' plugin alone costs ~10 s of guest CPU and no
        # lab test uses it.
        return [
            sys.executable, "-m", "pytest", "-m", "lab", "-p", "no:cacheprovider",
            "-p", "no:hypothesispytest",
            f"--junitxml={GUEST_SHARE}/junit.xml", "-o", "junit_family=xunit2",
            f"--color={color}", "-v" if verbose else "-q",
            "--rootdir", str(self.config.rootpath), *self.nodeids,
        ]

    def start(self) -> None:
        """Set up (cached) and run the guest session once; later calls do nothing."""
        if self.outcomes is not None or self.unavailable is not None:
            return
        started = time.monotonic()
        with _terminal(self.config):
            try:
                assets = ensure_lab(default_cache(), log=self._say)
            except LabUnavailable as exc:
                self.unavailable = f"lab unavailable: {exc}"
                self._say(self.unavailable)
                return
            setup_wall = time.monotonic() - started
            timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
            env = {"CI": os.environ["CI"]} if "CI" in os.environ else {}
            for attempt in range(1, STALL_ATTEMPTS + 1):
                share = Path(tempfile.mkdtemp(prefix="sriovkit-lab-pytest-"))
                self._say(f"booting the guest for {len(self.nodeids)} lab test(s)")
                result = run_in_guest(
                    assets, self._guest_command(self.config.get_verbosity() >= 0), share,
                    out=sys.stdout.buffer, cwd=self.config.rootpath, env=env, timeout=timeout,
                    silence=SILENCE,
                )  # fmt: skip
                faults = (Outcome.STALLED, Outcome.FAULTED)
                if result.outcome not in faults or attempt == STALL_ATTEMPTS:
                    break
                # An emulator fault, not a test result (see runner.KERNEL_ARGS): once more.
                what = (
                    f"the guest stalled (an RCU stall report, or {SILENCE:.0f} s without a line)"
                    if result.outcome is Outcome.STALLED
                    else "QEMU aborted (an emulator fault; see qemu.log)"
                )
                self._say(
                    f"{what} after {result.wall:.0f} s (kept {share}); starting the lab "
                    f"session again ({attempt + 1} of {STALL_ATTEMPTS})"
                )
            self.share, self.result = share, result
            junit = self.share / "junit.xml"
            self.outcomes = read_junit(junit) if junit.exists() else {}
            self._say(
                f"guest session {self.result.outcome.value} (exit {self.result.exit_code}); "
                f"lab wall time {time.monotonic() - started:.1f} s "
                f"(set-up {setup_wall:.1f} s, guest {self.result.wall:.1f} s)"
            )
        if self.result.outcome is Outcome.EXITED and self.result.exit_code in (0, 1):
            self.config.add_cleanup(lambda: shutil.rmtree(self.share or "", ignore_errors=True))
        else:
            self._say(f"kept {self.share} (console.log, qemu.log, junit.xml)")

    def outcome(self, nodeid: str) -> TestOutcome:
        """This test's outcome in the guest (running the guest session first if needed)."""
        self.start()
        if self.unavailable is not None:
            if in_ci():
                return TestOutcome(Status.FAILED, f"{self.unavailable} (CI must run the lab tier)")
            return TestOutcome(Status.SKIPPED, self.unavailable)
        assert self.outcomes is not None and self.result is not None
        found = self.outcomes.get(junit_key(nodeid))
        if found is None:
            return TestOutcome(Status.FAILED, self._missing_reason())
        if found.status is Status.FAILED:
            return TestOutcome(Status.FAILED, f"[in the lab guest]\n{found.message}")
        return found

    def _missing_reason(self) -> str:
        assert self.result is not None
        why = {
            Outcome.TIMEOUT: "the guest timed out",
            Outcome.DIED: "the guest died",
            Outcome.STALLED: "the guest kernel reported RCU stalls twice (an emulator fault)",
            Outcome.FAULTED: "QEMU aborted on every attempt (an emulator fault; see qemu.log)",
            Outcome.EXITED: f"the guest's pytest exited {self.result.exit_code} without it",
        }[self.result.outcome]
        tail = ""
        with contextlib.suppress(OSError):
            tail = "\n".join(self.result.console_log.read_text(errors="replace").splitlines()[-20:])
        return f"no result from the lab guest for this test: {why}.\n{tail}"


class LabProxyItem(pytest.Item):
    """Stands in on the host for a `lab` test that really runs in the guest."""

    def __init__(self, *, original: pytest.Item, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._original_location = original.reportinfo()
        # Markers on the module or class live on the shared parent; copy the function's own.
        for mark in original.own_markers:
            self.own_markers.append(mark)
            self.keywords[mark.name] = mark

    def runtest(self) -> None:
        """Report the guest's outcome for this test as our own."""
        outcome = self.config.stash[_SESSION_KEY].outcome(self.nodeid)
        if outcome.status is Status.SKIPPED:
            pytest.skip(outcome.message)
        if outcome.status is Status.FAILED:
            pytest.fail(outcome.message, pytrace=False)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Where the real test is."""
        path, line, name = self._original_location
        return path, line, name


def replace_lab_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the host, swap every selected `lab` test for a proxy; call after deselection."""
    if in_lab():
        return
    nodeids = [item.nodeid for item in items if item.get_closest_marker("lab")]
    if not nodeids:
        return
    config.stash[_SESSION_KEY] = LabSession(config, nodeids)
    for i, item in enumerate(items):
        if item.get_closest_marker("lab") and item.parent is not None:
            items[i] = LabProxyItem.from_parent(item.parent, name=item.name, original=item)
