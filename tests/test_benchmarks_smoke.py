"""The store benchmark still runs: ``--quick`` end to end, with every benchmark reporting figures.

No timing assertions: the targets live in the benchmark, and figures from a test machine are noise.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).parent / "benchmarks" / "bench_store.py"
BENCHMARKS = ("get", "commit", "hash", "memory")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_benchmark_reports_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCSYNC_")}
    env.update(TMPDIR=str(work), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    results = json.loads(out.read_text())
    assert results["quick"] is True
    assert _is_number(results["machine"]["cpus"])
    assert set(results["benchmarks"]) == set(BENCHMARKS)
    for name in BENCHMARKS:
        bench = results["benchmarks"][name]
        measured = [row for row in bench["rows"] if not row["skipped"]]
        assert measured, f"{name}: no measured rows"
        for row in measured:
            assert _is_number(row["median"]) and row["median"] > 0, (name, row)
            if row["baseline"] is not None:
                assert _is_number(row["baseline"]) and row["baseline"] > 0, (name, row)
                assert _is_number(row["ratio"]), (name, row)
        for row in bench["rows"]:
            if row["skipped"]:
                assert row["median"] is None and row["skipped"].startswith("skipped"), (name, row)
        for check in bench["checks"]:
            assert check["value"] is None or _is_number(check["value"]), (name, check)
    # the target-bearing rows carry a baseline beside the median
    for name in ("get", "hash", "memory"):
        assert all(_is_number(r["baseline"]) for r in results["benchmarks"][name]["rows"]), name
    assert list(work.iterdir()) == [], "the benchmark left files behind"
