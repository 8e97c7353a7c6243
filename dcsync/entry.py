"""The ``dcsync`` program's entry point.

``dcsync serve --stdio`` is started once per sync connection, often over SSH, so it skips the
command-line framework (typer and rich cost a fifth of a second to import) and parses its few
options itself; every other command goes to :mod:`dcsync.cli.main`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _serve_fast(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dcsync serve", add_help=False)
    parser.add_argument("--stdio", action="store_true", required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--restrict-to-path", type=Path, action="append", default=[])
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)
    from dcsync.server import run_stdio

    return run_stdio(args.root, read_only=args.read_only, restrict_to=args.restrict_to_path)


def run() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["serve"] and "--stdio" in argv and not {"-h", "--help"} & set(argv):
        status = _serve_fast(argv[1:])
        # The session is over and every file is closed: skip the interpreter's teardown (numpy,
        # h5py: a few tens of ms), which the client would otherwise wait out before it returns.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    from dcsync.cli.main import run as cli

    cli()
