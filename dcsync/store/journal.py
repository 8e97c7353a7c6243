"""A rollback journal at the byte level, under h5py's file-object driver: commits cost O(new data)
and a process killed at any instant leaves the file as it was before or after the commit.

The idea is SQLite's rollback journal. While a :class:`JournaledFile` is open for a transaction,
writes past the file's original end go straight to disk (truncating back undoes them). Writes
inside the original region are held in a page cache; at :meth:`JournaledFile.commit` the original
content of every touched page is appended to ``<file>.journal`` and fsynced *before* any page of the
original region is overwritten. Then the pages are written, the file is fsynced, and the journal is
deleted: that unlink is the commit point.

Journal layout (little-endian, format 2)::

    header:  b"DCSJRNL2" | u32 page_size | u64 original_size | u64 inode | u64 xxh64(first page)
             | 16 bytes transaction id | u16 n | group marker path[n] | u16 m | file path[m]
             | u16 k | HEAD at the start[k] | u64 xxh64(all previous header bytes)
    record:  u64 offset | u32 length | u64 xxh64(new content) | u64 xxh64(offset, length,
             new digest, data) | data[length]   (repeated; data is the original content)

Recovery (:func:`recover`) writes every intact record back and truncates the file to its original
size. A torn record can only be at the tail, and only if the crash came before the journal fsync,
which precedes every overwrite, so skipping it is safe. A torn header means nothing past it was
written either, so the file is untouched apart from appended bytes HDF5 never references.

A journal is applied only to the file and the state it was made for (:func:`mismatch`): the same
inode, a size no smaller than the original, a first page (the superblock, whose end of allocation
moves with every commit that grows the file) as it was or as the transaction wrote it, and every
journaled page either original or new. A journal copied from another file, or an older journal of
this file put back, fails these checks and is refused (never applied, never deleted): rolling it
"back" would cut later commits off or paste another file's pages in. Format-1 journals carry no
such identity and are refused the same way.

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

from dcsync.errors import DcsyncError, NotMyLock, RepositoryError, StorageFull
from dcsync.rawio import FULL_ERRNOS, pread_into, write_all

PAGE_SIZE = 4096
_MAGIC = b"DCSJRNL2"
_OLD_MAGICS = (b"DCSJRNL1",)
_HEADER = struct.Struct("<8sIQQQ16s")
_LENGTH = struct.Struct("<H")
_HEADER_SUM = struct.Struct("<Q")
_RECORD = struct.Struct("<QIQQ")
_FENCED_CHUNK = 16 << 20  # appends are written (and the lock checked) at most this much at a time


def journal_path(path: Path) -> Path:
    """``<file>.journal`` beside the file itself: through a symlink, beside its target, so that
    every name of one file finds the same journal (as every name finds the same lock)."""
    real = Path(_real(path))
    return real.with_name(real.name + ".journal")


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def _translate(exc: OSError, path: Path) -> OSError:
    if exc.errno in FULL_ERRNOS:
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
        header = _HEADER.pack(
            _MAGIC, self.page_size, self.original_size, self._inode, self._anchor, os.urandom(16)
        )
        for text in (os.fsencode(self.group_marker) if self.group_marker else b"", _real(self.path), head):
            raw = os.fsencode(text)[:0xFFFF]
            header += _LENGTH.pack(len(raw)) + raw
        header += _HEADER_SUM.pack(xxhash.xxh64_intdigest(header))
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
            _fsync_dir(self.path)
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
            digest = xxhash.xxh64_intdigest(struct.pack("<QIQ", offset, length, new) + data)
            chunks.append(_RECORD.pack(offset, length, new, digest) + data)
        self.check_fence()
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


class JournalState(NamedTuple):
    page_size: int
    original_size: int
    group_marker: Path | None
    records: list[tuple[int, bytes]]
    inode: int = 0
    anchor: int = 0  # xxh64 of the first page when the transaction began
    file: str = ""  # the file's resolved path then (for messages: paths differ between NFS clients)
    head: str = ""
    new: tuple[int, ...] = ()  # per record, xxh64 of the content the transaction wrote there


def _read_journal(jpath: Path) -> JournalState | None:
    """The journal's header and intact records, or None when the header itself is torn.

    Raises:
        RepositoryError: a journal of format 1 (an older dcsync's), or an unreadable one.
    """
    try:
        with open(jpath, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RepositoryError(f"cannot read {jpath}: {exc.strerror or exc}") from exc
    if raw[: len(_MAGIC)] in _OLD_MAGICS:
        raise RepositoryError(
            f"refusing {jpath}: it was left by an older dcsync (journal format 1), which does not "
            "record the file and state it belongs to, so it was not applied. If that older dcsync "
            "crashed while writing this file, run one write command with it (it recovers the file); "
            f"otherwise move the journal away (mv {jpath} {jpath}.refused) and run `dcsync verify`"
        )
    if len(raw) < _HEADER.size or raw[: len(_MAGIC)] != _MAGIC:
        # Torn: a power loss before the journal's first fsync may leave zeros or garbage, and that
        # fsync precedes every overwrite, so nothing but unreferenced appends depends on it.
        return None
    _, page_size, original_size, inode, anchor, _txn = _HEADER.unpack_from(raw)
    pos = _HEADER.size
    texts = []
    for _ in range(3):
        if pos + _LENGTH.size > len(raw):
            return None
        (n,) = _LENGTH.unpack_from(raw, pos)
        texts.append(os.fsdecode(raw[pos + _LENGTH.size : pos + _LENGTH.size + n]))
        pos += _LENGTH.size + n
    hsize = pos + _HEADER_SUM.size
    if len(raw) < hsize:
        return None
    (digest,) = _HEADER_SUM.unpack_from(raw, pos)
    if digest != xxhash.xxh64_intdigest(raw[:pos]):
        return None
    marker, file, head = texts
    records, news = [], []
    pos = hsize
    while pos + _RECORD.size <= len(raw):
        offset, length, new, digest = _RECORD.unpack_from(raw, pos)
        data = raw[pos + _RECORD.size : pos + _RECORD.size + length]
        if len(data) != length or (
            xxhash.xxh64_intdigest(struct.pack("<QIQ", offset, length, new) + data) != digest
        ):
            break  # a torn tail: the crash came before the journal fsync, so no overwrite happened
        records.append((offset, data))
        news.append(new)
        pos += _RECORD.size + length
    return JournalState(
        page_size,
        original_size,
        Path(marker) if marker else None,
        records,
        inode,
        anchor,
        file,
        head,
        tuple(news),
    )


def mismatch(path: Path, state: JournalState) -> str | None:
    """Why the journal ``state`` cannot be ``path``'s hot journal, or None when it can be.

    A real hot journal leaves the file in a state between the one it was made against and the one
    its transaction was writing: the same inode, no shorter than the original, each journaled page
    either original or new, the first page too. Anything else is another file's journal or an old
    one put back, and applying it would destroy what the file holds now.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if st.st_ino != state.inode:
            made_for = state.file or "another file"
            return f"it was made for {made_for} (inode {state.inode}), not this file (inode {st.st_ino})"
        if st.st_size < state.original_size:
            return (
                f"the file is shorter ({st.st_size} bytes) than when the journal was made "
                f"({state.original_size} bytes)"
            )
        first = False
        for (offset, data), new in zip(state.records, state.new, strict=True):
            now = xxhash.xxh64_intdigest(os.pread(fd, len(data), offset))
            if now not in (xxhash.xxh64_intdigest(data), new):
                return f"the file's bytes at offset {offset} are neither those before nor after its commit"
            first = first or offset == 0
        if not first:
            now = xxhash.xxh64_intdigest(os.pread(fd, min(state.page_size, state.original_size), 0))
            if now != state.anchor:
                return "the file has changed since the journal was made (it is from an older commit)"
        return None
    finally:
        os.close(fd)


def _refusal(path: Path, why: str, state: JournalState) -> RepositoryError:
    jpath = journal_path(path)
    since = f" (it started from HEAD {state.head})" if state.head else ""
    return RepositoryError(
        f"refusing {jpath}: {why}{since}; it was not applied and {path} was not changed. If no "
        f"dcsync process is writing {path.name}, move the journal away (mv {jpath} {jpath}.refused) "
        f"and run `dcsync verify` on the file"
    )


def refusal(path: Path) -> RepositoryError | None:
    """The error a writer would raise for ``path``'s journal, or None (no journal, or its own)."""
    if not os.path.lexists(journal_path(path)):
        return None
    try:
        parsed = _read_journal(journal_path(path))
    except RepositoryError as exc:
        return exc
    why = None if parsed is None else mismatch(path, parsed)
    return None if why is None or parsed is None else _refusal(path, why, parsed)


def has_hot_journal(path: Path) -> bool:
    return os.path.lexists(journal_path(path))


def recover(path: Path) -> bool:
    """Roll back an interrupted transaction on ``path``; True when there was one.

    The caller holds the repository lock. Idempotent: a crash during recovery is recovered again.

    Raises:
        RepositoryError: the journal does not belong to this file or its state (see
            :func:`mismatch`); nothing was changed.
    """
    jpath = journal_path(path)
    if not os.path.lexists(jpath):
        return False
    refused = refusal(path)
    if refused is not None:
        raise refused
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
        try:
            parsed = _read_journal(journal_path(path))
        except RepositoryError:
            parsed = None
        size = os.stat(path).st_size
        self._records: list[tuple[int, bytes]] = []
        # A journal that is not this file's is never applied: the file as it is now is the answer
        # (reads are hash-checked; verify and the next writer report the journal).
        if (
            parsed is not None
            and (parsed.group_marker is None or parsed.group_marker.exists())
            and mismatch(path, parsed) is None
        ):
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
