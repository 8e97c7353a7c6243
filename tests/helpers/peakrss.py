"""Run a command and measure its peak resident memory, as the attack tests and the clone-memory
benchmark do.

``ru_maxrss`` survives fork and exec: a child started by a big process (pytest, a benchmark that
built gigabytes) begins with its parent's peak. So the command is started by a small process of its
own, this file run as a script: ``python peakrss.py RESULT -- cmd ...`` starts ``cmd``, ``wait4``\\s
for it (its rusage, and that of the children it reaped, such as the ``dcsync serve`` a local clone
starts) and writes the peak to RESULT. Its own peak, a bare Python's, is the floor of the figure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
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
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "peak.json"
        with subprocess.Popen(
            [sys.executable, __file__, str(result), "--", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else dict(env),
            start_new_session=True,  # a timeout kills the command and whatever it started
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                return Measured(-signal.SIGKILL, out, err, 0, True)
        measured = json.loads(result.read_text())
        return Measured(measured["returncode"], out, err, measured["peak_rss"], False)


def _main(argv: list[str]) -> int:
    result, sep, *command = argv
    if sep != "--" or not command:
        raise SystemExit("usage: peakrss.py RESULT -- command ...")
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    Path(result).write_text(json.dumps({"returncode": child.returncode, "peak_rss": usage.ru_maxrss * 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
