"""Writes that the kernel cuts short are finished (dcsync.rawio), on real pipes and real files.

Short writes here are real, not simulated: a non-blocking pipe of one page takes only what fits; a
blocking pipe write interrupted by a signal returns what it moved so far; a file-size limit
(RLIMIT_FSIZE, as a nearly full disk) stops a file write part way. The 2 GiB case (Linux moves at
most 0x7ffff000 bytes per call) runs end to end in test_big_payload.py (slow).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dcsync.errors import ConnectionLost, StorageFull
from dcsync.rawio import _stalled, pread_into, write_all
from dcsync.transport.paramiko import _ProxyCommandSocket
from dcsync.transport.stderr import StderrTail

REPO_ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = os.urandom(1 << 20)  # far more than one pipe buffer


def small_pipe(nonblocking: bool) -> tuple[int, int]:
    """A pipe of one page (the smallest Linux allows), so any bigger write must be short."""
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    if nonblocking:
        os.set_blocking(w, False)
    return r, w


def drain(fd: int, into: bytearray, delay: float = 0.0) -> threading.Thread:
    """Read ``fd`` to its end in a thread (after ``delay``), into ``into``."""

    def run() -> None:
        time.sleep(delay)
        while chunk := os.read(fd, 65536):
            into.extend(chunk)
        os.close(fd)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def signals_every(seconds: float) -> Iterator[list[int]]:
    """SIGALRM every ``seconds`` with a handler that only counts: a blocked pipe write it
    interrupts returns the bytes it moved so far (PEP 475 retries only a write that moved none)."""
    fired: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_write_to_a_small_nonblocking_pipe_really_is_short() -> None:
    """The premise of the next test: one write moves only what the pipe holds."""
    r, w = small_pipe(nonblocking=True)
    try:
        assert 0 < os.write(w, PAYLOAD) < len(PAYLOAD)
    finally:
        os.close(r)
        os.close(w)


def test_write_all_finishes_through_a_small_nonblocking_pipe() -> None:
    r, w = small_pipe(nonblocking=True)
    received = bytearray()
    reader = drain(r, received, delay=0.05)  # the pipe is full (EAGAIN) before the reader starts
    try:
        write_all(w, PAYLOAD)
    finally:
        os.close(w)
    reader.join(10)
    assert bytes(received) == PAYLOAD


def test_write_all_finishes_a_blocking_pipe_write_cut_by_signals() -> None:
    r, w = small_pipe(nonblocking=False)
    received = bytearray()
    reader = drain(r, received, delay=0.2)  # the write blocks, and the signals cut it
    with signals_every(0.02) as fired:
        try:
            write_all(w, PAYLOAD)
        finally:
            os.close(w)
    reader.join(10)
    assert fired, "no signal came while the write was blocked"
    assert bytes(received) == PAYLOAD


def _limited_write(path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """Run ``_LIMITED_WRITE`` in a child (the size limit is per process) and check it ran."""
    out = subprocess.run(
        [sys.executable, "-c", _LIMITED_WRITE, str(path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.returncode == 0, out.stderr
    return out


def test_write_all_at_an_offset_finishes_through_a_file_write_cut_by_a_size_limit(tmp_path: Path) -> None:
    """Under RLIMIT_FSIZE the first pwrite moves only up to the limit; the loop's next one then
    meets the limit itself (EFBIG), where a single call would have reported a short count only."""
    out = _limited_write(tmp_path / "f", "write_all")
    first, loop = out.stdout.split()
    assert 0 < int(first) < 65536  # one pwrite: short, without an error
    assert loop == f"errno={errno.EFBIG}"  # the loop goes on, and the limit is an error
    assert (tmp_path / "f").stat().st_size == 8192 + 4196


def test_a_journaled_write_cut_by_a_size_limit_is_storage_full_not_a_silent_success(tmp_path: Path) -> None:
    """The bug behind issue 8's zeros: JournaledFile.write ignored pwrite's count, so the bytes
    past a short write were never written and nothing said so."""
    out = _limited_write(tmp_path / "f", "journaled")
    assert out.stdout.startswith("StorageFull: no space left writing"), out.stdout


# A child process: the file-size limit must not touch the test runner's own files.
_LIMITED_WRITE = """
import errno, os, resource, signal, sys
from pathlib import Path
from dcsync.errors import StorageFull
from dcsync.rawio import write_all
from dcsync.store.journal import JournaledFile

path, mode = Path(sys.argv[1]), sys.argv[2]
path.write_bytes(b"x" * 8192)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192 + 4196, resource.RLIM_INFINITY))
if mode == "write_all":
    fd = os.open(path, os.O_RDWR)
    print(os.pwrite(fd, b"y" * 65536, 8192))
    try:
        write_all(fd, b"z" * 65536, 8192)
    except OSError as exc:
        print(f"errno={exc.errno}")
    else:
        print("no error")
else:
    jf = JournaledFile(path)
    jf.seek(8192)
    try:
        jf.write(b"y" * 65536)
    except StorageFull as exc:
        print(f"StorageFull: {exc}")
    else:
        print(f"returned; the file has {os.stat(path).st_size} bytes")
    jf.rollback()
"""


def test_a_proxy_command_gets_every_byte_paramiko_sends(tmp_path: Path) -> None:
    """paramiko's ProxyCommand.send reports a short write to the unbuffered pipe as complete; the
    bytes after it were lost, and SSH through a ProxyCommand broke on a signal mid-write."""
    out = tmp_path / "received"
    # The proxy reads nothing for a while, so the write blocks on the full pipe and a signal cuts it.
    script = f"sleep 0.3; exec cat > {shlex.quote(str(out))}"
    proxy = _ProxyCommandSocket(f"sh -c {shlex.quote(script)}", StderrTail())
    try:
        with signals_every(0.05) as fired:
            assert proxy.send(PAYLOAD) == len(PAYLOAD)
        assert fired
        assert proxy.process.stdin is not None
        proxy.process.stdin.close()
        assert proxy.process.wait(10) == 0
    finally:
        proxy.close()
    assert out.read_bytes() == PAYLOAD


def test_a_write_that_moves_nothing_is_an_error_of_the_right_kind(tmp_path: Path) -> None:
    """A write of zero bytes would loop for ever: storage full for a file (errno ENOSPC, so callers
    name the file as they do for a full disk), the connection lost for a pipe."""
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY)
    r, w = os.pipe()
    try:
        full = _stalled(fd, 10, 20)
        lost = _stalled(w, 10, 20)
    finally:
        for each in (fd, r, w):
            os.close(each)
    assert isinstance(full, StorageFull) and full.errno == errno.ENOSPC
    assert isinstance(lost, ConnectionLost)
    assert "wrote 10 of 20 bytes" in str(full) and "wrote 10 of 20 bytes" in str(lost)


def test_pread_into_fills_the_buffer_and_stops_at_the_end_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD[:10_000])
    fd = os.open(path, os.O_RDONLY)
    try:
        buffer = bytearray(20_000)
        assert pread_into(fd, memoryview(buffer), 5_000) == 5_000
        assert buffer[:5_000] == PAYLOAD[5_000:10_000] and not any(buffer[5_000:])
    finally:
        os.close(fd)
