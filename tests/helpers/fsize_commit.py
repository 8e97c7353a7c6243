"""Try one commit of a big constant under a file-size limit, as a full disk would stop it.

Usage: ``python fsize_commit.py FILE LIMIT_BYTES PAYLOAD_BYTES``. SIGXFSZ is ignored so writes past
the limit fail with EFBIG instead of killing the process. Exits with the dcsync exception's exit
code (8 for StorageFull), printing its class and message on stderr, or 0 after a commit.
"""

from __future__ import annotations

import resource
import signal
import sys
from pathlib import Path

import numpy as np

from dcsync.errors import DcsyncError
from dcsync.workspace.workspace import open_repository


def main(path: Path, limit: int, nbytes: int) -> int:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        with open_repository(path) as repo, repo.transaction("too big for the disk") as tx:
            tx.add("pixel_gain", np.ones(nbytes // 8), begin_ns=10**18, end_ns=None)
    except DcsyncError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    print("committed")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
