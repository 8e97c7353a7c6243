"""Run ``dcsync`` (normally ``serve --stdio ...``) as a remote whose disk is full past a file size.

Usage: ``python fsize_serve.py LIMIT_BYTES serve --stdio --root PATH``, e.g. as ``--remote-dcsync
"python tests/helpers/fsize_serve.py 1048576"``. RLIMIT_FSIZE makes every write past LIMIT_BYTES of
any file fail with EFBIG, as ENOSPC would on a full disk; SIGXFSZ is ignored so the write fails
instead of killing the process.
"""

from __future__ import annotations

import resource
import signal
import sys


def main() -> None:
    limit = int(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = ["dcsync", *sys.argv[2:]]
    from dcsync.cli.main import run

    run()


if __name__ == "__main__":
    main()
