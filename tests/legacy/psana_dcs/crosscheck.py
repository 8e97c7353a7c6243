"""Check psana's own DCS reader against files dcsync's writer made (not a test: it needs psana).

Run with dcsync's Python from the repository root::

    python tests/legacy/psana_dcs/crosscheck.py write 40 OUTDIR   # det-s<i>.h5 from generated stores
    # then, with psana's environment (SOURCES.txt), for each file:
    python make_fixtures.py lookup OUTDIR/det-s<i>.h5 > OUTDIR/s<i>.json
    python tests/legacy/psana_dcs/crosscheck.py compare OUTDIR/det-s<i>.h5 OUTDIR/s<i>.json

``compare`` prints how many of psana's picks dcsync's reader and rule agree with, and each one
they do not; it exits 1 on a difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcsync.legacy.dcs import find_range, pick_version, seconds_to_ns
from dcsync.legacy.dcsread import read_dcs
from dcsync.legacy.dcswrite import write_dcs


def write(count: str, outdir: str) -> None:
    from test_dcs_roundtrip import stores

    for i in range(int(count)):
        write_dcs(Path(outdir) / f"det-s{i}.h5", stores().example())


def compare(path: str, psana_json: str) -> None:
    store = read_dcs(Path(path)).store
    psana = json.loads(Path(psana_json).read_text())
    probes = diffs = 0
    for ctype in store.ctypes:
        for t, key, vnum in psana[ctype.name]["picks"]:
            rng = find_range(ctype, seconds_to_ns(float(t)))
            version = None if rng is None else pick_version(rng)
            mine = (None if rng is None else rng.key, None if version is None else version.number)
            probes += 1
            if mine != (key, vnum):
                diffs += 1
                print(f"DIFF {path} {ctype.name} t={t}: dcsync {mine}, psana {(key, vnum)}")
    print(f"{path}: {probes} probes, {diffs} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    {"write": write, "compare": compare}[sys.argv[1]](*sys.argv[2:])
