"""The examples are run as tests, so they never rot."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcsync.repo.repository import Repository

ROOT = Path(__file__).resolve().parents[2]


def test_demo_script(tmp_path: Path) -> None:
    if shutil.which("dcsync") is None:
        pytest.fail("the dcsync console script is not installed (pip install -e .)")
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with h5py.File(tmp_path / "epix100a" / "epix100a-3925868555.h5", "r", locking=False) as f:
        assert list(f["pedestals"]) == ["1795161600-end"]  # run 13's range was removed


def test_script_api(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "script_api.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pedestals (3, 2, 512, 1024) float32" in result.stdout


def test_promote_to_central(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "promote_to_central.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("candidate run 40 ") and line.endswith(": ok") for line in lines)
    assert any(line.startswith("candidate run 41 ") and "NaN or Inf" in line for line in lines)
    assert sum(line.startswith("promoted pedestals ") for line in lines) == 1
    assert any(line.startswith("central refused ") and "NaN" in line for line in lines)
    central = [line for line in lines if line.startswith("central 1")]
    assert len(central) == 1 and f"from {tmp_path / 'xpp12345'} version " in central[0]
    with h5py.File(tmp_path / "central" / "jungfrau" / "jungfrau-0123.h5", "r", locking=False) as f:
        assert len(f["pedestals"]) == 1  # one range: run 40's


def test_sync_demo_script(tmp_path: Path) -> None:
    if shutil.which("dcsync") is None:
        pytest.fail("the dcsync console script is not installed (pip install -e .)")
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "sync_demo.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "pushed" in result.stdout and "merged" in result.stdout and "no differences" in result.stdout
    det = "epix100a/epix100a-3925868555.h5"
    with (
        h5py.File(tmp_path / "central" / det, "r", locking=False) as c,
        h5py.File(tmp_path / "laptop" / det, "r", locking=False) as laptop,
    ):
        assert sorted(c["pedestals"]) == sorted(laptop["pedestals"]) == ["1793491200-end", "1795248000-end"]
        assert "pixel_status" in c


def test_read_view_recipe(tmp_path: Path) -> None:
    """The plain-h5py retry recipe (README, docs/format.md) reads what dcsync get reads."""
    path = tmp_path / "epix-1.h5"
    with Repository.create(path, "epix-1") as repo:
        with repo.transaction("peds") as tx:
            tx.add("pedestals", np.arange(12, dtype="<f4").reshape(3, 4), begin_ns=1795161600 * 10**9)
        version = repo.get("pedestals", at_ns=1795161600 * 10**9).version
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "read_view.py"), str(path), "pedestals", "1795161600-end"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{version} float32 (3, 4)"
    # A journal means a commit is in progress: the recipe waits, and says so when it gives up.
    (tmp_path / "epix-1.h5.journal").write_bytes(b"")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import read_view; "
        "read_view.read_consistent(sys.argv[2], lambda f: None, attempts=3, pause=0.01)"
    )
    stuck = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "examples"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stuck.returncode == 1 and "StillCommitting" in stuck.stderr and "journal" in stuck.stderr
