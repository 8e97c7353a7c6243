"""A writer for the torture and concurrency tests: commits in a loop and reports each commit.

Usage: ``python writer.py FILE --wid N [--seconds S] [--seed X] [--first-seq Q] [--scratch]
[--pause P]``.

Every commit adds one version to ctype ``w<wid>`` whose content encodes who wrote it and when
(:func:`payload`), with pars ``{"w": wid, "s": seq}`` so any reader can check a value it got. After
each commit *returns*, one line goes to stdout (flushed)::

    C <commit id> <ctype> <version key> <wid> <seq>

With ``--scratch`` some commits also add to and remove from a ``scratch`` ctype, and move defaults,
so crashes land in page overwrites as well as appends. ``--pause`` sleeps a random time up to P
seconds between commits, as a writer doing some work would: the lock is not fair, and a writer
that re-takes it at once starves the others. Runs until killed or ``--seconds`` pass.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dcsync.workspace.workspace import open_repository

S = 10**9
T0 = 1_700_000_000 * S
BIG = 50_000  # elements (400 KB): a long append, a wide window for a crash


def payload(wid: int, seq: int, n: int) -> np.ndarray:
    """The content of version (wid, seq): its identity up front, then values derived from it."""
    value = np.arange(n + 2, dtype=np.int64) + wid * 1_000_000_000 + seq * 1000
    value[0], value[1] = wid, seq
    return value


def check(value: object, pars: dict[str, object], shape: tuple[int, ...]) -> None:
    """Raise unless ``value`` is exactly what the writer of (pars["w"], pars["s"]) stored."""
    wid, seq = int(pars["w"]), int(pars["s"])  # type: ignore[call-overload]
    expected = payload(wid, seq, shape[0] - 2)
    if not isinstance(value, np.ndarray) or value.shape != expected.shape or not (value == expected).all():
        raise AssertionError(f"value of w{wid} s{seq} is not what was written")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--wid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=float("inf"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-seq", type=int, default=0)
    parser.add_argument("--scratch", action="store_true")
    parser.add_argument("--pause", type=float, default=0.0, help="sleep up to this long between commits")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    ctype = f"w{args.wid}"
    end = time.monotonic() + args.seconds
    repo = open_repository(args.path, lock_timeout=60)
    seq = args.first_seq
    scratch: list[str] = []
    while time.monotonic() < end:
        n = BIG if rng.random() < 0.1 else int(rng.integers(1, 300))
        begin = T0 + int(rng.integers(0, 4)) * S
        with repo.transaction(f"{ctype} s{seq}") as tx:
            loc = tx.add(
                ctype,
                payload(args.wid, seq, n),
                begin_ns=begin,
                end_ns=None,
                pars={"w": args.wid, "s": seq},
                make_default=bool(rng.random() < 0.7),
                new_ctype=True,  # each writer's own ctype, w<N>
            )
            if args.scratch and rng.random() < 0.3:
                tx.set_pars({"last": seq}, ctype=ctype, range=loc.range)
            if args.scratch and rng.random() < 0.3:
                scratch.append(
                    tx.add(
                        "scratch",
                        np.full(int(rng.integers(1, 2000)), seq),
                        begin_ns=T0,
                        end_ns=None,
                        new_ctype=True,
                    ).version
                )
            if args.scratch and len(scratch) > 3 and rng.random() < 0.3:
                tx.remove("scratch", version=scratch.pop(0))
        print(f"C {tx.commit_id} {ctype} {loc.version} {args.wid} {seq}", flush=True)
        seq += 1
        if args.pause:
            time.sleep(float(rng.uniform(0, args.pause)))
    repo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
