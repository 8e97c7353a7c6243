"""A rollback journal at the byte level, under h5py's file-object driver: commits cost O(new data)
and a process killed at any instant leaves the file as it was before or after the commit.

The idea is SQLite's rollback journal. While a :class:`JournaledFile` is open for a transaction,
writes past the file's original end go straight to disk (truncating back undoes them). Writes
inside the original region are held in a page cache; at :meth:`JournaledFile.commit` the original
content of every touched page is appended to ``<file>.journal`` and fsynced *before* any page of the
original region is overwritten. Then the pages are written, the file is fsynced, and the journal is
deleted: that unlink is the commit point.

Journal layout (little-endian)::

    header:  b"DCSJRNL1" | u32 page_size | u64 original_size | u16 n | group marker path[n]
             | u64 xxh64(all previous header bytes)
    record:  u64 offset | u32 length | u64 xxh64(offset, length, data) | data[length]   (repeated)

Recovery (:func:`recover`) writes every intact record back and truncates the file to its original
size. A torn record can only be at the tail, and only if the crash came before the journal fsync,
which precedes every overwrite, so skipping it is safe. A torn header means nothing past it was
written either, so the file is untouched apart from appended bytes HDF5 never references.

Several files commit atomically together through an :class:`AtomicGroup` (``push --atomic``): a
group marker file is created before any journal that names it; every file is prepared (journal
fsynced, pages written, file fsynced) with its journal kept; deleting the marker is the one commit
point for all; then the journals go. Recovery of a journal whose marker still exists rolls back; of
one whose marker is gone, just deletes the journal (the group had committed).

Readers do not take the lock: :class:`OverlayReader` shows the pre-commit state of a file that has a
hot journal (pages from the journal, size cut to the original), and :class:`PaddedReader` lets
h5py open a truncated file so intact objects stay readable.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import xxhash

from dcsync.errors import StorageFull
from dcsync.rawio import pread_into, write_all

PAGE_SIZE = 4096
_MAGIC = b"DCSJRNL1"
_HEADER = struct.Struct("<8sIQH")
_HEADER_SUM = struct.Struct("<Q")
_RECORD = struct.Struct("<QIQ")
_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _translate(exc: OSError, path: Path) -> OSError:
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"no space left writing {path}: nothing was committed ({exc.strerror})")
    return exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Positioned(io.RawIOBase):
    """The file position both kinds of file object below keep for h5py's driver."""

    _pos = 0
    _size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos


