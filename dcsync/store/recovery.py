"""A journal left behind by :mod:`dcsync.store.journal`: its layout, what it says, whether it is
this file's, rolling the file back, and reading the file as it was before the transaction.

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

Readers do not take the lock: :class:`OverlayReader` shows the pre-commit state of a file that has a
hot journal (pages from the journal, size cut to the original), and :class:`PaddedReader` lets
h5py open a truncated file so intact objects stay readable.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from pathlib import Path
from typing import NamedTuple

import xxhash

from dcsync.errors import RepositoryError
from dcsync.rawio import pread_into, write_all

PAGE_SIZE = 4096
MAGIC = b"DCSJRNL2"
OLD_MAGICS = (b"DCSJRNL1",)
HEADER = struct.Struct("<8sIQQQ16s")
LENGTH = struct.Struct("<H")
HEADER_SUM = struct.Struct("<Q")
RECORD = struct.Struct("<QIQQ")


def record_digest(offset: int, length: int, new: int, data: bytes) -> int:
    """A record's checksum over its fields and the original bytes it carries (a torn record fails it)."""
    return xxhash.xxh64_intdigest(struct.pack("<QIQ", offset, length, new) + data)


def journal_path(path: Path) -> Path:
    """``<file>.journal`` beside the file itself: through a symlink, beside its target, so that
    every name of one file finds the same journal (as every name finds the same lock)."""
    real = Path(real_path(path))
    return real.with_name(real.name + ".journal")


def real_path(path: Path | str) -> str:
    return os.path.realpath(path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Positioned(io.RawIOBase):
    """The file position that the journaled writer and the readers keep for h5py's driver."""

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


def read_journal(jpath: Path) -> JournalState | None:
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
    if raw[: len(MAGIC)] in OLD_MAGICS:
        raise RepositoryError(
            f"refusing {jpath}: it was left by an older dcsync (journal format 1), which does not "
            "record the file and state it belongs to, so it was not applied. If that older dcsync "
            "crashed while writing this file, run one write command with it (it recovers the file); "
            f"otherwise move the journal away (mv {jpath} {jpath}.refused) and run `dcsync verify`"
        )
    if len(raw) < HEADER.size or raw[: len(MAGIC)] != MAGIC:
        # Torn: a power loss before the journal's first fsync may leave zeros or garbage, and that
        # fsync precedes every overwrite, so nothing but unreferenced appends depends on it.
        return None
    _, page_size, original_size, inode, anchor, _txn = HEADER.unpack_from(raw)
    pos = HEADER.size
    texts = []
    for _ in range(3):
        if pos + LENGTH.size > len(raw):
            return None
        (n,) = LENGTH.unpack_from(raw, pos)
        texts.append(os.fsdecode(raw[pos + LENGTH.size : pos + LENGTH.size + n]))
        pos += LENGTH.size + n
    hsize = pos + HEADER_SUM.size
    if len(raw) < hsize:
        return None
    (digest,) = HEADER_SUM.unpack_from(raw, pos)
    if digest != xxhash.xxh64_intdigest(raw[:pos]):
        return None
    marker, file, head = texts
    records, news = [], []
    pos = hsize
    while pos + RECORD.size <= len(raw):
        offset, length, new, digest = RECORD.unpack_from(raw, pos)
        data = raw[pos + RECORD.size : pos + RECORD.size + length]
        if len(data) != length or record_digest(offset, length, new, data) != digest:
            break  # a torn tail: the crash came before the journal fsync, so no overwrite happened
        records.append((offset, data))
        news.append(new)
        pos += RECORD.size + length
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
        parsed = read_journal(journal_path(path))
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
    parsed = read_journal(jpath)
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
    fsync_dir(path)
    return True


class ReadOnlyFile(Positioned):
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
            parsed = read_journal(journal_path(path))
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
