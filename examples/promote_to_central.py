"""Check candidate constants in Python, then promote only the good ones to the central repository.

An experiment area holds two dark runs' pedestals; the second fit failed and left NaNs. The script
checks each candidate (finite values, float32, the detector's shape), promotes the ones that pass
with :func:`dcsync.sync.promote.promote`, and prints where the central copies came from. The central
repository's own ``no-nan-inf`` hook is the second line of defence: promoting the bad run anyway
is refused there, and nothing lands.

Run: python examples/promote_to_central.py [DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import dcsync
from dcsync.errors import HookRejected
from dcsync.sync.promote import promote
from dcsync.workspace import hooks

DET = "jungfrau-0123"
SHAPE = (3, 2, 64, 128)  # gain stages, segments, rows, columns (a small Jungfrau)
DTYPE = np.dtype(np.float32)


def build_experiment(root: Path) -> dcsync.Workspace:
    """An experiment area with the pedestals of dark runs 40 (good) and 41 (a failed fit)."""
    xpp = dcsync.Workspace.init(root / "xpp12345", kind="experiment")
    xpp.new_detector(DET, alias="XppGon.0:Jungfrau.0").close()
    rng = np.random.default_rng(40)
    good = rng.normal(1000.0, 5.0, SHAPE).astype(np.float32)
    bad = good.copy()
    bad[0, 1, 10:20, :] = np.nan
    with xpp.repository(DET) as repo:
        with repo.transaction("pedestals from dark run 40") as tx:
            tx.add("pedestals", good, "2026-11-20T08:00:00Z", pars={"run": 40})
        with repo.transaction("pedestals from dark run 41") as tx:
            tx.add("pedestals", bad, "2026-11-21T08:00:00Z", pars={"run": 41})
    return xpp


def problems(value: np.ndarray) -> list[str]:
    """What is wrong with a candidate pedestal array (empty: nothing)."""
    found = []
    if value.dtype != DTYPE:
        found.append(f"dtype {value.dtype}, expected {DTYPE}")
    if value.shape != SHAPE:
        found.append(f"shape {value.shape}, expected {SHAPE}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        found.append(f"{int(np.count_nonzero(~np.isfinite(value)))} values are NaN or Inf")
    return found


def main(root: Path) -> None:
    xpp = build_experiment(root)
    central = dcsync.Workspace.init(root / "central", kind="repository")
    hooks.install(central.root, "no-nan-inf")  # the central repository checks too

    good, bad = [], []
    with xpp.repository(DET) as repo:
        for key, tree in repo.ranges("pedestals"):
            for version in tree.versions:
                constant = repo.get("pedestals", version=version)
                issues = problems(np.asarray(constant.value))
                run = constant.entry.pars.get("run")
                print(f"candidate run {run} {key} {version}: {'; '.join(issues) or 'ok'}")
                (bad if issues else good).append(version)

    for version in good:
        report = promote(
            [DET], str(xpp.root), str(central.root), ctypes=["pedestals"], version=version,
            message=f"validated pedestals {version}",
        )  # fmt: skip
        for pick in report.picks:
            print(f"promoted {pick.ctype} {pick.range} {pick.version}: {pick.action}")

    for version in bad:  # what the check caught, the central hook refuses as well
        try:
            promote([DET], str(xpp.root), str(central.root), ctypes=["pedestals"], version=version)
        except HookRejected as exc:
            print(f"central refused {version}: {exc.message.splitlines()[-1]}")

    with central.repository(DET) as repo:
        for key, tree in repo.ranges("pedestals"):
            for version, entry in tree.versions.items():
                origin = entry.origin
                print(
                    f"central {key} {version}: from {origin['location']} version {origin['version']} "
                    f"(commit {origin['commit'][:12]}, by {origin['author']}, "
                    f"promoted by {origin['promoted_by']} at {origin['promoted_at']})"
                )
        assert sum(len(tree.versions) for _, tree in repo.ranges("pedestals")) == len(good)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
