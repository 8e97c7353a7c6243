"""Start-up benchmark: how long a ``dcsync`` command takes from exec to exit, beside bare Python.

Run ``python tests/benchmarks/bench_startup.py [--quick] [--json OUT]``.

Every case is a fresh process, timed from ``subprocess.run`` to its exit (fork, exec, interpreter
start, imports, work, teardown), with the cases interleaved so that load on the machine hits them
alike; the figures are medians. The program is the ``dcsync`` console script beside this
interpreter (a virtual environment with this checkout installed, ``pip install -e .``), else this
interpreter running the console script's two lines with this checkout first on ``PYTHONPATH``.

Baselines (same interpreter, same ``site``): ``python -c pass`` and ``python -c "import numpy,
h5py"``, the floor of any command that reads a repository. Targets (issue 8, section E):

- ``dcsync --version``: under 0.15 s.
- ``dcsync ls`` and ``dcsync get`` on a small local workspace (one detector, one 4 KB constant;
  run from inside it): within 1.5x of ``import numpy, h5py``.

``dcsync --help`` is shown beside them for information (it builds every command; no target).

``--quick`` takes fewer samples so the smoke test runs in seconds. The workspace goes under a
temporary directory (``TMPDIR`` is respected) that is removed at the end. As in ``bench_store.py``,
the exit status is 0 whether targets pass or miss; a non-zero status means the benchmark itself
failed (a command exited non-zero, for instance).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Benchmark this checkout, whatever else is installed; reuse the report helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_store import Benchmark, Row, finish, machine, machine_line, median, print_benchmark

CHECKOUT = Path(__file__).resolve().parents[2]
DET = "epix100a-3925868555"
BEGIN = "2024-01-01T00:00:00Z"
VERSION_LIMIT = 0.15  # seconds, absolute
FLOOR_FACTOR = 1.5  # times `python -c "import numpy, h5py"`


@dataclass(frozen=True)
class Sizes:
    """Everything --quick shrinks."""

    samples: int
    warmup: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(21, 3)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(5, 1)


def dcsync_argv() -> tuple[list[str], str]:
    """How to start this checkout's ``dcsync``, and a note saying which way was taken."""
    script = Path(sys.executable).parent / "dcsync"
    if script.is_file():
        probe = subprocess.run(
            [sys.executable, "-c", "import dcsync, sys; sys.stdout.write(dcsync.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        )
        if Path(probe.stdout).resolve().is_relative_to(CHECKOUT):
            return [str(script)], f"console script {script}"
    launcher = "import sys; from dcsync.entry import run; sys.exit(run())"  # what the script runs
    return [sys.executable, "-c", launcher], f"{sys.executable} -c <console script> (PYTHONPATH={CHECKOUT})"


def child_env(home: Path) -> dict[str, str]:
    """The caller's environment without dcsync settings, a scratch HOME, and this checkout first.

    Bytecode is cached as an installed package has it (pip compiles at install): a developer's
    ``PYTHONDONTWRITEBYTECODE`` would have every run compile dcsync's modules from source (~60 ms
    of an editable checkout's start-up). The cache goes under ``home`` (``PYTHONPYCACHEPREFIX``), for
    the baselines too, so the checkout is left as it was; the warm-up runs fill it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCSYNC_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    env["HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "120"
    return env


def run_checked(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process from start to exit; its failure is the
    benchmark's failure. CPU time is the steadier figure on a loaded machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {why}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def build_workspace(root: Path, dcsync: list[str], env: dict[str, str]) -> None:
    """One detector with one small constant, made through the command line itself."""
    root.mkdir()
    value = root.parent / "pedestals.npy"
    np.save(value, np.arange(1024, dtype=np.float32).reshape(32, 32))
    for args in (["init"], ["new", DET], ["add", DET, "pedestals", str(value), "--begin", BEGIN]):
        run_checked([*dcsync, *args], root, env)
    value.unlink()


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    target: str = "(info)"


def bench_startup(sizes: Sizes, work: Path, dcsync: list[str]) -> Benchmark:
    b = Benchmark("start-up: a fresh process from exec to exit, beside bare Python")
    env = child_env(work)
    ws = work / "ws"
    build_workspace(ws, dcsync, env)
    python = [sys.executable]
    cases = [
        Case("python -c pass", [*python, "-c", "pass"]),
        Case('python -c "import numpy, h5py"', [*python, "-c", "import numpy, h5py"]),
        Case("dcsync --version", [*dcsync, "--version"], f"< {VERSION_LIMIT:g} s"),
        Case("dcsync --help", [*dcsync, "--help"]),  # information: it builds every command
        Case("dcsync ls (local workspace)", [*dcsync, "ls"], f"<= {FLOOR_FACTOR:g}x"),
        Case("dcsync get (local workspace)", [*dcsync, "get", DET, "pedestals"], f"<= {FLOOR_FACTOR:g}x"),
    ]
    for _ in range(sizes.warmup):  # page cache, .pyc files
        for case in cases:
            run_checked(case.argv, ws, env)
    times: dict[str, list[float]] = {case.name: [] for case in cases}
    cpu: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(sizes.samples):
        for case in cases:
            wall, used = run_checked(case.argv, ws, env)
            times[case.name].append(wall)
            cpu[case.name].append(used)
    m = {name: median(samples) for name, samples in times.items()}
    c = {name: median(samples) for name, samples in cpu.items()}
    bare, floor = m["python -c pass"], m['python -c "import numpy, h5py"']
    for case in cases:
        ours = m[case.name]
        if case.name.startswith("python"):
            row = Row(case.name, ours, target="(baseline)", samples=sizes.samples)
        elif case.name == "dcsync --version":
            row = Row(case.name, ours, bare, target=case.target, passed=ours < VERSION_LIMIT)
            row.note = "baseline: python -c pass"
        else:
            passed = None if case.target == "(info)" else ours <= FLOOR_FACTOR * floor
            row = Row(case.name, ours, floor, target=case.target, passed=passed)
            row.note = "baseline: import numpy, h5py"
        row.samples = sizes.samples
        row.extra = {
            "argv": case.argv[len(dcsync) :] if case.argv[: len(dcsync)] == dcsync else case.argv,
            "cpu_seconds": c[case.name],
        }
        b.rows.append(row)
    cpu_floor = c['python -c "import numpy, h5py"']
    b.notes.append(
        "CPU (user+sys) medians: "
        + ", ".join(f"{case.name.split(' (')[0]} {c[case.name] * 1e3:.0f} ms" for case in cases)
        + "; CPU ratio to numpy+h5py: "
        + ", ".join(f"{case.name.split()[1]} {c[case.name] / cpu_floor:.2f}x" for case in cases[3:])
    )
    b.notes.append(
        f"time above bare Python: numpy+h5py {(floor - bare) * 1e3:.0f} ms; "
        + ", ".join(f"{c.name.split(' (')[0]} {(m[c.name] - bare) * 1e3:.0f} ms" for c in cases[2:])
    )
    return b


def print_header(m: dict[str, Any], work: Path, quick: bool, how: str) -> None:
    print("dcsync start-up benchmark" + (" (--quick: fewer samples)" if quick else ""))
    print(machine_line(m))
    print(f"python {m['python']} ({sys.executable}), h5py {m['h5py']}, numpy {m['numpy']}")
    print(f"dcsync runs as: {how}")
    print(f"workspace under {work}")
    print(f"load average at start: {m['load_average']} (on {m['cpus_usable']} usable CPUs)")
    print("Figures are noisy single-machine measurements (medians; ratio = dcsync / baseline).")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes.full()
    work = Path(tempfile.mkdtemp(prefix="dcsync-bench-"))
    m = machine()
    started = time.perf_counter()
    results: dict[str, Benchmark] = {}
    try:
        dcsync, how = dcsync_argv()
        print_header(m, work, args.quick, how)
        t = time.perf_counter()
        b = bench_startup(sizes, work, dcsync)
        b.seconds = time.perf_counter() - t
        results["startup"] = b
        print_benchmark(b)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish(results, started, m, quick=args.quick, json_path=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
