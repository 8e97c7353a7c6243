"""Under CI, a skip that is not on a short named list fails the run (a pytest hook, used by conftest).

A test whose set-up turns into a skip (no sshd, not root, a missing tool) would otherwise let a
whole suite silently not run on the machine that is supposed to run everything. With ``CI`` set
(``.ci/run`` sets it) every skip must be in ``EXPECTED_SKIPS``, each naming a test and saying why it
can never run there. Keep the list short; a new entry needs a reason that holds on every CI machine.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import pytest


class ExpectedSkip(NamedTuple):
    nodeid: str  # a test's node id, exactly as pytest prints it
    reason: str  # a part of the skip message
    why: str  # why it cannot run on CI


EXPECTED_SKIPS = (
    ExpectedSkip(
        "tests/transport/test_transport.py::TestInProcessChannel::test_close_stops_a_peer_that_ignores_its_input",
        "this transport cannot stop its peer",
        "the in-process peer is a thread of the test process; Python cannot stop a thread from outside",
    ),
)


def is_expected(nodeid: str, message: str) -> bool:
    """Whether a skip of ``nodeid`` with ``message`` is on the list."""
    return any(nodeid == skip.nodeid and skip.reason in message for skip in EXPECTED_SKIPS)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, fail the run on every skip that :func:`is_expected` does not allow."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    unexpected = []
    for report in reporter.stats.get("skipped", []):
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not is_expected(report.nodeid, message):
            unexpected.append(f"{report.nodeid}: {message}")
    if unexpected:
        reporter.write_sep("=", f"{len(unexpected)} unexpected skips (CI runs everything)", red=True)
        for line in unexpected:
            reporter.write_line(line)
        reporter.write_line(
            "Make these run, or add them with a reason to EXPECTED_SKIPS in tests/skip_policy.py."
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
