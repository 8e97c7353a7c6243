"""How long a push holds the detector's write lock on the server (issue 9, item 13b).

A range of ``--versions`` versions (default 20,000, above the MAX_VERSIONS_PER_RANGE a server
accepts, which this benchmark lifts to measure the lock scope rather than the refusal) is pushed
to an in-process server; every hold of a FileLock is timed. Prints one line per hold, the longest
first. Measured on the shared 2-core test VM (loaded, so noisy): 53.4 s for 20,000 versions
with the walk of what arrived under the lock, 53.6 s with it before the lock. The walk was not
what held it: what is left is the commit itself, importing 20,000 payloads into the file and
moving HEAD (``set_ref``, with the view update), which only the tree size limit bounds (5.6 s for
4,000 versions).

    python tests/benchmarks/bench_lock_scope.py [--versions N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dcsync import sync
from dcsync.model import limits
from dcsync.store import locking
from dcsync.sync.client import Connection
from dcsync.sync.server import Server
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.workspace import Workspace

DET = "epix-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-lock-", dir=args.dir))
    try:
        run(base, args.versions)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(base: Path, versions: int) -> None:
    limits.MAX_VERSIONS_PER_RANGE = max(limits.MAX_VERSIONS_PER_RANGE, versions + 1)
    root = base / "served"
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("first") as tx:
        tx.add("pedestals", np.zeros(4, dtype="<f4"), begin_ns=100)
    work = base / "work"
    sync.clone(str(root), work)
    started = time.perf_counter()
    with Workspace(work).repository(DET) as repo, repo.transaction("many versions") as tx:
        for i in range(versions):
            tx.add("pedestals", np.full(4, i, dtype="<f4"), begin_ns=100, make_default=False)
    print(f"built {versions} versions in one range in {time.perf_counter() - started:.1f} s")

    holds: list[float] = []
    acquire, release = locking.FileLock.acquire, locking.FileLock.release

    def timed_acquire(self: locking.FileLock, *a: Any, **k: Any) -> None:
        acquire(self, *a, **k)
        self._bench_since = time.perf_counter()  # type: ignore[attr-defined]

    def timed_release(self: locking.FileLock) -> None:
        holds.append(time.perf_counter() - self._bench_since)  # type: ignore[attr-defined]
        release(self)

    locking.FileLock.acquire, locking.FileLock.release = timed_acquire, timed_release  # type: ignore[method-assign]
    server = Server(root)
    started = time.perf_counter()
    try:
        with Connection(InProcessChannel(server.serve)) as conn:
            report = sync.push(Workspace(work), "origin", conn=conn)
    finally:
        server.close()
        locking.FileLock.acquire, locking.FileLock.release = acquire, release  # type: ignore[method-assign]
    assert DET in report.pushed, report
    print(f"push of {versions} versions: {time.perf_counter() - started:.1f} s")
    for hold in sorted(holds, reverse=True):
        print(f"lock held {hold:.2f} s")


if __name__ == "__main__":
    main()
