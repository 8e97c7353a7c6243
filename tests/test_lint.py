"""The house rules are part of the suite: ruff and mypy --strict stay clean on dcsync/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "dcsync", "tests", "examples"],
        [sys.executable, "-m", "mypy", "dcsync"],
    ],
    ids=["ruff", "mypy"],
)
def test_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
