#!/usr/bin/env bash
# A local demo of dcsync's main job, no server needed: a calib workspace, a detector, pedestals
# from two dark runs, a lookup by time, a pin back to the good constants, history and a check.
# Usage: bash examples/demo.sh [DIR]   (default: a fresh temporary directory)
set -euo pipefail
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir"
echo "== workspace in $dir"
dcsync init . --kind local

echo "== a detector with an alias"
dcsync new epix100a-3925868555 --alias Camera1

echo "== two dark runs' pedestals, as a psana text array and as .npy"
python3 - <<'PY'
import numpy as np
rng = np.random.default_rng(7)
run1 = rng.normal(1000, 5, (704, 768)).astype(np.float32)
np.save("run12-pedestals.npy", run1)
with open("run13-pedestals.data", "w") as fh:
    fh.write("# TITLE pedestals from run 13\n# DTYPE float32\n# NDIM 2\n# DIM:0 704\n# DIM:1 768\n")
    np.savetxt(fh, run1 + 1.5, fmt="%.9g")
PY
dcsync add Camera1 pedestals run12-pedestals.npy --begin 2026-11-20T08:00:00Z -m "dark run 12"
dcsync add Camera1 pedestals run13-pedestals.data --begin 2026-11-21T08:00:00Z --par run=13 -m "dark run 13"

echo "== what a lookup returns at two times"
dcsync get Camera1 pedestals --at 2026-11-20T12:00:00Z
dcsync get Camera1 pedestals --at now

echo "== run 13 turned out bad: drop it, so run 12's pedestals are valid again"
dcsync rm Camera1 pedestals --range 1795248000 -m "run 13 dark was taken with the shutter open"
dcsync get Camera1 pedestals --at now --json

echo "== everything, its history, and a full check"
dcsync show Camera1
dcsync log Camera1
dcsync verify
echo "== plain h5py reads the same constants without dcsync"
python3 - <<'PY'
import h5py
with h5py.File("epix100a/epix100a-3925868555.h5", "r", locking=False) as f:
    rng = f["pedestals"]
    for name in rng:
        v = rng[name].attrs["effectivev"]
        print(name, v, rng[name][v]["calib"].shape, rng[name][v]["calib"].dtype)
PY
