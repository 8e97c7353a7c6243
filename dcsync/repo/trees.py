"""Reading one commit's trees out of a store: its root, a ctype's tree and a range's, each read
once, in one consistent view of the file; and :class:`Located`, a version found by name.

Both the read API (:class:`dcsync.repo.repository.Repository`) and the working copy a transaction
edits (:class:`dcsync.repo.work.Work`) read through these, so a missing ctype is reported alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dcsync.errors import CtypeNotFound, RepositoryError
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree, VersionEntry
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store

T = TypeVar("T")


@dataclass(frozen=True)
class Located:
    """A version found by name: its range and entry, without the payload."""

    ctype: str
    range: RangeKey
    tree: RangeTree
    version: VersionKey
    entry: VersionEntry


def consistent(store: ObjectStore, read: Callable[[], T]) -> T:
    """``read()`` as one view of the store: a read of a file torn by a writer's commit is retried."""
    if isinstance(store, HDF5Store):
        return store.consistent(read)
    return read()


def read_commit(store: ObjectStore, commit_id: ObjectId | None) -> Commit:
    """A commit, or (None) HEAD's."""
    cid = commit_id or store.head()
    if cid is None:
        raise RepositoryError(f"{store.where} has no commits")
    return store.read_commit(cid)


def read_root(store: ObjectStore, commit_id: ObjectId | None) -> RootTree:
    """A commit's (None: HEAD's) root tree."""
    return store.read_as(read_commit(store, commit_id).tree, RootTree)


def read_ctype(store: ObjectStore, root: RootTree, ctype: str) -> CtypeTree:
    """A ctype's tree under ``root``; a missing ctype names the ones there are."""
    tid = root.ctypes.get(ctype)
    if tid is None:
        known = ", ".join(sorted(root.ctypes)) or "none"
        raise CtypeNotFound(f"{root.detname} has no ctype {ctype!r} (it has: {known})")
    return store.read_as(tid, CtypeTree)


def read_range(store: ObjectStore, ref: RangeRef) -> RangeTree:
    return store.read_as(ref.tree, RangeTree)
