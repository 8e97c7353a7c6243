"""Commit one constant to a repository and die by SIGKILL just before the commit point.

Usage: ``python repo_crash.py FILE``. The journal's pages are written and fsynced, every page of
the file is overwritten with the new state, and the process is killed before the journal is
deleted: the worst moment, when the live bytes are the new state but the commit has not happened.
The kill is reached by wrapping the journal from outside; the library has no test switches.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import dcsync.store.hdf5
from dcsync.store.journal import JournaledFile
from dcsync.workspace.workspace import open_repository


class DyingJournal(JournaledFile):
    def _journal_pages(self) -> None:
        super()._journal_pages()
        self.journaled = True

    def _close_fds(self) -> None:
        if getattr(self, "journaled", False):
            os.kill(os.getpid(), signal.SIGKILL)
        super()._close_fds()


def main(path: Path) -> None:
    dcsync.store.hdf5.JournaledFile = DyingJournal  # type: ignore[misc]
    repo = open_repository(path)
    with repo.transaction("never lands") as tx:
        tx.add("pedestals", np.full(1000, 99.0), begin_ns=10**18, end_ns=None)
    raise SystemExit("survived the commit point")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
