"""Tests never see the developer's environment (STYLE.md item 14).

Every test runs with no ``DCSYNC_*`` variables of the caller, HOME and XDG_CONFIG_HOME in fresh
temporary folders, and lock timings shrunk so stale-lock handling takes seconds, not minutes.
Subprocesses started by a test inherit this environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from skip_policy import pytest_sessionfinish  # noqa: F401  (the hook: CI fails on unexpected skips)

LOCK_STALE_AFTER = "5"
LOCK_HEARTBEAT = "0.5"


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DCSYNC_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("DCSYNC_LOCK_STALE_AFTER", LOCK_STALE_AFTER)
    monkeypatch.setenv("DCSYNC_LOCK_HEARTBEAT", LOCK_HEARTBEAT)
    yield


# A real OpenSSH server on loopback for the transport and sync tests (tests/ is on sys.path here).
from sshd import sshd  # noqa: E402, F401
