"""The detector repository file: objects, refs and log in one HDF5 file, written crash-safely.

The file's layout, and creating, opening and checking it, are :mod:`dcsync.store.hdf5file`'s.
Writers hold the lock file and go through :class:`~dcsync.store.journal.JournaledFile` (except on a
file not yet linked into a workspace: :meth:`HDF5Store.writing_unpublished`); readers
take no lock, open read-only (``locking=False``), see the pre-commit state through the journal when
a commit is in flight, and retry when a commit raced them (every read is hash-checked).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import h5py
import numpy as np

from dcsync.errors import (
    CorruptObject,
    DcsyncError,
    NotARepository,
    NotFetched,
    NotMyLock,
    ObjectNotFound,
    RepositoryError,
    StorageFull,
)
from dcsync.model.hashing import ObjectId, dtype_string, hasher, is_object_id
from dcsync.model.objects import Payload
from dcsync.store import structure, view
from dcsync.store.base import ObjectKind, ObjectStore
from dcsync.store.hdf5file import (
    H5_FAILURES,
    LIBVER,
    LOG,
    META,
    OBJECTS,
    check_format,
    create_file,
    create_log,
    object_path,
    open_reader,
)
from dcsync.store.journal import AtomicGroup, JournaledFile
from dcsync.store.locking import FileLock, write_denied
from dcsync.store.recovery import journal_path, recover
from dcsync.store.refs import HEAD, LogRecord, check_ref

T = TypeVar("T")
P = ParamSpec("P")
_FORMAT_CHECKED: set[tuple[Path, int]] = set()  # (path, inode) whose format this process accepted


def _storage_read(
    method: Callable[Concatenate[HDF5Store, P], T],
) -> Callable[Concatenate[HDF5Store, P], T]:
    """The seam where h5py's errors on reading become ours: :class:`CorruptObject` naming the file
    (which :meth:`HDF5Store.consistent` retries when a writer moved the file meanwhile)."""

    def read(self: HDF5Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except DcsyncError:
            raise
        except H5_FAILURES as exc:
            raise CorruptObject(f"cannot read {self.path}: {exc}") from exc

    functools.update_wrapper(read, method)
    return read


class HDF5Store(ObjectStore):
    """One ``<dettype>-<detid>.h5`` file."""

    def __init__(self, path: Path | str, *, lock_timeout: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._w: h5py.File | None = None
        self._r: h5py.File | None = None
        self._r_fileobj: Any = None
        self._r_stamp: tuple[int, int, int, bool] | None = None
        self._r_size: int | None = None  # what HDF5 says the read handle's file holds
        # objects judged by _checked since the file was opened: an object is write-once, so its
        # layout cannot change under one handle (a verify or a walk opens each one many times)
        self._sound: set[ObjectId] = set()
        self._refs: dict[str, ObjectId] | None = None  # parsed refs of the open read handle
        self._in_read = False  # inside consistent(): the handle was checked once for this read
        self._objects: h5py.Group | None = None  # the read handle's groups, looked up once
        self._meta: h5py.Group | None = None
        # The read handle's last dataset and its kind: a read after kind_of() (verify, transfers)
        # then costs one HDF5 lookup and one attribute read instead of two of each.
        self._recent: tuple[ObjectId, h5py.Dataset, str | None] | None = None
        self.truncated = False
        self._refresh()

    @property
    def where(self) -> str:
        return str(self.path)

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | str, **kwargs: Any) -> HDF5Store:
        """Create an empty repository file atomically: it appears complete or not at all."""
        create_file(Path(path))
        return cls(path, **kwargs)

    # -- read handle ----------------------------------------------------------------------------
    def _stamp(self) -> tuple[int, int, int, bool]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise NotARepository(f"{self.path}: no such repository file") from None
        return (st.st_ino, st.st_size, st.st_mtime_ns, journal_path(self.path).exists())

    def _refresh(self, force: bool = False) -> h5py.File:
        """The read handle, reopened if the file changed since it was opened; returned."""
        stamp = self._stamp()
        if not force and self._r is not None and stamp == self._r_stamp:
            return self._r
        self.close()
        reader, self._r_fileobj, truncated = open_reader(self.path, stamp[3])
        self.truncated = self.truncated or truncated
        self._r, self._r_stamp = reader, stamp
        if (self.path, stamp[0]) not in _FORMAT_CHECKED:
            try:
                check_format(reader, self.path, truncated=self.truncated)
            except BaseException:
                self.close()  # do not leak the handle of a file we refuse
                raise
            _FORMAT_CHECKED.add((self.path, stamp[0]))
        try:
            self._meta = reader[META]
            self._objects = self._meta["objects"]
        except (KeyError, OSError, RuntimeError):  # damaged: each object read reports it
            self._objects = self._meta = None
        return reader

    def _file(self) -> h5py.File:
        if self._w is not None:
            return self._w
        return self._r if self._r is not None else self._refresh()

    def close(self) -> None:
        if self._r is not None:
            with contextlib.suppress(Exception):
                self._r.close()
        if self._r_fileobj is not None:
            with contextlib.suppress(Exception):
                self._r_fileobj.close()
        self._r = self._r_fileobj = self._r_stamp = self._refs = self._objects = self._meta = None
        self._r_size = None
        self._sound.clear()
        self._recent = None

    def consistent(self, read: Callable[[], T], *, attempts: int = 8) -> T:
        """Run a read that may race a writer: on a torn read, reopen and retry.

        Objects never change once written, so a read can only be torn if the file changed while
        it ran: a failure on an unchanged file is real and raised at once; otherwise the read is
        retried on a fresh handle. Nested calls run inside the outer one's attempt.
        """
        if self._in_read or self._w is not None:
            return read()
        delay = 0.005
        for attempt in range(attempts):
            try:
                self._refresh(force=attempt > 0)
                self._in_read = True
                return read()
            except (CorruptObject, ObjectNotFound) as exc:
                # Only what the file said can be torn by a writer; every other error (no such
                # ctype, a caller's bad argument) is an answer and passes through untouched.
                if isinstance(exc, NotFetched):
                    raise
                seen = self._r_stamp
                quiet = seen is not None and not seen[3] and self._stamp() == seen  # no writer moved it
                if attempt == attempts - 1 or quiet:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
            finally:
                self._in_read = False
        raise AssertionError("unreachable")

    # -- ObjectStore reads ------------------------------------------------------------------------
    @_storage_read
    def has(self, oid: ObjectId) -> bool:
        return is_object_id(oid) and object_path(oid) in self._file()

    @_storage_read
    def _dataset(self, oid: ObjectId) -> h5py.Dataset:
        if not is_object_id(oid):
            raise ObjectNotFound(f"{oid!r} is not an object id")
        try:
            if self._w is None and self._objects is not None:
                if self._recent is not None and self._recent[0] == oid:
                    return self._recent[1]
                ds = self._checked(oid, self._objects[f"{oid[:2]}/{oid[2:]}"])
                self._recent = (oid, ds, None)
                return ds
            return self._checked(oid, self._file()[object_path(oid)])
        except KeyError as exc:
            # h5py says KeyError both for a missing name and for an object it cannot open: a
            # link that is there but leads nowhere readable is damage, not absence.
            if self._linked(oid):
                raise CorruptObject(f"object {oid} in {self.path} is damaged: {exc}") from exc
            raise ObjectNotFound(f"object {oid} not found in {self.path}") from None

    def _checked(self, oid: ObjectId, ds: Any) -> h5py.Dataset:
        """``ds`` if it is stored as dcsync stores an object, judged before a byte of it is read:
        a peer's file may declare sizes it does not hold, or keep data in other files."""
        if oid in self._sound:
            return ds
        if not isinstance(ds, h5py.Dataset):
            raise CorruptObject(f"object {oid} in {self.path} is not a dataset")
        problem = structure.object_problem(ds, None, self._file_size(), None)
        if problem:
            raise CorruptObject(f"object {oid} in {self.path} {problem}")
        self._sound.add(oid)
        return ds

    def _file_size(self) -> int:
        """The size HDF5 sees of the open file (looked up once per read handle)."""
        if self._w is not None:
            return int(self._w.id.get_filesize())
        if self._r_size is None:
            self._r_size = int(self._file().id.get_filesize())
        return self._r_size

    def _linked(self, oid: ObjectId) -> bool:
        """Whether the file names ``oid`` (without opening it)."""
        try:
            return self._file().get(object_path(oid), getlink=True) is not None
        except H5_FAILURES:
            return False

    @_storage_read
    def _kind_attr(self, oid: ObjectId) -> str:
        ds = self._dataset(oid)
        recent = self._recent
        if recent is not None and recent[0] == oid and recent[1] is ds:
            if recent[2] is None:
                self._recent = recent = (oid, ds, str(ds.attrs["k"]))
            return str(recent[2])
        return str(ds.attrs["k"])

    def kind_of(self, oid: ObjectId) -> ObjectKind:
        kind = self._kind_attr(oid)
        if kind not in ("array", "text", "tree", "commit"):
            raise CorruptObject(f"object {oid} in {self.path} has unknown kind {kind!r}")
        return kind  # type: ignore[return-value]

    @_storage_read
    def _load_payload(self, oid: ObjectId) -> Payload:
        ds = self._dataset(oid)
        dtype = ds.dtype
        if dtype.kind == "S":
            raw = ds[()]
            try:
                return bytes(raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptObject(f"text object {oid} in {self.path} is not UTF-8") from exc
        arr = np.empty(ds.shape, dtype=dtype)
        if arr.size:
            ds.read_direct(arr)
        return arr

    @_storage_read
    def _load_body(self, oid: ObjectId) -> tuple[ObjectKind, bytes]:
        ds = self._dataset(oid)
        kind = self._kind_attr(oid)
        if kind not in ("tree", "commit"):
            raise CorruptObject(f"object {oid} in {self.path} is a {kind}, not a tree or commit")
        if ds.ndim != 1 or ds.shape[0] > structure.MAX_BODY:  # never allocate what cannot decode
            raise CorruptObject(f"{kind} {oid} in {self.path} is over {structure.MAX_BODY} bytes")
        return kind, ds[()].tobytes()  # type: ignore[return-value]

    def object_ids(self) -> Iterator[ObjectId]:
        f = self._file()
        for fan, group in f[OBJECTS].items():
            for rest in group:
                yield ObjectId(fan + rest)

    @_storage_read
    def refs(self) -> dict[str, ObjectId]:
        if self._w is None:
            if not self._in_read:
                self._refresh()
            if self._refs is not None:
                return dict(self._refs)
        meta = self._meta if self._w is None and self._meta is not None else self._file()[META]
        raw = meta.attrs["refs"]
        try:
            refs = {str(k): ObjectId(v) for k, v in json.loads(raw).items()}
        except (ValueError, AttributeError) as exc:
            raise CorruptObject(f"the refs of {self.path} are unreadable") from exc
        if self._w is None:
            self._refs = refs
        return dict(refs)

    @_storage_read
    def log(self, last: int | None = None) -> list[LogRecord]:
        ds = self._file()[LOG]
        n = ds.shape[0]
        start = 0 if last is None else max(0, n - last)
        rows = ds[start:n] if n > start else []
        return [LogRecord.from_json(r.decode() if isinstance(r, bytes) else r) for r in rows]

    def structure_problems(self) -> list[str]:
        """What this file holds besides what dcsync writes (:mod:`dcsync.store.structure`)."""
        return structure.file_problems(self._file())

    def view_problems(self, head: ObjectId | None) -> list[str]:
        """Where the view's attributes differ from HEAD's (after :meth:`structure_problems`)."""
        return structure.view_problems(self._file(), self, head)

    @_storage_read
    def view_commit(self) -> str:
        return str(self._file()[META].attrs.get("view", ""))

    # -- writes ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, group: AtomicGroup | None = None) -> Iterator[None]:
        """One atomic transaction on this file; with ``group``, it commits when the group does
        (and the lock is held until then)."""
        if self._w is not None:
            raise RepositoryError(f"{self.path}: a transaction is already open in this process")
        head = ""
        with contextlib.suppress(DcsyncError):  # for the journal's record only: never a reason to stop
            head = self.refs().get(HEAD, "")
        lock = FileLock(self.path, command="commit")
        handed_over = False
        try:
            lock.acquire(timeout=self.lock_timeout)  # inside: a Ctrl-C just after it still releases
            journaled, writer = self._open_writer(lock, group, head)
            try:
                yield
                writer.close()
            except BaseException as exc:
                try:
                    with contextlib.suppress(Exception):
                        writer.close()
                finally:  # even if closing raises again (a Ctrl-C that h5py kept for the close)
                    journaled.rollback()
                if journaled.failure is not None and not isinstance(exc, StorageFull):
                    raise journaled.failure from exc
                raise
            finally:
                self._w = None
            try:  # a writer judged stale (suspended too long) must not commit over the new holder
                journaled.check_fence()
            except BaseException:
                journaled.rollback()  # only closes once the lock is lost: the breaker rolled us back
                raise
            if group is None:
                journaled.commit()
            else:
                journaled.prepare()
                group.add(journaled, lock.release)
                handed_over = True
        finally:
            self.close()  # the read handle predates this transaction: the next read reopens
            if not handed_over and lock.is_held:
                on_its_way = sys.exc_info()[1]
                try:
                    lock.release()
                except NotMyLock:
                    if on_its_way is None:
                        raise  # else that error says what went wrong (a lost lock, better said)

    def _open_writer(
        self, lock: FileLock, group: AtomicGroup | None, head: str
    ) -> tuple[JournaledFile, h5py.File]:
        """Under ``lock``: recover an interrupted transaction, then open the file for writing
        through a new journal (also ``self._w``); on any failure the journal is rolled back."""
        try:
            recover(self.path)
            journaled = JournaledFile(
                self.path, group_marker=group.marker if group else None, fence=lock.verify, head=head
            )
        except PermissionError as exc:  # the directory let us lock, the file is not ours
            raise write_denied(self.path, f"cannot open it for writing ({exc.strerror})") from exc
        try:
            self._w = writer = h5py.File(journaled, "r+", libver=LIBVER)
            check_format(self._w, self.path)  # never write into a file of a newer format
        except BaseException as exc:  # Ctrl-C too: the journal must not outlive the transaction
            try:
                if self._w is not None:
                    with contextlib.suppress(Exception):
                        self._w.close()
                    self._w = None
            finally:
                journaled.rollback()
            if journaled.lost is not None and isinstance(exc, Exception):
                # Stopped past the stale timeout while opening: the file changed under HDF5.
                raise journaled.lost from exc
            if isinstance(exc, RepositoryError) or not isinstance(exc, Exception):
                raise
            raise NotARepository(f"cannot open {self.path} for writing: {exc}") from exc
        return journaled, writer

    @contextlib.contextmanager
    def writing_unpublished(self) -> Iterator[None]:
        """A transaction on a file no other process knows of yet (a copy being adopted before it
        is linked into a workspace): no lock and no journal, one fsync at the end. A crash leaves
        a copy that is thrown away, so nothing needs undoing."""
        if self._w is not None:
            raise RepositoryError(f"{self.path}: a transaction is already open in this process")
        self.close()
        # By name: no other handle on this file exists in this process (the reader just closed).
        self._w = h5py.File(self.path, "r+", libver=LIBVER, locking=False)
        try:
            check_format(self._w, self.path)
            yield
        finally:
            self._w.close()
            self._w = None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _writer(self) -> h5py.File:
        if self._w is None:
            raise RepositoryError("writes to a repository need a transaction (store.writing())")
        return self._w

    def _store_payload(self, oid: ObjectId, value: Payload) -> None:
        group = self._writer().require_group(f"{OBJECTS}/{oid[:2]}")
        if isinstance(value, str):
            raw = value.encode("utf-8")
            ds = group.create_dataset(oid[2:], data=np.array(raw, dtype=f"S{max(len(raw), 1)}"))
            ds.attrs["k"] = "text"
        else:
            ds = group.create_dataset(oid[2:], data=value)
            ds.attrs["k"] = "array"

    def put_array_rows(
        self, oid: ObjectId, dtype: np.dtype, shape: tuple[int, ...], rows: Iterable[np.ndarray]
    ) -> None:
        """Write a transferred array piece by piece straight into its dataset (bounded memory)."""
        if self.has(oid):
            return
        if not shape:
            super().put_array_rows(oid, dtype, shape, rows)
            return
        group = self._writer().require_group(f"{OBJECTS}/{oid[:2]}")
        ds = group.create_dataset(oid[2:], shape=shape, dtype=dtype)
        digest = hasher("array", dtype_string(np.dtype(dtype)), shape)
        row = 0
        for piece in rows:
            piece = np.ascontiguousarray(piece, dtype=dtype)
            if piece.shape[1:] != shape[1:] or row + piece.shape[0] > shape[0]:
                raise CorruptObject(f"object {oid}: a piece of shape {piece.shape} does not fit {shape}")
            if piece.size:
                ds[row : row + piece.shape[0]] = piece
            digest.update(piece.reshape(-1).view(np.uint8).data)
            row += piece.shape[0]
        if row != shape[0] or digest.hexdigest() != oid:
            raise CorruptObject(f"object {oid} arrived incomplete or corrupt; nothing was committed")
        ds.attrs["k"] = "array"

    @_storage_read
    def payload_info(self, oid: ObjectId) -> tuple[np.dtype | None, tuple[int, ...]]:
        ds = self._dataset(oid)
        return (None, ()) if ds.dtype.kind == "S" else (ds.dtype, tuple(ds.shape))

    def iter_payload(self, oid: ObjectId, chunk_bytes: int) -> Iterator[np.ndarray | str]:
        """Read a payload slice by slice along its first axis; the hash is checked at the end."""
        ds = self._dataset(oid)
        if ds.dtype.kind == "S" or ds.ndim == 0 or ds.shape[0] == 0:
            yield self.read_payload(oid)
            return
        row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:])))
        step = max(1, chunk_bytes // row_bytes)
        digest = hasher("array", dtype_string(ds.dtype), ds.shape)
        for start in range(0, ds.shape[0], step):
            piece = ds[start : start + step]
            digest.update(np.ascontiguousarray(piece).reshape(-1).view(np.uint8).data)
            yield piece
        if digest.hexdigest() != oid:
            raise CorruptObject(f"object {oid} in {self.path} is corrupt: its content does not match its id")

    def _store_body(self, oid: ObjectId, kind: ObjectKind, body: bytes) -> None:
        group = self._writer().require_group(f"{OBJECTS}/{oid[:2]}")
        ds = group.create_dataset(oid[2:], data=np.frombuffer(body, dtype=np.uint8))
        ds.attrs["k"] = kind

    def link_view_payloads(self, oids: set[ObjectId]) -> None:
        """Link payloads received after HEAD's view was written into it (see
        :func:`dcsync.store.view.link_payloads`); inside a transaction."""
        view.link_payloads(self._writer(), self, oids)

    def rebuild_view(self, head: ObjectId) -> None:
        """Write the view of ``head`` afresh, dropping the file's own (a copy from a peer: its view
        is the peer's word, not what HEAD says); inside a transaction."""
        f = self._writer()
        view.update(f, self, None, None)  # to no commit: every group and attribute outside /.dcsync goes
        view.update(f, self, None, head)

    def replace_refs_and_log(self, refs: dict[str, ObjectId], records: list[LogRecord]) -> None:
        """Replace every ref and the whole log at once, keeping objects and view (a file copied
        from a peer carries the peer's refs and log, not ours); inside a transaction. The view
        must already show ``refs[HEAD]``: this changes no view."""
        for name in refs:
            check_ref(name)
        meta = self._writer()[META]
        if str(meta.attrs.get("view", "")) != refs.get(HEAD, ""):
            raise RepositoryError(f"{self.path}: the view does not show the new HEAD")
        meta.attrs["refs"] = json.dumps(refs, sort_keys=True)
        del meta["log"]
        create_log(meta, [record.to_json() for record in records])

    def _store_ref(self, name: str, new: ObjectId | None, record: LogRecord) -> None:
        f = self._writer()
        refs = self.refs()
        old = refs.get(name)
        if new is None:
            refs.pop(name, None)
        else:
            refs[name] = new
        f[META].attrs["refs"] = json.dumps(refs, sort_keys=True)
        log = f[LOG]
        n = log.shape[0]
        log.resize((n + 1,))
        log[n] = record.to_json()
        if name == HEAD:
            view.update(f, self, old, new)
