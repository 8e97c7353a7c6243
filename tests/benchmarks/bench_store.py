"""Benchmarks of the store against the targets of the performance issue, each beside its baseline.

Run ``python tests/benchmarks/bench_store.py [--quick] [--json OUT] [--only get,commit,...]``.

1. ``get``: ``Repository.get`` of a 1 MB float32 constant from files holding 10, 1,000 and 10,000
   versions, against a raw h5py read of the same dataset by its seed-schema view path (the floor),
   warm (one open handle, repeated reads) and cold (open + read + close each time). Target: within
   2x of the floor, and flat in the version count.
2. ``commit``: one transaction adding a 1 MB version to files of 20 MB, 200 MB and 2 GB. Target: the
   2 GB case within 1.5x of the 20 MB case, and under 5% of ``shutil.copyfile`` of the 2 GB file.
3. ``hash``: ``hash_array`` on a 256 MB array against ``xxh3_128(buffer).digest()``. Target: at
   least 0.8x the raw throughput.
4. ``memory``: peak RSS of committing a 200 MB array, in a fresh process, per byte of the array.
   Target: under 2.5x.

``--quick`` shrinks every size by about 10x so the smoke test runs in well under a minute. Files go
under a temporary directory (``TMPDIR`` is respected) that is removed at the end. The exit status
is 0 whether targets pass or miss: figures are noisy single-machine measurements, so judging them
is for people; a non-zero status means the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Benchmark this checkout, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
import xxhash  # noqa: E402

import dcsync.store.hdf5 as hdf5_store  # noqa: E402
from dcsync.hashing import hash_array  # noqa: E402
from dcsync.repository import Repository  # noqa: E402
from dcsync.store import base as store_base  # noqa: E402
from dcsync.store.journal import JournaledFile  # noqa: E402

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
CTYPE = "pedestals"
T0 = 1_700_000_000 * 10**9  # a begin time for the ranges the benchmarks create
RANGE_NS = 10**9
VERSIONS_PER_RANGE = 5  # the small versions share ranges five at a time


@dataclass(frozen=True)
class Sizes:
    """Everything --quick shrinks."""

    get_versions: tuple[int, ...]
    get_warm_samples: int
    get_cold_samples: int
    commit_files: tuple[int, ...]
    commit_samples: int
    copy_samples: int
    hash_bytes: int
    hash_samples: int
    memory_bytes: int
    memory_samples: int

    @classmethod
    def full(cls) -> Sizes:
        return cls((10, 1_000, 10_000), 300, 60, (20 * MB, 200 * MB, 2 * GB), 5, 3, 256 * MB, 7, 200 * MB, 3)

    @classmethod
    def quick(cls) -> Sizes:
        return cls((10, 100, 1_000), 60, 15, (2 * MB, 20 * MB, 200 * MB), 3, 2, 32 * MB, 3, 20 * MB, 2)


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """One measured case: our median beside the baseline's median (both in ``unit``)."""

    case: str
    median: float | None
    baseline: float | None = None
    unit: str = "s"
    target: str = ""
    passed: bool | None = None
    samples: int = 0
    note: str = ""
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.median is None or not self.baseline:
            return None
        return self.median / self.baseline

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Check:
    """A target that compares figures across rows (flatness, scaling, against a copy)."""

    name: str
    value: float | None
    limit: str
    passed: bool | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Benchmark:
    title: str
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "rows": [r.to_json() for r in self.rows],
            "checks": [c.to_json() for c in self.checks],
            "notes": self.notes,
            "seconds": self.seconds,
        }


# -- helpers ---------------------------------------------------------------------------------------


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def interleaved(fns: list[Callable[[], object]], samples: int, warmup: int = 3) -> list[list[float]]:
    """Time each callable ``samples`` times, alternating between them so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    gc.collect()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(samples):
        for i, fn in enumerate(fns):
            times[i].append(timed(fn))
    return times


def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GB", GB), ("MB", MB), ("KB", KB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_value(v: float | None, unit: str) -> str:
    return fmt_bytes(v) if unit == "bytes" else fmt_time(v)


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("PASS" if passed else "MISS")


def distinct_array(nbytes: int, seed: int) -> np.ndarray:
    """Random-looking float32 data, generated in place (no float64 temporary)."""
    arr = np.empty(nbytes // 4, dtype=np.float32)
    np.random.default_rng(seed).random(dtype=np.float32, out=arr)
    return arr


def range_bounds(i: int) -> tuple[int, int]:
    return T0 + i * RANGE_NS, T0 + (i + 1) * RANGE_NS


class CountingJournaledFile(JournaledFile):
    """Records each commit's dirty page count and durability time (benchmark-only instrumentation)."""

    log: list[tuple[int, float]] = []  # noqa: RUF012 (a class-wide record is the point)

    def commit(self) -> None:
        pages = self.dirty_pages()
        t = time.perf_counter()
        super().commit()
        CountingJournaledFile.log.append((pages, time.perf_counter() - t))


