"""Run a :class:`~wrong_kinds.HostileServer` over stdin/stdout, as ``dcsync serve --stdio`` runs.

Usage: ``python hostile_serve.py BASE DET [INDEX,...] serve --stdio --root PATH`` (as
``--remote-dcsync "python hostile_serve.py BASE DET 3"``): the cases are built on the HEAD of
the repository file BASE for detector DET; INDEX picks which cases (default all), served in turn,
one per ``heads`` request.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wrong_kinds import HostileServer, cases


def main() -> None:
    base, det = Path(sys.argv[1]), sys.argv[2]
    picked = sys.argv[3] if sys.argv[3] != "serve" else ""
    root = Path(sys.argv[sys.argv.index("--root") + 1])
    every = cases(base)
    chosen = [every[int(i)] for i in picked.split(",")] if picked else every
    HostileServer(root, det, chosen).serve_stdio()


if __name__ == "__main__":
    main()
