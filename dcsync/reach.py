"""Reachability: which objects a commit needs, what a peer lacks, and ancestry.

Both sides of a transfer use this: the sender lists the objects reachable from a wanted commit
minus what the receiver's heads already imply (``objects_for``), and the receiver, before moving a
ref, walks from the new commit through its own store and its quarantine to find what to import
(``walk_missing``). Subtrees already present are skipped whole, so both walks cost O(change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dcsync.errors import CorruptObject
from dcsync.hashing import ObjectId, dtype_string
from dcsync.objects import Commit, CtypeTree, RangeTree, RootTree, Tree
from dcsync.store.base import ObjectKind, ObjectStore

if TYPE_CHECKING:
    from dcsync.quarantine import Quarantine


class _Reader(Protocol):
    def read_object(self, oid: ObjectId) -> Tree | Commit: ...


def _parents(store: _Reader, cid: ObjectId) -> tuple[ObjectId, ...]:
    commit = store.read_object(cid)
    if not isinstance(commit, Commit):
        raise CorruptObject(f"{cid} is not a commit")
    return commit.parents


def ancestors(store: _Reader, heads: Iterable[ObjectId]) -> set[ObjectId]:
    """Every commit reachable from ``heads`` (themselves included)."""
    seen: set[ObjectId] = set()
    queue = deque(heads)
    while queue:
        cid = queue.popleft()
        if cid not in seen:
            seen.add(cid)
            queue.extend(_parents(store, cid))
    return seen


def is_ancestor(store: _Reader, ancestor: ObjectId, descendant: ObjectId) -> bool:
    """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor).

    Commit times come from many hosts' clocks, so they are never used to cut the walk short.
    """
    seen: set[ObjectId] = set()
    todo = [descendant]
    while todo:
        cid = todo.pop()
        if cid == ancestor:
            return True
        if cid not in seen:
            seen.add(cid)
            todo.extend(_parents(store, cid))
    return False


def _wanted_payload(
    ctype: str, oid: ObjectId, flt: Mapping[str, Any], reachable: set[ObjectId] | None
) -> bool:
    if flt.get("payloads") is False:
        return False
    ctypes = flt.get("ctypes")
    if ctypes and ctype not in ctypes:
        return False
    return reachable is None or oid in reachable


def reachable_payloads(store: _Reader, root_id: ObjectId, flt: Mapping[str, Any]) -> set[ObjectId] | None:
    """With a ``since`` filter: the payloads some lookup at or after it returns in this tree, else
    None (no limit). That is, in every range that wins at such a time, its pinned default or else
    its newest version; the other versions no lookup returns (a pinned default hides them all), and
    a range superseded from ``since`` on (``[Oct 1, end)`` under ``[Nov 1, end)``) none of them.
    The history of ``since`` clones is trees and commits: a read ``--as-of`` an older commit or of
    a ``--version`` outside this set finds its payload not fetched."""
    since = flt.get("since")
    if since is None:
        return None
    root = store.read_object(root_id)
    if not isinstance(root, RootTree):
        raise CorruptObject(f"{root_id} is not a root tree")
    out: set[ObjectId] = set()
    for ctid in root.ctypes.values():
        ct = store.read_object(ctid)
        if not isinstance(ct, CtypeTree):
            raise CorruptObject(f"{ctid} is not a ctype tree")
        for key in ct.winners_from(int(since)):
            rng = store.read_object(ct.ranges[key].tree)
            if not isinstance(rng, RangeTree):
                raise CorruptObject(f"{ct.ranges[key].tree} is not a range tree")
            version = rng.effective()
            if version is not None:
                out.add(rng.versions[version].obj)
    return out


def tree_closure(
    store: _Reader,
    root_id: ObjectId,
    flt: Mapping[str, Any],
    skip: set[ObjectId],
    reachable: set[ObjectId] | None = None,
) -> Iterator[tuple[ObjectId, ObjectKind | None]]:
    """The root tree and everything below it, skipping ids in ``skip`` (and their subtrees).

    Payloads are yielded with kind None (the caller looks up kind and size); with a filter, only
    those it wants (``reachable``: :func:`reachable_payloads` of the commit being transferred).
    """
    if root_id in skip:
        return
    skip.add(root_id)
    yield root_id, "tree"
    root = store.read_object(root_id)
    assert isinstance(root, RootTree)
    for ctype, ctid in root.ctypes.items():
        if ctid in skip:
            continue
        skip.add(ctid)
        yield ctid, "tree"
        ct = store.read_object(ctid)
        assert isinstance(ct, CtypeTree)
        for ref in ct.ranges.values():
            if ref.tree in skip:
                continue
            skip.add(ref.tree)
            yield ref.tree, "tree"
            rng = store.read_object(ref.tree)
            assert isinstance(rng, RangeTree)
            for entry in rng.versions.values():
                if entry.obj not in skip and _wanted_payload(ctype, entry.obj, flt, reachable):
                    skip.add(entry.obj)
                    yield entry.obj, None


def _held_ids(store: _Reader, root_id: ObjectId, flt: Mapping[str, Any]) -> set[ObjectId]:
    """What a receiver that fetched ``root_id``'s commit through ``flt`` holds of its tree."""
    reachable = reachable_payloads(store, root_id, flt)
    return {oid for oid, _ in tree_closure(store, root_id, flt, set(), reachable)}


