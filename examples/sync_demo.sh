#!/usr/bin/env bash
# Moving constants between three workspaces on one machine, the way they move between a central
# repository, an experiment's area and a laptop at a beamline. Local paths only: each command
# runs `dcsync serve` as a subprocess for the other side, so no server or SSH is needed (with
# ssh://host/path URLs the same commands go over SSH).
# Usage: bash examples/sync_demo.sh [DIR]   (default: a fresh temporary directory)
set -euo pipefail
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir"
det=epix100a-3925868555

echo "== a central repository with one detector and its first pedestals"
dcsync init central --kind repository
dcsync -C central new "$det"
python3 - <<'PY'
import numpy as np
rng = np.random.default_rng(7)
np.save("pedestals-group.npy", rng.normal(1000, 5, (704, 768)).astype(np.float32))
np.save("pedestals-run42.npy", rng.normal(1002, 5, (704, 768)).astype(np.float32))
np.save("pixel-status.npy", np.zeros((704, 768), np.uint16))
PY
dcsync -C central add "$det" pedestals pedestals-group.npy --begin 2026-11-01T00:00:00Z \
    -m "pedestals from the detector group"

echo "== the experiment's area: a clone of the central repository"
dcsync clone "$dir/central" experiment --kind experiment

echo "== a laptop: a clone of the experiment's area, only the pedestals (a partial clone)"
dcsync clone "$dir/experiment" laptop --ctype pedestals

echo "== at the beamline: pedestals from dark run 42, added on the laptop and pushed"
dcsync -C laptop add "$det" pedestals pedestals-run42.npy --begin 2026-11-21T08:00:00Z --par run=42 \
    -m "dark run 42"
dcsync -C laptop status
dcsync -C laptop push -m "dark run 42 from the laptop"
dcsync -C laptop status

echo "== meanwhile the detector group adds a pixel status map centrally; the experiment pulls it"
dcsync -C central add "$det" pixel_status pixel-status.npy --begin 2026-11-01T00:00:00Z \
    -m "pixel status from the detector group"
dcsync -C experiment pull

echo "== what the experiment has that the central repository does not (object ids, defaults)"
dcsync diff "$dir/central" "$dir/experiment"
dcsync diff "$dir/central" "$dir/experiment" --stat

echo "== run 42 is good: the experiment pushes it back to the central repository"
dcsync -C experiment push -m "promote dark run 42"
dcsync diff "$dir/central" "$dir/experiment"

echo "== the laptop pulls the status map's history (not its payload: pedestals only)"
dcsync -C laptop pull
dcsync -C laptop diff origin "$dir/laptop" --stat

echo "== every copy checks out, and the central log says who pushed from where"
for ws in central experiment laptop; do dcsync -C "$ws" verify; done
dcsync -C central log "$det"
dcsync -C laptop get "$det" pedestals --at now
