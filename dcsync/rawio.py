"""Whole reads and writes on raw file descriptors: the kernel may move fewer bytes than asked, and
only a loop that counts makes that safe.

One ``write``/``pwrite``/``sendfile`` call can be short: Linux moves at most :data:`MAX_IO`
(0x7ffff000) bytes per call, so a 2 GiB array written in one call silently lost its tail; a
file-size limit stops a file write part way; a signal cuts a pipe write; a non-blocking pipe takes
only what fits. Positioned reads are short the same ways. Every raw-descriptor write in dcsync goes
through :func:`write_all` (and :func:`sendfile_all`), every positioned read that must be full
through :func:`pread_into` (and :class:`FullFileIO` for h5py), so the loop exists once.

A write that moves no byte at all would loop forever; it is an error instead: :class:`StorageFull`
for a file (with ``errno`` ENOSPC, so callers that name the file in their own message still do),
:class:`ConnectionLost` for a pipe or socket.
"""

from __future__ import annotations

import errno
import io
import os
import select
import stat
from collections.abc import Callable

from dcsync.errors import ConnectionLost, StorageFull

MAX_IO = 0x7FFFF000  # Linux's MAX_RW_COUNT: the most one read/write/sendfile call moves

# What a write that failed for want of room says: no space, a file-size limit, a quota. Everyone
# that turns such a failure into StorageFull (nothing stored, a clear word) asks this one set.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})

Bytes = bytes | bytearray | memoryview


WaitWritable = Callable[[int], None]


def write_all(fd: int, data: Bytes, offset: int | None = None, *, wait: WaitWritable | None = None) -> None:
    """Write all of ``data`` to ``fd``: at its position (``write``), or at ``offset`` (``pwrite``).

    Waits for room on a non-blocking descriptor (``wait(fd)``: by default as long as it takes);
    an OSError of the system call propagates (the caller knows what the descriptor is, and names it).
    """
    wait = wait or _wait_writable
    view = memoryview(data).cast("B")
    done, total = 0, len(view)
    while done < total:
        rest = view[done:]
        try:
            n = os.write(fd, rest) if offset is None else os.pwrite(fd, rest, offset + done)
        except BlockingIOError:  # a full non-blocking pipe or socket: wait until it drains
            wait(fd)
            continue
        if n <= 0:
            raise _stalled(fd, done, total)
        done += n


def _wait_writable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()  # POLLERR/POLLHUP wake it too: the next write then raises (EPIPE)


def _stalled(fd: int, done: int, total: int) -> OSError:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        mode = 0
    what = f"wrote {done} of {total} bytes, then a write moved none"
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        full = StorageFull(f"{what}: the file takes no more")
        full.errno, full.strerror = errno.ENOSPC, f"{what}: the file takes no more"
        return full
    return ConnectionLost(f"{what}: the reader takes no more")


def pread_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Fill ``buffer`` from ``fd`` at ``offset``; returns the bytes read, fewer only at end of file."""
    got, total = 0, len(buffer)
    while got < total:
        n = os.preadv(fd, [buffer[got:]], offset + got)
        if n == 0:
            break  # end of file
        got += n
    return got


def sendfile_all(
    out_fd: int, in_fd: int, offset: int, count: int, *, wait: WaitWritable | None = None
) -> int:
    """Send ``count`` bytes of the file ``in_fd`` from ``offset`` to ``out_fd`` in the kernel.

    Returns how many went: fewer than ``count`` when the file ends early or ``sendfile`` cannot
    serve this pair (EINVAL and the like, before or after some bytes): the caller writes the rest.
    """
    wait = wait or _wait_writable
    done = 0
    while done < count:
        try:
            n = os.sendfile(out_fd, in_fd, offset + done, count - done)
        except BlockingIOError:
            wait(out_fd)
            continue
        except OSError:
            break
        if n <= 0:
            break  # the file ended under us
        done += n
    return done


class FullFileIO(io.FileIO):
    """An unbuffered binary file whose ``readinto`` fills the buffer up to the end of the file.

    h5py's file-object driver reads a whole dataset in one ``readinto`` and takes a short count
    for the end of the file, filling the rest with zeros: a plain ``FileIO`` returned a 2 GiB
    array with zeros past 0x7ffff000.
    """

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = pread_into(self.fileno(), memoryview(buffer).cast("B"), self.tell())
        self.seek(n, os.SEEK_CUR)
        return n