def objects_for(
    store: ObjectStore, want: ObjectId, have: list[ObjectId], flt: Mapping[str, Any]
) -> Iterator[tuple[ObjectId, str, int]]:
    """(id, kind, size) of what a peer holding the commits ``have`` needs to have ``want``.

    ``flt``: ``ctypes`` and ``since`` leave out payloads (partial clones; ``since`` keeps what
    :func:`reachable_payloads` of ``want`` names), ``payloads: False`` all of them, ``history:
    False`` every commit but ``want`` (a snapshot, for ``diff``). What the peer holds of ``have``
    is judged through the same filter: a payload it could not have fetched then (a version a
    rollback pins again) is offered now.
    """
    known = ancestors(store, have) if have else set()
    skip: set[ObjectId] = set()
    for tip in have:
        skip |= _held_ids(store, store.read_commit(tip).tree, flt)
    reachable = reachable_payloads(store, store.read_commit(want).tree, flt)
    queue = deque([want])
    seen: set[ObjectId] = set()
    while queue:
        cid = queue.popleft()
        if cid in seen or cid in known:
            continue
        seen.add(cid)
        commit = store.read_commit(cid)
        _, body = store.body_of(cid)
        yield cid, "commit", len(body)
        if flt.get("history", True):
            queue.extend(commit.parents)
        for oid, kind in tree_closure(store, commit.tree, flt, skip, reachable):
            if kind is None:
                kind = store.kind_of(oid)
                yield oid, kind, payload_size(store, oid)
            else:
                yield oid, kind, len(store.body_of(oid)[1])


def payload_size(store: ObjectStore, oid: ObjectId) -> int:
    dtype, shape = store.payload_info(oid)
    if dtype is None:
        value = store.read_payload(oid)
        assert isinstance(value, str)
        return len(value.encode("utf-8"))
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


class _Union:
    """Read objects from the store, else from the quarantine (what has arrived)."""

    def __init__(self, store: ObjectStore, quarantine: Quarantine) -> None:
        self.store, self.quarantine = store, quarantine

    def read_object(self, oid: ObjectId) -> Tree | Commit:
        if self.store.has(oid):
            return self.store.read_object(oid)
        return self.quarantine.read_object(oid)

    def read_commit_tree(self, cid: ObjectId) -> ObjectId:
        commit = self.read_object(cid)
        if not isinstance(commit, Commit):
            raise CorruptObject(f"{cid} is not a commit")
        return commit.tree


def walk_missing(
    store: ObjectStore, quarantine: Quarantine, new: ObjectId, flt: Mapping[str, Any] | None = None
) -> Iterator[tuple[ObjectId, str, int]]:
    """Objects reachable from ``new`` that ``store`` lacks; each must be in the quarantine.

    ``flt`` is a partial clone's filter: payloads it excludes are not expected.
    """
    union = _Union(store, quarantine)
    held = quarantine.ids()
    flt = flt or {}
    if not store.has(new) and new not in held:
        raise CorruptObject(f"commit {new} is needed but was never received")
    reachable = reachable_payloads(union, union.read_commit_tree(new), flt)
    queue = deque([new])
    seen: set[ObjectId] = set()
    skip: set[ObjectId] = set()
    while queue:
        cid = queue.popleft()
        if cid in seen or store.has(cid):
            continue
        seen.add(cid)
        if cid not in held:
            raise CorruptObject(f"commit {cid} is needed but was never received")
        commit = union.read_object(cid)
        if not isinstance(commit, Commit):
            raise CorruptObject(f"{cid} is not a commit")
        yield cid, "commit", 0
        queue.extend(commit.parents)
        for oid, _ in tree_closure(union, commit.tree, flt, skip, reachable):
            if store.has(oid):
                continue
            if oid not in held:
                raise CorruptObject(f"object {oid} is needed but was never received")
            yield oid, held[oid], 0


def transfer_header(store: ObjectStore, oid: ObjectId, chunk: int) -> tuple[dict[str, Any], Iterator[bytes]]:
    """What goes on the wire for one object: its header and its body in pieces."""
    kind = store.kind_of(oid)
    if kind in ("tree", "commit"):
        _, body = store.body_of(oid)
        return {"id": oid, "k": kind, "n": len(body)}, iter([body])
    if kind == "text":
        value = store.read_payload(oid)
        assert isinstance(value, str)
        raw = value.encode("utf-8")
        return {"id": oid, "k": "text", "n": len(raw)}, iter([raw])
    dtype, shape = store.payload_info(oid)
    assert dtype is not None
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header = {"id": oid, "k": "array", "n": size, "d": dtype_string(dtype), "s": list(shape)}

    def pieces() -> Iterator[bytes]:
        for piece in store.iter_payload(oid, chunk):
            assert not isinstance(piece, str)
            yield np.ascontiguousarray(piece).tobytes()

    return header, pieces()
