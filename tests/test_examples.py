"""The examples are run as tests, so they never rot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_demo_script(tmp_path: Path) -> None:
    if shutil.which("dcsync") is None:
        pytest.fail("the dcsync console script is not installed (pip install -e .)")
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh"), str(tmp_path)], capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with h5py.File(tmp_path / "epix100a" / "epix100a-3925868555.h5", "r", locking=False) as f:
        assert list(f["pedestals"]) == ["1795161600-end"]  # run 13's range was removed


def test_script_api(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "script_api.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pedestals (3, 2, 512, 1024) float32" in result.stdout
