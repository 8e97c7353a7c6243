"""Read a detector file's seed-schema view with h5py alone, as a user without dcsync would.

Usage: ``python view_reader.py FILE`` prints the view as JSON and fails if dcsync got imported.
Imported by ``tests/store/test_view.py`` too, so both sides run the same reading code.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import h5py


def read_view(path: str) -> dict[str, Any]:
    """Everything the view shows, as plain Python, read with h5py only."""
    out: dict[str, Any] = {"root": {}, "ctypes": {}}
    with h5py.File(path, "r") as f:
        a = f.attrs
        out["root"] = {
            k: (int(a[k]) if k == "tscfile" else str(a[k]))
            for k in ("dettype", "detid", "detname", "tscfile", "predecessor", "successor")
        }
        out["root"]["dictpars"] = json.loads(a["dictpars"])
        out["root"]["history"] = json.loads(a["history"])
        for ctype in f:
            if ctype.startswith("."):
                continue
            g = f[ctype]
            ranges = {}
            for rkey in g:
                r = g[rkey]
                versions = {}
                for vkey in r:
                    v = r[vkey]
                    calib = v["calib"]
                    value = calib[()]
                    value = value.decode("utf-8") if isinstance(value, bytes) else value.tolist()
                    versions[vkey] = {
                        "value": value,
                        "dtype": str(calib.dtype),
                        "tsprod": int(v.attrs["tsprod"]),
                        "dictpars": json.loads(v.attrs["dictpars"]),
                        "history": json.loads(v.attrs["history"]),
                        "link_is_hard": isinstance(v.get("calib", getlink=True), h5py.HardLink),
                    }
                ranges[rkey] = {
                    "tsbegin": int(r.attrs["tsbegin"]),
                    "tsend": int(r.attrs["tsend"]),
                    "defaultv": str(r.attrs["defaultv"]),
                    "effectivev": str(r.attrs["effectivev"]),
                    "versions_attr": [str(x) for x in r.attrs["versions"]],
                    "tsvers": [int(x) for x in r.attrs["tsvers"]],
                    "dictpars": json.loads(r.attrs["dictpars"]),
                    "history": json.loads(r.attrs["history"]),
                    "versions": versions,
                }
            out["ctypes"][ctype] = {
                "dictpars": json.loads(g.attrs["dictpars"]),
                "history": json.loads(g.attrs["history"]),
                "ranges": ranges,
            }
    return out


if __name__ == "__main__":
    view = read_view(sys.argv[1])
    assert not any(m == "dcsync" or m.startswith("dcsync.") for m in sys.modules), "dcsync was imported"
    json.dump(view, sys.stdout)
