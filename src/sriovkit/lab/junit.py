"""Read the guest's junit XML back as per-test outcomes, keyed as the host's pytest names tests."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET


class Status(enum.Enum):
    """A test's outcome in the guest."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One test's outcome: for FAILED the failure text, for SKIPPED the reason."""

    __test__ = False  # not a pytest test class despite the name

    status: Status
    message: str = ""


def junit_key(nodeid: str) -> tuple[str, str]:
    """(classname, name) that pytest's junitxml writes for the test with this node id.

    `tests/lab/test_x.py::TestA::test_b[p]` -> (`tests.lab.test_x.TestA`, `test_b[p]`).
    """
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _text(elem: ET.Element) -> str:
    message = elem.get("message", "")
    body = (elem.text or "").strip()
    if body and message and message not in body:
        return f"{message}\n{body}"
    return body or message


def read_junit(path: Path) -> dict[tuple[str, str], TestOutcome]:
    """Outcomes by junit key. A test with a setup/teardown error counts as failed."""
    # The XML is the one our own guest session just wrote, not input from elsewhere.
    root = ET.parse(path).getroot()  # noqa: S314
    outcomes: dict[tuple[str, str], TestOutcome] = {}
    for case in root.iter("testcase"):
        key = (case.get("classname", ""), case.get("name", ""))
        bad = [e for e in case if e.tag in ("failure", "error")]
        skipped = [e for e in case if e.tag == "skipped"]
        if bad:
            outcome = TestOutcome(Status.FAILED, "\n".join(_text(e) for e in bad))
        elif skipped:
            outcome = TestOutcome(
                Status.SKIPPED, skipped[0].get("message") or _text(skipped[0])
            )
        else:
            outcome = TestOutcome(Status.PASSED)
        previous = outcomes.get(key)
        if previous is None or previous.status is Status.PASSED:
            outcomes[key] = outcome
    return outcomes
