"""The sync benchmark still runs: ``--quick`` end to end over a real sshd, every benchmark reporting.

No timing assertions: the targets live in the benchmark, and figures from a test machine are noise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers.benchrun import is_number, run_quick
from sshd import sshd_unavailable_reason

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "bench_sync.py"
BENCHMARKS = ("clone", "incremental", "uptodate", "memory")


def _unavailable() -> str | None:
    missing = [tool for tool in ("ssh", "scp", "rsync") if shutil.which(tool) is None]
    return sshd_unavailable_reason() or (f"{', '.join(missing)} not installed" if missing else None)


def test_quick_benchmark_reports_every_benchmark(tmp_path: Path) -> None:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sync benchmark: {reason}")
        pytest.skip(reason)
    results = run_quick(SCRIPT, tmp_path)
    assert set(results["benchmarks"]) == set(BENCHMARKS)
    for name in BENCHMARKS:
        bench = results["benchmarks"][name]
        assert bench["rows"], f"{name}: no rows"
        for row in bench["rows"]:
            assert row["skipped"] is None, (name, row)
            assert is_number(row["median"]) and row["median"] > 0, (name, row)
            if row["baseline"] is not None:
                assert is_number(row["baseline"]) and row["baseline"] > 0, (name, row)
                assert is_number(row["ratio"]), (name, row)
        # every benchmark carries a target that was judged, pass or miss
        assert any(isinstance(row["passed"], bool) for row in bench["rows"]), name
    # the comparisons the targets are about have their baseline beside them
    for name in ("clone", "incremental", "uptodate"):
        assert is_number(results["benchmarks"][name]["rows"][0]["baseline"]), name
    incremental = results["benchmarks"]["incremental"]["rows"][0]
    assert incremental["unit"] == "bytes" and incremental["extra"]["payload_bytes"] > 0
    assert results["benchmarks"]["uptodate"]["rows"][0]["extra"]["channels"], "channels were not counted"
    assert list((tmp_path / "work").iterdir()) == [], "the benchmark left files behind"
