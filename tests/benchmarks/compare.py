"""Two runs of one benchmark script side by side: the same cases before and after a change.

Run ``python tests/benchmarks/compare.py BEFORE.json AFTER.json`` on the ``--json`` output of
``bench_store.py``, ``bench_sync.py`` or any script written with ``tests/benchmarks``' result
shape (``{"benchmarks": {name: {"title", "rows": [{"case", "median", "unit", ...}]}}}``). Each row
prints both medians and after/before; a change is "within noise" when the ratio stays inside
``--noise`` (default 1.25: single runs on a shared 2-core machine move that much by themselves).
Cases present in only one run are listed as such. The exit status is 0 whatever the figures say.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

UNITS = {
    "s": [(1.0, "s"), (1e-3, "ms"), (1e-6, "us")],
    "bytes": [(1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1.0, "B")],
}


def shown(value: float | None, unit: str) -> str:
    """``value`` in the largest unit that keeps it at 1 or more (as the benchmark tables print it)."""
    if value is None:
        return "-"
    for scale, name in UNITS.get(unit, []):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {name}"
    return f"{value:.4g} {unit}".strip()


def rows_of(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(benchmark, case) -> row, for the rows that carry a median."""
    out = {}
    for name, bench in run["benchmarks"].items():
        for row in bench.get("rows", []):
            if isinstance(row.get("median"), int | float):
                out[name, row["case"]] = row
    return out


def compare(before: dict[str, Any], after: dict[str, Any], noise: float) -> list[list[str]]:
    """The table: one line per case, with after/before and whether it is within ``noise``."""
    old, new = rows_of(before), rows_of(after)
    table = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            table.append([key[0], key[1], "-", "-", "-", "only after" if a is None else "only before"])
            continue
        ratio = b["median"] / a["median"] if a["median"] else float("inf")
        verdict = "within noise" if 1 / noise <= ratio <= noise else ("slower" if ratio > 1 else "faster")
        unit = str(a.get("unit", ""))
        table.append(
            [key[0], key[1], shown(a["median"], unit), shown(b["median"], unit), f"{ratio:.2f}x", verdict]
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument(
        "--noise", type=float, default=1.25, help="ratio band counted as noise (default 1.25)"
    )
    args = parser.parse_args(argv)
    table = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), args.noise)
    header = ["benchmark", "case", "before", "after", "after/before", f"(noise band {args.noise}x)"]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        sys.stdout.write(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