class JournaledFile(_Positioned):
    """A file object for ``h5py.File(obj, "r+")`` that makes one transaction atomic.

    Use: open, hand to h5py, close the h5py file, then :meth:`commit` (or :meth:`rollback`).
    The caller holds the repository lock for the whole time.
    """

    def __init__(self, path: Path, *, page_size: int = PAGE_SIZE, group_marker: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self.group_marker = group_marker
        self.page_size = page_size
        # __del__ runs even when __init__ fails (a refused open, Ctrl-C): nothing to close until here.
        self._done = True
        self._journal_fd: int | None = None
        self._fd = os.open(path, os.O_RDWR)
        self._done = False
        self.original_size = os.fstat(self._fd).st_size
        self._size = self.original_size
        self._pos = 0
        self._pages: dict[int, bytearray] = {}  # page index -> current content (original region only)
        self._originals: dict[int, bytes] = {}  # page index -> content before the transaction
        self.failure: OSError | None = None  # h5py swallows driver errors; the store re-raises this
        self._open_journal()

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
        if split < n:
            try:
                write_all(self._fd, view[split:], start + split)
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
    def _open_journal(self) -> None:
        marker = os.fsencode(self.group_marker) if self.group_marker else b""
        header = _HEADER.pack(_MAGIC, self.page_size, self.original_size, len(marker)) + marker
        header += _HEADER_SUM.pack(xxhash.xxh64_intdigest(header))
        jpath = journal_path(self.path)
        try:
            fd = os.open(jpath, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise RuntimeError(f"{jpath} exists: recover() must run before a new transaction") from None
        except BaseException:  # Ctrl-C as the call returned: the journal (ours, under the lock) is
            jpath.unlink(missing_ok=True)  # unnamed yet, so nothing would roll it back
            raise
        try:
            write_all(fd, header)
        except BaseException as exc:  # a failed write, or Ctrl-C: no transaction owns this journal yet
            os.close(fd)
            jpath.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _translate(exc, self.path) from exc
            raise
        self._journal_fd = fd

    def _journal_pages(self) -> None:
        assert self._journal_fd is not None
        chunks = []
        for page, original in sorted(self._originals.items()):
            offset = page * self.page_size
            length = min(len(original), max(self.original_size - offset, 0))
            data = original[:length]
            digest = xxhash.xxh64_intdigest(struct.pack("<QI", offset, length) + data)
            chunks.append(_RECORD.pack(offset, length, digest) + data)
        write_all(self._journal_fd, b"".join(chunks))
        os.fsync(self._journal_fd)
        _fsync_dir(self.path)  # the journal's own name must survive a power loss too (as SQLite does)

    def dirty_pages(self) -> int:
        """How many pages of the original region this transaction overwrites (for benchmarks)."""
        return len(self._pages)

    def prepare(self) -> None:
        """Everything but the commit point: journal durable, pages written, file durable."""
        try:
            self._journal_pages()
            ps = self.page_size
            for page, content in sorted(self._pages.items()):
                offset = page * ps
                length = min(ps, self.original_size - offset)
                write_all(self._fd, memoryview(content)[:length], offset)
            os.fsync(self._fd)
        except BaseException as exc:  # Ctrl-C too: undo now rather than leave a hot journal behind
            self.rollback()
            if isinstance(exc, OSError):
                raise _translate(exc, self.path) from exc
            raise
        self._close_fds()

    def finish(self) -> None:
        """Delete the journal: the commit point of a lone file, cleanup after a group's commit."""
        journal_path(self.path).unlink()
        _fsync_dir(self.path)
        self._done = True

    def commit(self) -> None:
        """Make the transaction durable; the journal's deletion is the commit point."""
        if self._done:
            return
        self.prepare()
        self.finish()

    def rollback(self) -> None:
        """Abandon the transaction: restore the original state and remove the journal."""
        if self._done:
            return
        self._close_fds()
        recover(self.path)
        self._done = True

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


class JournalState(NamedTuple):
    page_size: int
    original_size: int
    group_marker: Path | None
    records: list[tuple[int, bytes]]


def _read_journal(jpath: Path) -> JournalState | None:
    """The journal's header and intact records, or None when the header itself is torn."""
    try:
        raw = jpath.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, page_size, original_size, marker_len = _HEADER.unpack_from(raw)
    hsize = _HEADER.size + marker_len + _HEADER_SUM.size
    if magic != _MAGIC or len(raw) < hsize:
        return None
    (digest,) = _HEADER_SUM.unpack_from(raw, hsize - _HEADER_SUM.size)
    if digest != xxhash.xxh64_intdigest(raw[: hsize - _HEADER_SUM.size]):
        return None
    marker = os.fsdecode(raw[_HEADER.size : _HEADER.size + marker_len]) if marker_len else None
    records = []
    pos = hsize
    while pos + _RECORD.size <= len(raw):
        offset, length, digest = _RECORD.unpack_from(raw, pos)
        data = raw[pos + _RECORD.size : pos + _RECORD.size + length]
        if len(data) != length or xxhash.xxh64_intdigest(struct.pack("<QI", offset, length) + data) != digest:
            break  # a torn tail: the crash came before the journal fsync, so no overwrite happened
        records.append((offset, data))
        pos += _RECORD.size + length
    return JournalState(page_size, original_size, Path(marker) if marker else None, records)


def has_hot_journal(path: Path) -> bool:
    return journal_path(path).exists()


def recover(path: Path) -> bool:
    """Roll back an interrupted transaction on ``path``; True when there was one.

    The caller holds the repository lock. Idempotent: a crash during recovery is recovered again.
    """
    jpath = journal_path(path)
    if not jpath.exists():
        return False
    parsed = _read_journal(jpath)
    if parsed is not None and parsed.group_marker is not None and not parsed.group_marker.exists():
        parsed = None  # its group committed: the file is already in its new state
    if parsed is not None:
        original_size, records = parsed.original_size, parsed.records
        fd = os.open(path, os.O_RDWR)
        try:
            for offset, data in records:
                write_all(fd, data, offset)
            os.ftruncate(fd, original_size)
            os.fsync(fd)
        finally:
            os.close(fd)
    jpath.unlink()
    _fsync_dir(path)
    return True


class ReadOnlyFile(_Positioned):
    """A read-only file object of a size we decide, for ``h5py.File(obj, "r")``.

    Readers open through file objects rather than by name because HDF5 shares one cached copy of
    a file's metadata among all by-name opens in a process: a handle kept open would make every
    later open in the process (ours or the user's) see stale metadata after a commit.
    """

    def __init__(self, path: Path, size: int) -> None:
        super().__init__()
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._size = size
        self._pos = 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        got = pread_into(self._fd, view[:n], self._pos)
        if got < n:
            self._short_read(view[got:n])
        self._patch(view[:n], self._pos)
        self._pos += n
        return n

    def _short_read(self, missing: memoryview) -> None:
        """Bytes the file does not have (an overlay's pages may reach past the current end)."""
        missing[:] = bytes(len(missing))

    def _patch(self, view: memoryview, start: int) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class OverlayReader(ReadOnlyFile):
    """The file as it was before the transaction that left ``<file>.journal`` behind."""

    def __init__(self, path: Path) -> None:
        parsed = _read_journal(journal_path(path))
        size = os.stat(path).st_size
        self._records: list[tuple[int, bytes]] = []
        if parsed is not None and (parsed.group_marker is None or parsed.group_marker.exists()):
            size, self._records = parsed.original_size, parsed.records
        super().__init__(path, size)

    def _patch(self, view: memoryview, start: int) -> None:
        end = start + len(view)
        for offset, data in self._records:
            lo, hi = max(start, offset), min(end, offset + len(data))
            if lo < hi:
                view[lo - start : hi - start] = data[lo - offset : hi - offset]


class PaddedReader(ReadOnlyFile):
    """A truncated file that claims its full ``size``, so HDF5 opens it and intact parts stay
    readable; reading a lost part is an I/O error (zeros there could make HDF5 loop)."""

    def _short_read(self, missing: memoryview) -> None:
        raise OSError(errno.EIO, f"{self.path} is truncated: this part of it is lost")


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
        _fsync_dir(self.marker)
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
        _fsync_dir(self.marker)
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
