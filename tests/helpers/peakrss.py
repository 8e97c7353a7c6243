"""Run a command and measure its peak resident memory, as the attack tests and the clone-memory
benchmark do: ``wait4`` gives the rusage of that one child (and of the children it reaped, such as
the ``dcsync serve`` a local clone starts), never of another process this one ran before."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import NamedTuple


class Measured(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    timed_out: bool


def run_measured(
    args: Sequence[str], *, timeout: float = 300.0, env: Mapping[str, str] | None = None
) -> Measured:
    """Run ``args`` to its end (killed after ``timeout`` seconds) and return its peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(args), stdout=out, stderr=err, env=None if env is None else dict(env))
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            usage.ru_maxrss * 1024,
            killed.is_set(),
        )
