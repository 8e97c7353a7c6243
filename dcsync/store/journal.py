"""A rollback journal at the byte level, under h5py's file-object driver: commits cost O(new data)
and a process killed at any instant leaves the file as it was before or after the commit.

The idea is SQLite's rollback journal. While a :class:`JournaledFile` is open for a transaction,
writes past the file's original end go straight to disk (truncating back undoes them). Writes
inside the original region are held in a page cache; at :meth:`JournaledFile.commit` the original
content of every touched page is appended to ``<file>.journal`` and fsynced *before* any page of the
original region is overwritten. Then the pages are written, the file is fsynced, and the journal is
deleted: that unlink is the commit point.

A writer that may have lost its lock (stopped past the stale timeout, then broken) must never write
again: the ``fence`` callable, the lock's own check, runs before every write that reaches the disk,
and once it fails the transaction only closes its descriptors (the breaker already rolled it back).
The journal is removed by renaming it aside and checking it is ours, so a late writer never deletes
the next writer's journal. The check cannot be atomic with the write that follows it (POSIX has no
fenced write), so what is left is the instant between the two system calls.

Several files commit atomically together through an :class:`AtomicGroup` (``push --atomic``): a
group marker file is created before any journal that names it; every file is prepared (journal
fsynced, pages written, file fsynced) with its journal kept; deleting the marker is the one commit
point for all; then the journals go. Recovery of a journal whose marker still exists rolls back; of
one whose marker is gone, just deletes the journal (the group had committed).

The journal's layout, and what happens to a journal left behind (recovery, refusal, reading the
file as it was), are :mod:`dcsync.store.recovery`'s.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import xxhash

from dcsync.errors import DcsyncError, NotMyLock, RepositoryError, StorageFull
from dcsync.rawio import FULL_ERRNOS, pread_into, write_all
from dcsync.store.recovery import (
    HEADER,
    HEADER_SUM,
    LENGTH,
    MAGIC,
    PAGE_SIZE,
    RECORD,
    Positioned,
    fsync_dir,
    journal_path,
    real_path,
    record_digest,
    recover,
)

_FENCED_CHUNK = 16 << 20  # appends are written (and the lock checked) at most this much at a time


def _translate(exc: OSError, path: Path) -> OSError:
    if exc.errno in FULL_ERRNOS:
        return StorageFull(f"no space left writing {path}: nothing was committed ({exc.strerror})")
    return exc


class JournaledFile(Positioned):
    """A file object for ``h5py.File(obj, "r+")`` that makes one transaction atomic.

    Use: open, hand to h5py, close the h5py file, then :meth:`commit` (or :meth:`rollback`).
    The caller holds the repository lock for the whole time; ``fence`` (the lock's check, raising
    :class:`~dcsync.errors.NotMyLock`) runs before every write that reaches the disk. ``head`` (the
    HEAD the transaction starts from) is recorded for the humans who may one day read the journal.
    """

    def __init__(
        self,
        path: Path,
        *,
        page_size: int = PAGE_SIZE,
        group_marker: Path | None = None,
        fence: Callable[[], None] | None = None,
        head: str = "",
    ) -> None:
        super().__init__()
        self.path = path
        self.group_marker = group_marker
        self.page_size = page_size
        self._fence = fence
        self.lost: NotMyLock | None = None  # the fence failed: never write again, never roll back
        # __del__ runs even when __init__ fails (a refused open, Ctrl-C): nothing to close until here.
        self._done = True
        self._journal_fd: int | None = None
        self._journal_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the journal we made
        self._fd = os.open(path, os.O_RDWR)
        self._done = False
        st = os.fstat(self._fd)
        # Size and first page are read together, before the journal exists: if another writer
        # committed meanwhile (we were stopped and broken), the journal describes a state the file
        # is no longer in, and recovery refuses it rather than cutting that commit off.
        self.original_size = st.st_size
        self._inode = st.st_ino
        self._anchor = xxhash.xxh64_intdigest(os.pread(self._fd, min(page_size, st.st_size), 0))
        self._size = self.original_size
        self._pos = 0
        self._pages: dict[int, bytearray] = {}  # page index -> current content (original region only)
        self._originals: dict[int, bytes] = {}  # page index -> content before the transaction
        # h5py swallows driver errors (a full disk, a lost lock); the store re-raises this one.
        self.failure: OSError | DcsyncError | None = None
        self._open_journal(head)

    # -- fencing ---------------------------------------------------------------------------------------
    def check_fence(self) -> None:
        """Raise :class:`NotMyLock` if the lock may have been lost; after that, nothing is written."""
        if self.lost is None and self._fence is not None:
            try:
                self._fence()
            except NotMyLock as exc:
                self.lost = NotMyLock(
                    f"{exc}. This process was stopped or stalled longer than the stale timeout, and "
                    "another writer broke its lock and rolled this commit back; nothing more was "
                    "written: run the command again"
                )
        if self.lost is not None:
            self.failure = self.lost
            raise self.lost

    # -- io.RawIOBase -------------------------------------------------------------------------
    def writable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        start = self._pos
        got = pread_into(self._fd, view[:n], start)
        if got < n:  # beyond the real end of file (can only be inside a page we cache): zeros
            view[got:n] = bytes(n - got)
        self._overlay_cached(view[:n], start)
        self._pos += n
        return n

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        n = len(view)
        start = self._pos
        split = min(max(self.original_size - start, 0), n)
        if split:
            self._write_cached(view[:split], start)
        for lo in range(split, n, _FENCED_CHUNK):  # appends reach the disk at once: fence each
            self.check_fence()
            try:
                write_all(self._fd, view[lo : lo + _FENCED_CHUNK], start + lo)
            except OSError as exc:
                self.failure = _translate(exc, self.path)
                raise self.failure from exc
        self._pos += n
        self._size = max(self._size, start + n)
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        # Never cut into the original region: HDF5 ignores bytes past its end-of-allocation, and a
        # shrink there would need journaling for no gain.
        size = max(size, self.original_size)
        self.check_fence()
        os.ftruncate(self._fd, size)
        self._size = size
        return size

    def flush(self) -> None:
        """A no-op: durability happens once, in :meth:`commit`."""

    # -- page cache ------------------------------------------------------------------------------
    def _overlay_cached(self, view: memoryview, start: int) -> None:
        if not self._pages or not len(view):
            return
        ps = self.page_size
        end = min(start + len(view), self.original_size)
        if end <= start:
            return
        for page in range(start // ps, (end - 1) // ps + 1):
            cached = self._pages.get(page)
            if cached is None:
                continue
            lo, hi = max(start, page * ps), min(end, (page + 1) * ps)
            view[lo - start : hi - start] = cached[lo - page * ps : hi - page * ps]

    def _write_cached(self, view: memoryview, start: int) -> None:
        ps = self.page_size
        end = start + len(view)
        for page in range(start // ps, (end - 1) // ps + 1):
            cached = self._pages.get(page)
            if cached is None:
                original = os.pread(self._fd, ps, page * ps)
                self._originals[page] = original
                cached = bytearray(original.ljust(ps, b"\0"))
                self._pages[page] = cached
            lo, hi = max(start, page * ps), min(end, (page + 1) * ps)
            cached[lo - page * ps : hi - page * ps] = view[lo - start : hi - start]

    # -- journal -----------------------------------------------------------------------------------
    def _open_journal(self, head: str) -> None:
        header = HEADER.pack(
            MAGIC, self.page_size, self.original_size, self._inode, self._anchor, os.urandom(16)
        )
        for text in (
            os.fsencode(self.group_marker) if self.group_marker else b"",
            real_path(self.path),
            head,
        ):
            raw = os.fsencode(text)[:0xFFFF]
            header += LENGTH.pack(len(raw)) + raw
        header += HEADER_SUM.pack(xxhash.xxh64_intdigest(header))
        jpath = journal_path(self.path)
        try:
            fd = os.open(jpath, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._close_fds()
            self._done = True
            raise RepositoryError(
                f"{jpath} appeared after recovery ran, while this process held the lock on "
                f"{self.path}: another program writes there without dcsync's lock; nothing was written"
            ) from None
        except BaseException:  # Ctrl-C as the call returned: the journal (ours, under the lock) is
            jpath.unlink(missing_ok=True)  # unnamed yet, so nothing would roll it back
            raise
        st = os.fstat(fd)
        self._journal_id = (st.st_dev, st.st_ino)
        try:
            self.check_fence()  # stopped before the journal existed: another writer may own the file
            write_all(fd, header)
        except BaseException as exc:  # a failed write, or Ctrl-C: no transaction owns this journal yet
            os.close(fd)
            self._remove_journal_if_ours()
            if isinstance(exc, OSError):
                raise _translate(exc, self.path) from exc
            raise
        self._journal_fd = fd

    def _journal_is_ours(self) -> bool:
        """Whether ``<file>.journal`` is still the journal this transaction created."""
        try:
            st = os.stat(journal_path(self.path))
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._journal_id

    def _remove_journal_if_ours(self) -> bool:
        """Delete our journal, never one another writer made meanwhile; True if we deleted it.

        Rename it aside first (atomic), then look at what we took: someone else's goes back with
        ``link``, which fails rather than clobber a journal made in between (as the lock does).
        """
        jpath = journal_path(self.path)
        aside = jpath.with_name(f"{jpath.name}.done-{os.urandom(6).hex()}")
        try:
            os.rename(jpath, aside)
        except FileNotFoundError:
            return False
        st = os.stat(aside)
        if (st.st_dev, st.st_ino) == self._journal_id:
            aside.unlink()
            fsync_dir(self.path)
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, jpath)
        aside.unlink()
        return False

    def _journal_pages(self) -> None:
        assert self._journal_fd is not None
        chunks = []
        for page, original in sorted(self._originals.items()):
            offset = page * self.page_size
            length = min(len(original), max(self.original_size - offset, 0))
            data = original[:length]
            new = xxhash.xxh64_intdigest(bytes(self._pages[page][:length]))
            digest = record_digest(offset, length, new, data)
            chunks.append(RECORD.pack(offset, length, new, digest) + data)
        self.check_fence()
        write_all(self._journal_fd, b"".join(chunks))
        os.fsync(self._journal_fd)
        fsync_dir(self.path)  # the journal's own name must survive a power loss too (as SQLite does)

    def dirty_pages(self) -> int:
        """How many pages of the original region this transaction overwrites (for benchmarks)."""
        return len(self._pages)

    def prepare(self) -> None:
        """Everything but the commit point: journal durable, pages written, file durable."""
        try:
            self._journal_pages()
            if not self._journal_is_ours():
                # Removed (or replaced) under us: overwriting pages now could not be undone by
                # a crash. Appends are all this transaction wrote to the file: cut them off.
                self.check_fence()
                os.ftruncate(self._fd, self.original_size)
                os.fsync(self._fd)
                self._close_fds()
                self._done = True
                raise RepositoryError(
                    f"{journal_path(self.path)} was removed or replaced by another program while "
                    f"this commit was being written; nothing was committed and {self.path} is as "
                    "it was: find out what removes files there, then try again"
                )
            self.check_fence()
            ps = self.page_size
            for page, content in sorted(self._pages.items()):
                offset = page * ps
                length = min(ps, self.original_size - offset)
                write_all(self._fd, memoryview(content)[:length], offset)
            os.fsync(self._fd)
        except BaseException as exc:  # Ctrl-C too: undo now rather than leave a hot journal behind
            self.rollback()
            if isinstance(exc, OSError) and not isinstance(exc, DcsyncError):
                raise _translate(exc, self.path) from exc
            raise
        self._close_fds()

    def finish(self) -> None:
        """Delete the journal: the commit point of a lone file, cleanup after a group's commit.

        Raises:
            NotMyLock: the journal was gone and the lock lost: the writer that broke the lock
                rolled this transaction back, so nothing of it remains.
        """
        self._done = True
        if self._remove_journal_if_ours():
            return
        # Gone, or another journal in its place. With the lock still ours, some program removed
        # our journal after every page was written and synced: the commit is complete anyway.
        self.check_fence()

    def commit(self) -> None:
        """Make the transaction durable; the journal's deletion is the commit point."""
        if self._done:
            return
        self.prepare()
        self.finish()

    def rollback(self) -> None:
        """Abandon the transaction: restore the original state and remove the journal.

        After the lock was lost, only close: the breaker rolled this transaction back already, and
        whatever journal is there now belongs to the next writer.
        """
        if self._done:
            return
        self._close_fds()
        self._done = True
        with contextlib.suppress(NotMyLock):  # recovery writes the file: only with the lock
            self.check_fence()
            recover(self.path)

    def _close_fds(self) -> None:
        for fd in (self._journal_fd, self._fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._journal_fd = None
        self._fd = -1

    def close(self) -> None:
        # h5py closes its file object when the h5py.File closes; commit/rollback come later, so
        # closing must keep the descriptors.
        pass

    def __del__(self) -> None:
        if not self._done:
            self._close_fds()


class AtomicGroup:
    """Transactions on several files with one commit point (``push --atomic``).

    Use as a context manager around the stores' ``writing(group)`` blocks: leaving it without an
    error commits every member, with an error rolls every member back.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.marker = directory / f"atomic-{os.getpid()}-{os.urandom(6).hex()}"
        fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.marker)
        self._members: list[tuple[JournaledFile, Callable[[], None]]] = []
        self._done = False

    def add(self, journaled: JournaledFile, release: Callable[[], None]) -> None:
        """A prepared member, and how to release its lock once the group is decided."""
        self._members.append((journaled, release))

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        self.marker.unlink()  # the commit point of every member
        fsync_dir(self.marker)
        for journaled, release in self._members:
            try:
                journaled.finish()
            finally:
                release()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        for journaled, release in self._members:
            try:
                journaled.rollback()  # the marker still exists, so recovery restores the pages
            finally:
                release()
        self.marker.unlink(missing_ok=True)

    def __enter__(self) -> AtomicGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
