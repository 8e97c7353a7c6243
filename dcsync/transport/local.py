"""Local channels: a peer program over pipes, or a ``serve(read, write)`` function in a thread.

:class:`SubprocessChannel` runs ``dcsync serve --stdio`` (or anything speaking the protocol on its
stdin/stdout, the system ``ssh`` binary included) with unbuffered pipes. :class:`InProcessChannel`
runs a server function in a daemon thread over two real ``os.pipe`` pairs, so tests and embedders
exercise the same byte-stream behaviour (partial reads, end of stream, broken pipes) as a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from dcsync.errors import ConnectionFailed, ConnectionLost, RemoteError
from dcsync.rawio import write_all
from dcsync.transport.base import Channel
from dcsync.transport.stderr import StderrTail, quote_stderr

__all__ = ["InProcessChannel", "ServeFunction", "SubprocessChannel"]

ServeFunction = Callable[[Callable[[int], bytes], Callable[[bytes], None]], None]

CLOSE_TIMEOUT = 2.0  # how long close() lets the peer exit on its own after ending its input
SETTLE_TIMEOUT = 2.0  # how long an error waits for the peer's exit and last stderr, for its message


PIPE_BYTES = 1 << 20


def widen_pipe(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (Linux's default 64 KiB cuts every 1 MiB frame into 16 trips
    through the scheduler); silently nothing where the OS or the limit says no."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


def _check_size(n: int) -> None:
    if n < 1:
        raise ValueError(f"read size must be at least 1, not {n}")


class SubprocessChannel(Channel):
    """A peer program with stdin/stdout as the byte streams and stderr drained in the background."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        description: str,
        env: Mapping[str, str] | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        if not argv:
            raise ValueError("SubprocessChannel needs a program to run")
        self._argv = list(argv)
        self._description = description
        self._close_timeout = close_timeout
        self._closed = False
        self._lock = threading.Lock()
        self._stderr = StderrTail()
        try:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=None if env is None else dict(env),
            )
        except OSError as exc:
            raise ConnectionFailed(
                f"{description}: cannot start {self._argv[0]!r}: {exc.strerror or exc}"
            ) from exc
        self._stdin: IO[bytes] = popen_pipe(self._proc.stdin)
        self._stdout: IO[bytes] = popen_pipe(self._proc.stdout)
        for stream in (self._stdin, self._stdout):
            widen_pipe(stream.fileno())
        stderr = popen_pipe(self._proc.stderr)
        self._stderr.drain(stderr.read, description)

    @property
    def argv(self) -> list[str]:
        return list(self._argv)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The peer's exit status once it has exited (negative: killed by that signal), else None."""
        return self._proc.poll()

    def read(self, n: int) -> bytes:
        _check_size(n)
        if self._closed:
            raise ConnectionLost(f"{self._description}: read from a closed channel")
        try:
            data = self._stdout.read(n)
        except OSError as exc:
            raise self._lost(f"reading from the peer failed ({exc.strerror or exc})") from exc
        if not data:
            # stdout and stderr end together when the peer exits, but the thread draining stderr
            # may not have read its last words yet ("dcsync: not found"): wait for them, so every
            # message built from this end of stream can quote them.
            self._settle()
            self._at_end_of_stream()
            return b""
        return data

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionLost(f"{self._description}: write to a closed channel")
        try:
            write_all(self._stdin.fileno(), data)
        except OSError as exc:  # BrokenPipeError: the peer exited or closed its input
            raise self._lost("the peer stopped reading its input") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):  # a broken pipe: the peer is gone already
            self._stdin.close()
        try:
            self._proc.wait(self._close_timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(self._close_timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stdout.close()
        self._stderr.wait(SETTLE_TIMEOUT)
        if self._proc.stderr is not None:
            self._proc.stderr.close()

    def stderr_text(self) -> str:
        return self._stderr.text()

    def describe(self) -> str:
        return self._description

    def _settle(self) -> int | None:
        """Give an exiting peer a moment to finish, so messages carry its status and last words."""
        try:
            self._proc.wait(SETTLE_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        else:
            self._stderr.wait(SETTLE_TIMEOUT)
        return self._proc.returncode

    def _lost(self, what: str) -> RemoteError:
        """The error for a broken stream; subclasses refine it (the ``ssh`` binary's own failures)."""
        status = self._settle()
        exited = "" if status is None else f" (it exited with status {status})"
        return ConnectionLost(f"{self._description}: {what}{exited}{quote_stderr(self.stderr_text())}")

    def _at_end_of_stream(self) -> None:
        """Hook for subclasses that can tell a failure from a normal end of stream."""


def popen_pipe(stream: IO[bytes] | None) -> IO[bytes]:
    """A pipe of a process started with ``subprocess.PIPE`` (typed as optional by Popen)."""
    if stream is None:
        raise ConnectionFailed("the peer process was started without a pipe")
    return stream


class InProcessChannel(Channel):
    """``serve(read, write)`` running in a daemon thread, connected by two ``os.pipe`` pairs.

    When ``serve`` returns or raises, its output stream ends and its input is closed (so further
    writes raise :class:`ConnectionLost`); an exception's traceback becomes :meth:`stderr_text`.
    """

    def __init__(self, serve: ServeFunction, *, description: str | None = None) -> None:
        name = getattr(serve, "__qualname__", None) or type(serve).__name__
        self._description = description or f"in-process peer {name}"
        self._stderr = StderrTail()
        self._closed = False
        self._lock = threading.Lock()
        to_server_r, self._to_server_w = os.pipe()
        self._from_server_r, from_server_w = os.pipe()
        self._thread = threading.Thread(
            target=self._run,
            args=(serve, to_server_r, from_server_w),
            name=f"dcsync {self._description}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, serve: ServeFunction, in_fd: int, out_fd: int) -> None:
        def server_read(n: int) -> bytes:
            _check_size(n)
            return os.read(in_fd, n)

        def server_write(data: bytes) -> None:
            try:
                write_all(out_fd, data)
            except OSError as exc:
                raise ConnectionLost("in-process client: closed the channel") from exc

        try:
            serve(server_read, server_write)
        except BaseException:  # everything, like a process: the client must see the end of stream
            self._stderr.feed(traceback.format_exc().encode("utf-8", errors="replace"))
        finally:  # input first, like an exiting process: once the client sees EOF, writes fail
            os.close(in_fd)
            os.close(out_fd)

    def read(self, n: int) -> bytes:
        _check_size(n)
        if self._closed:
            raise ConnectionLost(f"{self._description}: read from a closed channel")
        try:
            return os.read(self._from_server_r, n)
        except OSError as exc:
            raise self._lost(f"reading from the peer failed ({exc.strerror or exc})") from exc

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionLost(f"{self._description}: write to a closed channel")
        try:
            write_all(self._to_server_w, data)
        except OSError as exc:
            raise self._lost("the peer stopped reading its input") from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self._to_server_w)  # the server reads end of stream
        self._thread.join(CLOSE_TIMEOUT)
        os.close(self._from_server_r)  # a server still writing gets a broken pipe and ends
        self._thread.join(CLOSE_TIMEOUT)

    @property
    def finished(self) -> bool:
        """True once ``serve`` has returned or raised."""
        return not self._thread.is_alive()

    def stderr_text(self) -> str:
        return self._stderr.text()

    def describe(self) -> str:
        return self._description

    def _lost(self, what: str) -> ConnectionLost:
        self._thread.join(SETTLE_TIMEOUT)
        return ConnectionLost(f"{self._description}: {what}{quote_stderr(self.stderr_text())}")
