"""The Python API in a script: write constants in one transaction, look them up, use the facade.

Run: python examples/script_api.py [DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import dcsync


def main(root: Path) -> None:
    ws = dcsync.Workspace.init(root, kind="experiment")
    repo = ws.new_detector("jungfrau-0123", alias="XppGon.0:Jungfrau.0")
    begin = "2026-11-21T08:00:00Z"  # or a datetime, or unix seconds; nanoseconds: begin_ns=
    shape = (3, 2, 512, 1024)  # gain stages, segments, rows, columns
    with repo.transaction(message="constants from dark runs 40-42") as tx:
        tx.add("pedestals", np.full(shape, 1000.0, np.float32), begin, pars={"runs": "40-42"})
        tx.add("pixel_status", np.zeros(shape, np.uint16), begin)
        tx.add("pixel_gain", np.ones(shape, np.float32), begin, "2026-12-01")

    constant = repo.get("pedestals", at="now")
    print(
        f"pedestals {constant.value.shape} {constant.value.dtype} version {constant.version} "
        f"valid from {dcsync.format_time(constant.begin)}"
    )

    # The design's facade, for scripts written against the Detector Calibration Store's names.
    cs = dcsync.DCStore(ws, "XppGon.0:Jungfrau.0")
    for ctype in cs.ctypes():
        for rkey in cs.ctypeobj(ctype).ranges():
            rng = cs.ctypeobj(ctype).rangeobj(rkey)
            print(ctype, rkey, "default", rng.versdef(), "versions", rng.versions())
    assert cs.get("pixel_status", "2026-11-22").dtype == np.uint16
    assert all(dcsync.verify_path(ws.resolve(d)).ok for d in ws.detectors())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
