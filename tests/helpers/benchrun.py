"""Running a benchmark script in its quick mode, as the smoke tests do: no timing asserts, only
that it runs to the end and reports every benchmark with numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def run_quick(script: Path, tmp_path: Path) -> dict[str, Any]:
    """Run ``script --quick --json`` with a clean environment and scratch dirs; return its JSON."""
    out = tmp_path / "results.json"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCSYNC_")}
    env.update(TMPDIR=str(work), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: dict[str, Any] = json.loads(out.read_text())
    assert results["quick"] is True
    assert is_number(results["machine"]["cpus"])
    return results
