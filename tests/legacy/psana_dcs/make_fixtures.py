"""Make DCS fixture files with psana's own code, and record what psana's lookup picks in them.

Not a test: it needs psana's PSCalib (and the two small modules it imports: CalibManager.Logger,
Detector.dir_root) on PYTHONPATH, plus ``stub/`` for the compiled ``psana`` module, and numpy < 2
(``DCVersion.load`` calls ``ndarray.tostring``, which numpy 2 removed). See SOURCES.txt for the
commits and the command. Usage::

    python make_fixtures.py make OUTDIR        # write OUTDIR/cspad-654321.h5 with DCStore.save
    python make_fixtures.py lookup FILE.h5     # print psana's picks as JSON (DCStore.load)

``lookup`` prints, for each ctype and each probe time (every stored begin and end, a hair
either side, midpoints), the key and version number psana's ``DCType.range_for_tsec`` and
``DCRange.version()`` return, and for each version its data as psana loaded it.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from PSCalib.DCStore import DCStore

T0 = 1_600_000_000.0


def make(outdir: str) -> None:
    o = DCStore(f"{outdir}/cspad-654321.h5")
    o.set_tscfile(T0 - 100.5)
    o.set_predecessor("cspad-654320")
    o.add_par("str_par", "some text")
    o.add_par("int_par", 42)
    o.add_par("float_par", 2.5)
    o.add_history_record("store created", T0 - 100.25)
    o.add_history_record("second record", T0 - 50.0)

    ped = o.add_ctype("pedestals")
    ped.add_par("units", "ADU")
    ped.add_history_record("pedestals added", T0 - 10.0)
    # overlapping: a wide open range, a closed one inside it, one with the same begin but narrower
    wide = ped.add_range(T0 + 0.25)
    inner = ped.add_range(T0 + 100.5, end=T0 + 200.75)
    narrow = ped.add_range(T0 + 100.5, end=T0 + 150.0)
    later = ped.add_range(T0 + 180.125, end=T0 + 300.0)
    for i, rng in enumerate((wide, inner, narrow, later)):
        rng.add_par("index", i)
        rng.add_history_record(f"range {i}", T0 + i)
        for vn in (1, 2, 5):  # a gap in the numbering
            v = rng.add_version(vnum=vn, tsec_prod=T0 + 1000 * i + vn)
            v.add_data(np.full((2, 3), 10 * i + vn, dtype=np.float32))
            v.add_par("gain", 1.5 * vn)
            v.add_history_record(f"version {vn}", T0 + 1000 * i + vn)
    inner.set_vnum_def(2)  # pinned

    status = o.add_ctype("pixel_status")
    rng = status.add_range(T0 - 5.5, end=T0 + 50.5)
    rng.add_version(tsec_prod=T0).add_data(np.arange(12, dtype=np.uint16).reshape(3, 4))
    rng.add_version(tsec_prod=T0 + 1).add_data(np.arange(12, dtype=np.uint16).reshape(3, 4) * 2)

    geo = o.add_ctype("geometry")
    text = "# TITLE test\nIP 0 CSPAD:V1 0 0 0 1000000 0 0 0 0 0 0\n"
    geo.add_range(T0).add_version(tsec_prod=T0).add_data(text)
    o.save()


def lookup(path: str) -> None:
    o = DCStore(path)
    o.load()
    out: dict[str, object] = {}
    for name, ctype in sorted(o.ctypes().items()):
        probes = set()
        for r in ctype.ranges().values():
            for t in (r.begin(), r.end()):
                if t != "end":
                    t = float(t)
                    probes.update((t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), t + 0.5, t - 0.5))
        picks = []
        for t in sorted(probes):
            r = ctype.range_for_tsec(float(t))
            v = None if r is None else r.version()
            picks.append(
                [repr(float(t)), None if r is None else r.range(), None if v is None else int(v.vnum())]
            )
        versions = {}
        for key, r in ctype.ranges().items():
            for vn, v in r.versions().items():
                d = v.data()
                if isinstance(d, bytes):
                    versions[f"{key}/{int(vn)}"] = d.decode()
                elif d is not None:
                    versions[f"{key}/{int(vn)}"] = repr(d.tolist()) if d.dtype.kind == "c" else d.tolist()
        out[name] = {"picks": picks, "versions": versions}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    {"make": make, "lookup": lookup}[sys.argv[1]](sys.argv[2])
