"""Where a server finds the stores of the detectors it serves: the seam between the server and the
store layer.

The server asks a :class:`DetectorStores` which detectors there are, for a store of each (any
:class:`~dcsync.store.base.ObjectStore`), for an empty one when a push brings a new detector, and
for a batch of transactions that commit together (``push --atomic``). :class:`WorkspaceFiles`, the
default, is a workspace's HDF5 files; :class:`MemoryStores` keeps the stores in memory (embedding,
and the sync contract suite, :mod:`dcsync.testing.sync`). Whole-file transfers are about files
by nature: :meth:`DetectorStores.file_of` says where a detector's file is, None where it has none,
and such a detector goes object by object.

The client's commands reach a workspace's files through :class:`WorkspaceFiles` too: the store a
fetch updates (the checked-out file, or a copy waiting in ``.dcsync/fetched/`` for a pull), and
:meth:`WorkspaceFiles.repository` for a detector's repository with the workspace's commit guard.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from dcsync.errors import AlreadyExists, DcsyncError, DetectorNotFound, RepositoryError
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.journal import AtomicGroup
from dcsync.store.locking import FileLock
from dcsync.store.memory import MemoryStore
from dcsync.workspace.workspace import CONFIG_DIR, Workspace, open_repository


class Batch(Protocol):
    """Transactions that land together: each :meth:`writing` is one store's part of the batch."""

    def writing(self, store: ObjectStore) -> contextlib.AbstractContextManager[None]: ...


class _OneByOne:
    """No batch: each store's transaction commits on its own."""

    def writing(self, store: ObjectStore) -> contextlib.AbstractContextManager[None]:
        return store.writing()


class DetectorStores(ABC):
    """The stores of the detectors one server serves."""

    @property
    @abstractmethod
    def where(self) -> str:
        """How messages name the place ("no detector X in <where>")."""

    @abstractmethod
    def names(self) -> list[str]:
        """The detectors there are, sorted."""

    @abstractmethod
    def exists(self, det: str) -> bool: ...

    @abstractmethod
    def open(self, det: str) -> ObjectStore:
        """A store of ``det`` (:class:`DetectorNotFound` if there is none); the caller closes it."""

    @abstractmethod
    def create(self, det: str) -> bool:
        """Make an empty store for ``det``; False if one appeared meanwhile (a concurrent push)."""

    @abstractmethod
    def discard_if_empty(self, det: str) -> None:
        """Remove ``det``'s store if it never got a HEAD (made for a push that was refused)."""

    @contextlib.contextmanager
    def batch(self, *, atomic: bool) -> Iterator[Batch]:
        """Transactions that all commit when the block ends without an error, or none does
        (``atomic``); without ``atomic``, each commits on its own."""
        if not atomic:
            yield _OneByOne()
            return
        with self._atomic() as batch:
            yield batch

    @abstractmethod
    def _atomic(self) -> contextlib.AbstractContextManager[Batch]: ...

    def file_of(self, det: str) -> Path | None:
        """The repository file of ``det``, for whole-file transfers; None: it has none."""
        return None

    def missing(self, det: str) -> DetectorNotFound:
        return DetectorNotFound(f"no detector {det} in {self.where}")


class _Group:
    """HDF5 transactions in one :class:`AtomicGroup`: one commit point across the files."""

    def __init__(self, group: AtomicGroup) -> None:
        self.group = group

    def writing(self, store: ObjectStore) -> contextlib.AbstractContextManager[None]:
        if not isinstance(store, HDF5Store):
            raise RepositoryError(f"{store.where} cannot join a transaction across files")
        return store.writing(self.group)


class WorkspaceFiles(DetectorStores):
    """A workspace's repository files, ``<dettype>/<detname>.h5``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    @property
    def where(self) -> str:
        return str(self.ws.root)

    def names(self) -> list[str]:
        return self.ws.detectors()

    def exists(self, det: str) -> bool:
        return self.ws.detector_path(det).is_file()

    def open(self, det: str) -> ObjectStore:
        path = self.ws.detector_path(det)
        if not path.is_file():
            raise self.missing(det)
        return HDF5Store(path)

    def create(self, det: str) -> bool:
        path = self.ws.detector_path(det)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            HDF5Store.create(path).close()
        except AlreadyExists:
            return False
        return True

    def discard_if_empty(self, det: str) -> None:
        path = self.ws.detector_path(det)
        with contextlib.suppress(DcsyncError, OSError), FileLock(path).held(timeout=5):
            fresh = HDF5Store(path)
            try:
                empty = fresh.head() is None
            finally:
                fresh.close()
            if empty:
                path.unlink()

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[Batch]:
        with AtomicGroup(self.ws.root / CONFIG_DIR / "atomic") as group:
            yield _Group(group)

    def file_of(self, det: str) -> Path | None:
        path = self.ws.detector_path(det)
        return path if path.is_file() else None

    # -- the client's side -------------------------------------------------------------------------
    def repository(self, det: str) -> Repository:
        """``det``'s repository, its commits judged by the workspace's ACL and hooks."""
        return open_repository(self.ws.detector_path(det))

    def fetch_target(self, det: str) -> Path | None:
        """The file a fetch of ``det`` updates: the checked-out one, else the copy waiting in
        ``.dcsync/fetched/`` for a pull (a copy beside a checked-out file is stale and goes), else None."""
        path, waiting = self.ws.detector_path(det), self.ws.fetched_path(det)
        if path.is_file():
            waiting.unlink(missing_ok=True)
            return path
        return waiting if waiting.is_file() else None

    def open_fetch_target(self, det: str) -> HDF5Store | None:
        """A store of :meth:`fetch_target`, None where there is none; the caller closes it. An HDF5
        store: a fetch into a partial clone links the payloads it brings into the file's view."""
        path = self.fetch_target(det)
        return HDF5Store(path) if path is not None else None

    def new_fetched_copy(self, det: str) -> HDF5Store:
        """An empty repository in ``.dcsync/fetched/`` for a detector new here, which a fetch
        fills and links into the workspace once it has a HEAD (``Workspace.fetched_path``)."""
        path = self.ws.fetched_path(det)
        path.parent.mkdir(parents=True, exist_ok=True)
        HDF5Store.create(path).close()
        return HDF5Store(path)


class _HeldOpen:
    """Memory transactions held open until the batch ends, which commits or rolls back them all."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack

    @contextlib.contextmanager
    def writing(self, store: ObjectStore) -> Iterator[None]:
        self.stack.enter_context(store.writing())
        yield


class MemoryStores(DetectorStores):
    """Detectors kept in :class:`MemoryStore` objects, by name (``stores``)."""

    def __init__(self, stores: dict[str, MemoryStore] | None = None) -> None:
        self.stores = stores if stores is not None else {}

    @property
    def where(self) -> str:
        return "memory"

    def names(self) -> list[str]:
        return sorted(self.stores)

    def exists(self, det: str) -> bool:
        return det in self.stores

    def open(self, det: str) -> ObjectStore:
        try:
            return self.stores[det]
        except KeyError:
            raise self.missing(det) from None

    def create(self, det: str) -> bool:
        if det in self.stores:
            return False
        self.stores[det] = MemoryStore()
        return True

    def discard_if_empty(self, det: str) -> None:
        store = self.stores.get(det)
        if store is not None and store.head() is None:
            del self.stores[det]

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[Batch]:
        with contextlib.ExitStack() as stack:
            yield _HeldOpen(stack)