@contextlib.contextmanager
def counting_journal() -> Iterator[list[tuple[int, float]]]:
    saved = hdf5_store.JournaledFile
    hdf5_store.JournaledFile = CountingJournaledFile  # type: ignore[misc]
    CountingJournaledFile.log = []
    try:
        yield CountingJournaledFile.log
    finally:
        hdf5_store.JournaledFile = saved  # type: ignore[misc]


# -- 1. get ----------------------------------------------------------------------------------------


def build_get_file(path: Path, n_versions: int) -> tuple[int, str, str, np.ndarray]:
    """A file with ``n_versions`` versions: 1 KB ones over many ranges, five to a range, and a 1 MB
    one added last (so it is its range's default) to a middle range. Returns (time inside that
    range, its version key, its view path, its value)."""
    small = n_versions - 1
    n_ranges = max(1, math.ceil(small / VERSIONS_PER_RANGE))
    repo = Repository.create(path, "jungfrau-1")
    try:
        per_tx = 2_500
        for start in range(0, small, per_tx):
            with repo.transaction(f"bulk {start}") as tx:
                for j in range(start, min(start + per_tx, small)):
                    arr = np.full(256, j, dtype=np.float32)  # 1 KB, distinct
                    arr[0] = -1.0
                    tx.add(CTYPE, arr, *range_bounds(j // VERSIONS_PER_RANGE))
        value = distinct_array(1 * MB, seed=n_versions)
        target_range = n_ranges // 2
        with repo.transaction("the 1 MB constant") as tx:
            loc = tx.add(CTYPE, value, *range_bounds(target_range))
        at = range_bounds(target_range)[0] + RANGE_NS // 2
        got = repo.get(CTYPE, at)
        assert got.version == loc.version and np.array_equal(got.value, value)
    finally:
        repo.close()
    view_path = f"/{CTYPE}/{loc.range}/{loc.version}/calib"
    with h5py.File(path, "r", locking=False) as f:
        assert np.array_equal(f[view_path][()], value)
    return at, loc.version, view_path, value


def bench_get(sizes: Sizes, work: Path) -> Benchmark:
    b = Benchmark("1. get of a 1 MB float32 constant vs raw h5py read of its view path (the floor)")
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    for n in sizes.get_versions:
        path = work / f"get-{n}.h5"
        t = time.perf_counter()
        at, vkey, view_path, _ = build_get_file(path, n)
        build_s = time.perf_counter() - t
        size = path.stat().st_size

        # warm: one open Repository and one open h5py.File, repeated reads
        repo = Repository.open(path)
        f = h5py.File(path, "r", locking=False)
        try:

            def get_warm(repo: Repository = repo) -> None:
                repo.get(CTYPE, at)

            def floor_warm(f: h5py.File = f, p: str = view_path) -> None:
                f[p][()]

            ours, floor = interleaved([get_warm, floor_warm], sizes.get_warm_samples)
        finally:
            f.close()
            repo.close()
        medians[("warm", n)] = (median(ours), median(floor))
        b.rows.append(
            Row(
                f"{n:,} versions, warm",
                median(ours),
                median(floor),
                target="<= 2x",
                passed=median(ours) <= 2 * median(floor),
                samples=len(ours),
                note=f"file {fmt_bytes(size)}, built in {build_s:.1f} s",
                extra={"file_bytes": size, "build_seconds": build_s, "min": min(ours), "floor_min": min(floor)},
            )
        )

        # cold: open + read + close each time, for both (no handle stays open: HDF5 would share it)
        def get_cold(path: Path = path) -> None:
            with Repository.open(path) as r:
                r.get(CTYPE, at)

        def get_cold_fresh(path: Path = path) -> None:
            store_base._DECODED.clear()  # as a new process would see it
            with Repository.open(path) as r:
                r.get(CTYPE, at)

        def floor_cold(path: Path = path, p: str = view_path) -> None:
            with h5py.File(path, "r", locking=False) as fh:
                fh[p][()]

        ours, fresh, floor = interleaved([get_cold, get_cold_fresh, floor_cold], sizes.get_cold_samples)
        medians[("cold", n)] = (median(ours), median(floor))
        medians[("fresh", n)] = (median(fresh), median(floor))
        b.rows.append(
            Row(
                f"{n:,} versions, cold",
                median(ours),
                median(floor),
                target="<= 2x",
                passed=median(ours) <= 2 * median(floor),
                samples=len(ours),
                extra={"min": min(ours), "floor_min": min(floor)},
            )
        )
        b.rows.append(
            Row(
                f"{n:,} versions, cold, empty tree cache",
                median(fresh),
                median(floor),
                target="(info)",
                samples=len(fresh),
                note="decoded-tree cache cleared first, as in a new process",
            )
        )
        path.unlink()

    lo, hi = min(sizes.get_versions), max(sizes.get_versions)
    for mode in ("warm", "cold", "fresh"):
        ours_ratio = medians[(mode, hi)][0] / medians[(mode, lo)][0]
        floor_ratio = medians[(mode, hi)][1] / medians[(mode, lo)][1]
        label = {"warm": "warm", "cold": "cold", "fresh": "cold, empty tree cache"}[mode]
        b.checks.append(
            Check(
                f"flat in count, {label}: get({hi:,}) / get({lo:,}) (floor: {floor_ratio:.2f})",
                ours_ratio,
                "<= 1.25" if mode != "fresh" else "(info)",
                ours_ratio <= 1.25 if mode != "fresh" else None,
            )
        )
    b.notes.append(
        "'flat' is read as get(largest)/get(smallest) <= 1.25; the floor's own ratio is shown beside it. "
        "'cold' keeps the process-wide decoded-tree cache; the 'empty tree cache' rows clear it."
    )
    return b


# -- 2. commit -------------------------------------------------------------------------------------


def build_big_file(path: Path, nbytes: int) -> float:
    """A repository of about ``nbytes``: few transactions of large, distinct arrays. Returns seconds."""
    t = time.perf_counter()
    chunk = min(64 * MB, max(nbytes // 4, 64 * KB))
    count = max(1, round(nbytes / chunk))
    base = distinct_array(chunk, seed=nbytes)
    repo = Repository.create(path, "jungfrau-1")
    try:
        per_tx = 8
        for start in range(0, count, per_tx):
            with repo.transaction(f"bulk {start}") as tx:
                for k in range(start, min(start + per_tx, count)):
                    tx.add("bulk", base + np.float32(k + 1), *range_bounds(k))
    finally:
        repo.close()
    return time.perf_counter() - t


def bench_commit(sizes: Sizes, work: Path) -> Benchmark:
    b = Benchmark("2. commit of one 1 MB version (one transaction) vs file size")
    largest = max(sizes.commit_files)
    free = shutil.disk_usage(work).free
    need = 5 * largest
    stats: dict[int, dict[str, Any]] = {}
    copy_median: float | None = None
    for nbytes in sizes.commit_files:
        label = f"{fmt_bytes(nbytes)} file"
        if nbytes == largest and free < need:
            msg = f"skipped: {fmt_bytes(free)} free under {work}, needs {fmt_bytes(need)}"
            print(f"note: {label} case {msg}", flush=True)
            b.rows.append(Row(label, None, skipped=msg))
            continue
        path = work / f"commit-{nbytes}.h5"
        build_s = build_big_file(path, nbytes)
        size_before = path.stat().st_size
        payloads = [distinct_array(1 * MB, seed=1000 + i) for i in range(sizes.commit_samples)]
        times: list[float] = []
        with counting_journal() as journal_log, Repository.open(path) as repo:
            for i, value in enumerate(payloads):
                gc.collect()
                t = time.perf_counter()
                with repo.transaction(f"add {i}") as tx:
                    tx.add(CTYPE, value, T0)
                times.append(time.perf_counter() - t)
            pages = [p for p, _ in journal_log]
            durable = [d for _, d in journal_log]
        grown = path.stat().st_size - size_before
        stats[nbytes] = {"median": median(times), "times": times}
        b.rows.append(
            Row(
                label,
                median(times),
                samples=len(times),
                note=(
                    f"first {fmt_time(times[0])}, max {fmt_time(max(times))}; "
                    f"dirty pages {int(median(pages))} (max {max(pages)}); "
                    f"journal+fsync {fmt_time(median(durable))}; "
                    f"+{fmt_bytes(grown / len(times))}/commit"
                ),
                extra={
                    "file_bytes": size_before,
                    "build_seconds": build_s,
                    "times": times,
                    "dirty_pages": pages,
                    "journal_and_fsync_seconds": durable,
                    "bytes_appended_per_commit": grown / len(times),
                },
            )
        )
        if nbytes == largest:
            copies = []
            dest = work / "copy.h5"
            for _ in range(sizes.copy_samples):
                copies.append(timed(lambda: shutil.copyfile(path, dest)))  # noqa: B023
                dest.unlink()
            copy_median = median(copies)
            b.rows.append(
                Row(
                    f"shutil.copyfile of the {fmt_bytes(nbytes)} file",
                    copy_median,
                    samples=len(copies),
                    note=f"{path.stat().st_size / copy_median / GB:.2f} GB/s; page cache warm, not fsynced",
                    extra={"times": copies},
                )
            )
        path.unlink()

    smallest = min(sizes.commit_files)
    for row in b.rows:
        nbytes_of = {f"{fmt_bytes(n)} file": n for n in sizes.commit_files}
        n = nbytes_of.get(row.case)
        if n is not None and n != smallest and row.median is not None and smallest in stats:
            row.baseline = stats[smallest]["median"]
            if n == largest:
                row.target = "<= 1.5x"
                row.passed = row.median <= 1.5 * row.baseline
            else:
                row.target = "(info)"
    if largest in stats and copy_median is not None:
        ratio = stats[largest]["median"] / copy_median
        b.checks.append(
            Check(f"commit into {fmt_bytes(largest)} / copyfile of it", ratio, "< 0.05", ratio < 0.05)
        )
    else:
        b.checks.append(Check(f"commit into {fmt_bytes(largest)} / copyfile of it", None, "< 0.05", None))
    b.notes.append(
        f"baseline of the larger files is the {fmt_bytes(smallest)} case. Caches are not dropped: each "
        "file was just written, so it sits in the page cache, as does the copy's source; the copy "
        "is not fsynced, while each commit fsyncs journal and file."
    )
    return b


# -- 3. hash ---------------------------------------------------------------------------------------


def bench_hash(sizes: Sizes) -> Benchmark:
    b = Benchmark("3. hashing throughput: hash_array vs raw xxh3_128(buffer).digest()")
    arr = distinct_array(sizes.hash_bytes, seed=3)
    buf = memoryview(arr.reshape(-1).view(np.uint8))
    ours, raw = interleaved(
        [lambda: hash_array(arr), lambda: xxhash.xxh3_128(buf).digest()], sizes.hash_samples, warmup=1
    )
    row = Row(
        f"{fmt_bytes(arr.nbytes)} float32 array",
        median(ours),
        median(raw),
        target="thrpt >= 0.8x (ratio <= 1.25)",
        samples=len(ours),
    )
    row.passed = median(raw) / median(ours) >= 0.8
    row.note = (
        f"{arr.nbytes / median(ours) / GB:.1f} GB/s vs {arr.nbytes / median(raw) / GB:.1f} GB/s; "
        f"throughput {median(raw) / median(ours):.2f}x of raw"
    )
    row.extra = {"throughput_ratio": median(raw) / median(ours)}
    b.rows.append(row)
    return b


# -- 4. memory -------------------------------------------------------------------------------------


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB  # kilobytes on Linux


def memory_child(nbytes: int, work: Path) -> dict[str, int]:
    """Runs in a fresh process: the RSS cost of committing one array of ``nbytes``."""
    path = work / f"memory-{os.getpid()}.h5"
    repo = Repository.create(path, "jungfrau-1")
    with repo.transaction("warm up") as tx:  # load every code path before measuring
        tx.add(CTYPE, np.zeros(16, dtype=np.float32), T0 - RANGE_NS, T0)
    gc.collect()
    before = rss()
    arr = distinct_array(nbytes, seed=4)
    with_array = rss()
    peak_before_commit = peak_rss()
    with repo.transaction("the big one") as tx:
        tx.add(CTYPE, arr, T0)
    peak = peak_rss()
    repo.close()
    path.unlink()
    return {
        "array_bytes": arr.nbytes,
        "rss_before_array": before,
        "rss_with_array": with_array,
        "peak_before_commit": peak_before_commit,
        "peak": peak,
    }


def bench_memory(sizes: Sizes, work: Path) -> Benchmark:
    b = Benchmark("4. peak RSS of committing one large array (fresh process each run)")
    runs = []
    for _ in range(sizes.memory_samples):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(sizes.memory_bytes), str(work)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    extra_bytes = [r["peak"] - r["rss_before_array"] for r in runs]
    size = runs[0]["array_bytes"]
    mid = median(extra_bytes)
    b.rows.append(
        Row(
            f"commit a {fmt_bytes(size)} array",
            mid,
            size,
            unit="bytes",
            target="< 2.5x",
            passed=mid / size < 2.5,
            samples=len(runs),
            note=(
                "peak - RSS before the array; the array itself is 1.0x "
                f"(measured {median([r['rss_with_array'] - r['rss_before_array'] for r in runs]) / size:.2f}x)"
            ),
            extra={"runs": runs},
        )
    )
    if any(r["peak_before_commit"] > r["rss_with_array"] + size // 10 for r in runs):
        b.notes.append("the peak before the commit was already above the RSS with the array: a lower bound")
    return b


# -- report ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "xxhash": xxhash.VERSION,
    }


def print_header(m: dict[str, Any], work: Path, quick: bool) -> None:
    print("dcsync store benchmarks" + (" (--quick: sizes shrunk ~10x)" if quick else ""))
    print(
        f"machine: {m['cpus']} CPUs ({m['cpus_usable']} usable), {m['cpu']}, "
        f"{fmt_bytes(m['memory_bytes'])} RAM, {m['platform']}"
    )
    print(
        f"python {m['python']}, h5py {m['h5py']}, HDF5 {m['hdf5']}, numpy {m['numpy']}, xxhash {m['xxhash']}"
    )
    print(f"files under {work} ({fmt_bytes(shutil.disk_usage(work).free)} free)")
    print("Figures are noisy single-machine measurements (medians; ratio = dcsync / baseline).")
    print(flush=True)


def print_benchmark(b: Benchmark) -> None:
    print(f"== {b.title}  [{b.seconds:.1f} s]")
    header = ("case", "dcsync", "baseline", "ratio", "target", "result", "n", "notes")
    table = [header]
    for r in b.rows:
        if r.skipped:
            table.append((r.case, "-", "-", "-", r.target, "SKIP", "0", r.skipped))
            continue
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        table.append(
            (
                r.case,
                fmt_value(r.median, r.unit),
                fmt_value(r.baseline, r.unit),
                ratio,
                r.target,
                verdict(r.passed),
                str(r.samples),
                r.note,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for c in b.checks:
        value = "-" if c.value is None else f"{c.value:.3f}"
        print(f"  check: {c.name} = {value}   target {c.limit}   {verdict(c.passed)}")
    for note in b.notes:
        print(f"  note: {note}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="sizes shrunk ~10x (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--only", help="comma-separated subset of: get,commit,hash,memory")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(json.dumps(memory_child(int(args.memory_child[0]), Path(args.memory_child[1]))))
        return 0

    sizes = Sizes.quick() if args.quick else Sizes.full()
    names = ["get", "commit", "hash", "memory"]
    chosen = names if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = set(chosen) - set(names)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")

    work = Path(tempfile.mkdtemp(prefix="dcsync-bench-"))
    m = machine()
    started = time.perf_counter()
    results: dict[str, Benchmark] = {}
    try:
        print_header(m, work, args.quick)
        runners: dict[str, Callable[[], Benchmark]] = {
            "get": lambda: bench_get(sizes, work),
            "commit": lambda: bench_commit(sizes, work),
            "hash": lambda: bench_hash(sizes),
            "memory": lambda: bench_memory(sizes, work),
        }
        for name in names:
            if name not in chosen:
                continue
            t = time.perf_counter()
            b = runners[name]()
            b.seconds = time.perf_counter() - t
            results[name] = b
            print_benchmark(b)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    verdicts = [r.passed for b in results.values() for r in b.rows] + [
        c.passed for b in results.values() for c in b.checks
    ]
    print(
        f"total {total:.1f} s; targets: {verdicts.count(True)} PASS, {verdicts.count(False)} MISS, "
        f"{sum(1 for b in results.values() for r in b.rows if r.skipped)} skipped"
    )
    if args.json:
        payload = {
            "machine": m,
            "quick": args.quick,
            "seconds": total,
            "benchmarks": {name: b.to_json() for name, b in results.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
