"""A plain-h5py reader of a file ``writer.py`` processes commit to, for the item-15 test.

Usage: ``python plain_reader.py FILE --seconds S --mode raw|recipe``. Each round picks a ctype
``w<N>`` and one of its ranges from the view and reads the range's effective version and its
value, with h5py alone:

- ``raw``: one plain open and read, as the README's short recipe does; HDF5 errors are counted;
- ``recipe``: through ``examples/read_view.py`` (the documented retry recipe); it must never fail.

Every value read is checked against what its writer stored (the value encodes writer and sequence
number, see ``writer.payload``). Prints one JSON document: the reads as ``[version, wid, seq]``,
the errors (raw) or failures (recipe) by type and message, and the wrong values. Fails if dcsync
got imported: a plain reader has only h5py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("read_view", ROOT / "examples" / "read_view.py")
assert _spec is not None and _spec.loader is not None
read_view = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(read_view)


def expected(wid: int, seq: int, n: int) -> np.ndarray:
    """``writer.payload`` again (that module imports dcsync, which a plain reader has not)."""
    value = np.arange(n, dtype=np.int64) + wid * 1_000_000_000 + seq * 1000
    value[0], value[1] = wid, seq
    return value


def pick(f: h5py.File, rng: random.Random) -> tuple[str, str] | None:
    ctypes = sorted(c for c in f if c.startswith("w"))
    if not ctypes:
        return None
    ctype = rng.choice(ctypes)
    return ctype, rng.choice(sorted(f[ctype]))


def read_one(f: h5py.File, where: tuple[str, str]) -> tuple[str, Any]:
    group = f[where[0]][where[1]]
    version = str(group.attrs["effectivev"])
    return version, group[version]["calib"][()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--mode", choices=["raw", "recipe"], required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out: dict[str, list[Any]] = {"reads": [], "errors": [], "wrong": []}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            if args.mode == "raw":
                with h5py.File(args.path, "r", locking=False) as f:
                    where = pick(f, rng)
                    if where is None:
                        continue
                    version, value = read_one(f, where)
            else:
                where = read_view.read_consistent(args.path, lambda f: pick(f, rng))
                if where is None:
                    continue
                version, value = read_view.read_consistent(args.path, lambda f, at=where: read_one(f, at))
        except Exception as exc:  # raw: what a plain reader meets; recipe: a failure of the recipe
            out["errors"].append(f"{type(exc).__name__}: {exc}")
            continue
        if not isinstance(value, np.ndarray) or value.dtype != np.int64 or value.ndim != 1 or value.size < 2:
            out["wrong"].append([version, repr(value)[:200]])
            continue
        wid, seq = int(value[0]), int(value[1])
        if not np.array_equal(value, expected(wid, seq, value.size)):
            out["wrong"].append([version, f"w{wid} s{seq}: the value is not what was written"])
            continue
        out["reads"].append([version, wid, seq])
    assert not any(m == "dcsync" or m.startswith("dcsync.") for m in sys.modules), "dcsync was imported"
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
