"""Run one journaled transaction on a plain HDF5 file and die by SIGKILL at a chosen stage.

Usage: ``python journal_crash.py FILE STAGE``. The transaction negates dataset ``a`` in place (so
many pages of the original region change), sets root attribute ``x`` and appends dataset ``b``.
STAGE is where the process kills itself, as a crash would stop it:

    written        h5py closed, nothing committed yet (journal holds only its header)
    journaled      the original pages are in the journal and fsynced, none overwritten yet
    half-applied   about half of the dirty pages overwritten in place
    applied        every page overwritten and the file fsynced, the journal not yet deleted
    committed      commit() returned (the journal is gone)

The stages are reached by wrapping the journal's own steps from outside, so the library carries no
test switches. Exit code 0 (stage ``none``) means the transaction committed and the process lived.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import h5py
import numpy as np

from dcsync.store.journal import JournaledFile

STAGES = ("written", "journaled", "half-applied", "applied", "committed", "none")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(path: Path, stage: str) -> None:
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    jf = JournaledFile(path)
    with h5py.File(jf, "r+", libver=("latest", "latest")) as f:
        f["a"][...] = -f["a"][...]
        f.attrs["x"] = "new"
        f.create_dataset("b", data=np.arange(200_000, dtype=np.int64))
    if stage == "written":
        die()
    total = jf.dirty_pages()
    journal_pages = jf._journal_pages
    close_fds = jf._close_fds
    journaled = False

    def journal_then_stop() -> None:
        nonlocal journaled
        journal_pages()
        journaled = True
        if stage == "journaled":
            die()
        if stage == "half-applied":
            real_pwrite = os.pwrite
            count = 0

            def pwrite(fd: int, data: bytes, offset: int) -> int:
                nonlocal count
                written = real_pwrite(fd, data, offset)
                count += 1
                if count >= max(1, total // 2):
                    die()
                return written

            os.pwrite = pwrite

    def close_then_stop() -> None:
        if journaled and stage == "applied":
            die()
        close_fds()

    jf._journal_pages = journal_then_stop  # type: ignore[method-assign]
    jf._close_fds = close_then_stop  # type: ignore[method-assign]
    jf.commit()
    if stage == "committed":
        die()
    print(total, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
