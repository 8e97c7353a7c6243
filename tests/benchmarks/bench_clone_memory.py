"""Peak memory of cloning: legitimate workspaces, and hostile whole files (issue 9, item 7).

Run ``python tests/benchmarks/bench_clone_memory.py [--quick] [--json OUT]``.

Every clone runs in a fresh process, ``python -m dcsync clone SRC DEST --json`` (a local path: the
server is a ``dcsync serve`` it starts, over pipes), measured by tests/helpers/peakrss.py: ``wait4``
from a small wrapper, so the figure is the larger peak RSS of the clone and its server, never the
benchmark's own. Rows:

* ``legitimate, small constants``: one detector of a few KB. Its peak is the *floor*: the constant
  cost of a clone (Python, numpy, h5py, dcsync).
* ``legitimate, one large payload``: the same plus one float32 payload of 512 MiB (``--quick``:
  32 MiB). It arrives as a whole file and is re-hashed in 16 MiB slices.
* hostile whole files (tests/helpers/hostile_files.py) on the small detector: a root tree and a
  payload each declaring 1 GiB but storing nothing, the effective payload gzip-compressed (256 MiB
  of zeros declared, ``--quick``: 32 MiB; a few hundred KB stored), a view dataset whose storage is
  a local file, and a view whose attributes lie. Each is refused before its data is read: the
  clone goes object by object, or fails cleanly when the server's own objects are bad.

Target for every row: peak <= floor + the largest legitimate payload in the source + 32 MiB (a
hostile file holds no legitimate payload beyond the small ones). Before issue 9's fix the two bombs
took the client to about 2.1 GB. As in ``bench_store.py``, the exit status is 0 whether targets
pass or miss; a non-zero status means the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Benchmark this checkout, whatever else is installed; reuse the report helpers and the builders.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_store import MB, Benchmark, Row, distinct_array, finish, fmt_bytes, machine, machine_line, median
from bench_store import print_benchmark as print_table
from helpers.hostile_files import (
    T0,
    Hostile,
    array_bomb,
    external_storage,
    gzip_payload,
    lying_view,
    tree_bomb,
)
from helpers.peakrss import run_measured

from dcsync.workspace.workspace import Workspace

DET = "epix100-1"
MARGIN = 32 * MB


@dataclass(frozen=True)
class Sizes:
    large_payload: int
    gzip_payload: int
    samples: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(512 * MB, 256 * MB, 3)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(32 * MB, 32 * MB, 1)


def build(root: Path, payload: np.ndarray | None = None) -> Path:
    """A workspace of one detector: two small pedestals versions and geometry, or ``payload`` as
    the second pedestals version. Returns the workspace's root."""
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo:
        for k in (1, 2):
            value = payload if payload is not None and k == 2 else np.full((32, 64), k, np.float32)
            with repo.transaction(f"pedestals {k}") as tx:
                tx.add("pedestals", value, begin_ns=T0)
                tx.add("geometry", f"geometry {k}", begin_ns=T0)
    return root


@dataclass
class Case:
    name: str
    source: Callable[[Path], Path]  # builds the source workspace under the given folder
    legit_payload: int  # the largest legitimate payload in it


def hostile(base: Path, make: Hostile) -> Callable[[Path], Path]:
    def source(where: Path) -> Path:
        root = where / "src"
        shutil.copytree(base, root)
        make(Workspace(root).detector_path(DET), where)
        return root

    return source


def measure(src: Path, dest: Path) -> dict[str, Any]:
    done = run_measured([sys.executable, "-m", "dcsync", "clone", str(src), str(dest), "--json"], timeout=900)
    if done.timed_out or "Traceback" in done.stderr:
        raise RuntimeError(f"the clone of {src} broke: {done.stderr[-2000:]}")
    answer = json.loads(done.stdout) if done.returncode == 0 else None
    if answer is None:
        outcome = f"failed cleanly (exit {done.returncode})"
    elif answer["fetch"]["files"]:
        outcome = "adopted whole"
    else:
        outcome = "refused, came object by object"
    return {"peak": done.peak_rss, "outcome": outcome, "exit": done.returncode}


def bench_clone(sizes: Sizes, work: Path) -> Benchmark:
    small = build(work / "small")
    large = build(work / "large", distinct_array(sizes.large_payload, 7))
    zeros = build(work / "zeros", np.zeros(sizes.gzip_payload // 4, np.float32))
    tiny, large_bytes = 32 * 64 * 4, sizes.large_payload
    cases = [
        Case("legitimate, small constants (the floor)", lambda _: small, tiny),
        Case(f"legitimate, one {fmt_bytes(sizes.large_payload)} payload", lambda _: large, large_bytes),
        Case("hostile: root tree declaring 1 GiB, storing nothing", hostile(small, tree_bomb), tiny),
        Case("hostile: payload (1, 2**27) float64, storing nothing", hostile(small, array_bomb), tiny),
        Case(
            f"hostile: {fmt_bytes(sizes.gzip_payload)} payload gzip-compressed",
            hostile(zeros, gzip_payload),
            tiny,
        ),
        Case("hostile: view dataset stored in a local file", hostile(small, external_storage), tiny),
        Case("hostile: view attributes that lie", hostile(small, lying_view), tiny),
    ]
    b = Benchmark("peak RSS of a clone in a fresh process (clone and its dcsync serve), vs the floor")
    floor: float | None = None
    for i, case in enumerate(cases):
        runs = []
        for k in range(sizes.samples):
            where = work / f"case-{i}-{k}"
            where.mkdir()
            runs.append(measure(case.source(where), where / "laptop"))
            shutil.rmtree(where)
        peak = median([r["peak"] for r in runs])
        floor = peak if floor is None else floor
        bound = floor + case.legit_payload + MARGIN
        b.rows.append(
            Row(
                case.name,
                peak,
                baseline=floor,
                unit="bytes",
                target=f"<= floor + {fmt_bytes(case.legit_payload)} + {fmt_bytes(MARGIN)}",
                passed=peak <= bound,
                samples=len(runs),
                note=runs[0]["outcome"],
                extra={"runs": runs, "bound": bound, "legit_payload": case.legit_payload},
            )
        )
    b.notes.append(
        "floor = the small legitimate clone's peak; ratio = peak / floor. A whole file is re-hashed in "
        "16 MiB slices, so even the large payload costs far less than its size; hostile files are "
        "refused from their metadata (dcsync.store.structure) before any data is read."
    )
    return b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="payloads shrunk (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    work = Path(tempfile.mkdtemp(prefix="dcsync-bench-clone-memory-"))
    m = machine()
    started = time.perf_counter()
    results: dict[str, Benchmark] = {}
    try:
        print("dcsync clone memory benchmark" + (" (--quick: payloads shrunk)" if args.quick else ""))
        print(machine_line(m))
        print(f"files under {work}; figures are single-machine measurements (medians)", flush=True)
        t = time.perf_counter()
        b = bench_clone(sizes, work)
        b.seconds = time.perf_counter() - t
        results["clone"] = b
        print_table(b)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish(results, started, m, quick=args.quick, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
