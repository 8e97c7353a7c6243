"""Record psana's own choices for random ctype folders, as test data for dcsync's finder.

Run by hand, with a checkout of https://github.com/lcls-psana/PSCalib (its ``src`` folder)::

    python tests/legacy/make_psana_finder_cases.py /path/to/PSCalib/src COMMIT

It writes ``tests/legacy/data/psana_finder_cases.json``: for each random folder, made of empty
files in a temporary calib directory, its names in ``os.listdir`` order (psana's tie-break) and the
name psana's ``CalibFileFinder.findCalibFile`` (which calls ``selectCalibFile``) returns for runs at
and around every boundary, or the exception it raises (it fails on some bad names).
psana's module runs unchanged in a subprocess; only its two imports
that the selection never uses (``GlobalUtils``, ``NDArrIO``, which need the rest of psana) are
replaced by empty modules. Nothing of psana's code is copied into dcsync or into this file.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "data" / "psana_finder_cases.json"
_RUNNER = r"""
import json, os, shutil, sys, tempfile, types
real_stdout, sys.stdout = sys.stdout, sys.stderr  # psana prints warnings on stdout
sys.modules["PSCalib"] = types.ModuleType("PSCalib")
sys.modules["PSCalib.GlobalUtils"] = types.ModuleType("PSCalib.GlobalUtils")
nd = types.ModuleType("PSCalib.NDArrIO"); nd.save_txt = None; sys.modules["PSCalib.NDArrIO"] = nd
ns = {"__name__": "psana_finder"}
exec(compile(open(sys.argv[1]).read(), sys.argv[1], "exec"), ns)
out = []
for i, (names, runs) in enumerate(json.load(sys.stdin)):
    calib = tempfile.mkdtemp(prefix="calib")
    folder = os.path.join(calib, "G::CalibV1", "S.0:D.0", "pedestals")
    os.makedirs(folder)
    for name in names:
        open(os.path.join(folder, name), "w").close()
    finder = ns["CalibFileFinder"](calib, "G::CalibV1", pbits=0)
    listed = os.listdir(folder)  # the order psana sees (it lists again, the same way)
    try:
        picks = [os.path.basename(finder.findCalibFile("S.0:D.0", "pedestals", r)) or None for r in runs]
    except Exception as exc:  # psana's own bug: '%d' % str on some bad names
        picks = type(exc).__name__
    shutil.rmtree(calib)
    out.append([listed, picks])
json.dump(out, real_stdout)
"""


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.7:
        return str(rng.randrange(0, 60))
    if kind < 0.8:
        return str(rng.choice([9998, 9999, 10000, 12345]))
    if kind < 0.9:
        return "0" + str(rng.randrange(0, 60))  # leading zero: same value
    return rng.choice(["", "x", "1a", "-", "1.5", " 3"])


def _name(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.75:
        end = "end" if rng.random() < 0.3 else _number(rng)
        return f"{_number(rng)}-{end}.data"
    if kind < 0.85:
        return f"{rng.randrange(60)}-end.data-2020-01-0{rng.randrange(1, 9)}T10:00:00"
    return rng.choice(["HISTORY", "1-5.txt", "3-7-9.data", "12.data", ".data", "5-end.DATA", "a-b.data"])


def main(src: str, commit: str) -> None:
    rng = random.Random(11)
    cases = []
    for _ in range(150):
        names = sorted({_name(rng) for _ in range(rng.randrange(0, 10))})  # one folder: no duplicates
        runs = {0, 1, 9998, 9999, 10000, 123456}
        for n in names:
            for part in n.split(".")[0].split("-"):
                if part.isdigit():
                    runs |= {int(part) - 1, int(part), int(part) + 1}
        cases.append((names, sorted(r for r in runs if r >= 0)))
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(Path(src) / "CalibFileFinder.py")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
    )
    answers = json.loads(result.stdout)
    records = [
        {"names": listed, "raises": p}
        if isinstance(p, str)
        else {"names": listed, "picks": [[run, pick] for run, pick in zip(runs, p, strict=True)]}
        for (_, runs), (listed, p) in zip(cases, answers, strict=True)
    ]
    meta = {"source": "lcls-psana/PSCalib src/CalibFileFinder.py", "commit": commit}
    OUT.write_text(json.dumps({"recorded_from": meta, "cases": records}, indent=None) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
