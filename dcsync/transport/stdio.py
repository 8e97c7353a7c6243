"""The server's end of a byte stream on two file descriptors (``dcsync serve --stdio``: its
stdin and stdout): the ``read``/``write`` callables a server speaks through, a ``sendfile`` that
copies file bytes to the output in the kernel, and the idle clock that ends a session whose client
stopped sending or reading.

The server sees only the callables; the descriptors, polling and non-blocking output stay here.
"""

from __future__ import annotations

import os
import select
import sys

from dcsync.errors import ConnectionLost
from dcsync.rawio import sendfile_all, write_all
from dcsync.transport.local import widen_pipe

__all__ = ["IdleClock", "StdioStreams"]


class IdleClock:
    """Ends a session whose client neither sends nor takes what it is sent for ``timeout``
    seconds: without it a client that stopped reading, or never sent, kept its server process
    (and whatever it holds open) alive forever. Only time spent waiting on the client counts, never
    the server's own work (a long commit, a hook)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False

    def wait(self, fd: int, event: int) -> None:
        if self.timeout <= 0:
            return  # no limit: the blocking call waits as long as it takes
        poller = select.poll()
        poller.register(fd, event)
        # Once expired, the session is ending: a last error frame goes only if it fits right away.
        if not poller.poll(0 if self.expired else int(self.timeout * 1000)):
            self.expired = True
            sys.stderr.write(
                f"dcsync serve: the client was idle for {self.timeout:g} s; ending the session\n"
            )
            raise ConnectionLost(f"the client was idle for {self.timeout:g} s (the server's idle timeout)")


class StdioStreams:
    """``read``, ``write`` and ``sendfile`` over the descriptors ``infd`` and ``outfd``, each wait
    for the client timed by :attr:`clock` (no limit until :meth:`limit_idle` sets one)."""

    def __init__(self, infd: int, outfd: int) -> None:
        self.infd, self.outfd = infd, outfd
        self.clock = IdleClock(0)
        widen_pipe(outfd)  # sshd or the local client reads bulk transfers from it

    def limit_idle(self, timeout: float) -> None:
        """End the session after ``timeout`` seconds (0: never) of waiting on the client."""
        self.clock.timeout = timeout
        if timeout > 0:
            os.set_blocking(self.outfd, False)  # a write must not wait for a client that stopped reading

    def read(self, n: int) -> bytes:
        self.clock.wait(self.infd, select.POLLIN)
        return os.read(self.infd, n)

    def write(self, data: bytes) -> None:
        write_all(self.outfd, data, wait=self._writable)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Bytes of a file to our output in the kernel; returns how many went (0: unsupported)."""
        return sendfile_all(self.outfd, fd, offset, count, wait=self._writable)

    def _writable(self, fd: int) -> None:
        self.clock.wait(fd, select.POLLOUT)
