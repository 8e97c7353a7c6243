"""A reader for the concurrency test: reads constants in a loop while writers commit.

Usage: ``python reader.py FILE --seconds S [--seed X]``. Each round reads the current constant of
a random ctype and a random version by key, and checks every value against what its writer stored
(see ``writer.check``). Any exception ends the process with a traceback and exit code 1; at the end
it prints ``READS <number of values checked>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from dcsync.repo.repository import Repository

_spec = importlib.util.spec_from_file_location("writer", Path(__file__).with_name("writer.py"))
assert _spec is not None and _spec.loader is not None
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    end = time.monotonic() + args.seconds
    reads = 0
    with Repository.open(args.path) as repo:
        while time.monotonic() < end:
            ctypes = [c for c in repo.ctypes() if c.startswith("w")]
            if not ctypes:
                time.sleep(0.01)
                continue
            ctype = ctypes[int(rng.integers(len(ctypes)))]
            current = repo.get(ctype, at_ns=writer.T0 + 10 * writer.S)
            writer.check(current.value, dict(current.entry.pars), current.entry.shape)
            ranges = repo.ranges(ctype)
            _, tree = ranges[int(rng.integers(len(ranges)))]
            keys = sorted(tree.versions)
            vkey = keys[int(rng.integers(len(keys)))]
            named = repo.get(ctype, version=vkey)
            if named.version != vkey:
                raise AssertionError(f"asked for {vkey}, got {named.version}")
            writer.check(named.value, dict(named.entry.pars), named.entry.shape)
            reads += 2
    print(f"READS {reads}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
