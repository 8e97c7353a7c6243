"""Ancestry in the commit graph: every ancestor of some heads, whether one commit descends from
another, and the best common ancestor a three-way merge starts from.

Every parent is followed (merges included), and commit times, which come from many hosts' clocks,
never cut a walk short: they only break a tie between equally good merge bases.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol

from dcsync.model.hashing import ObjectId
from dcsync.model.objects import Commit, Obj, Via


class _Reader(Protocol):
    """What a walk reads: a store, or a store with the objects a peer just sent."""

    def read_as(self, oid: ObjectId, expected: type[Obj], via: Via | None = None) -> Obj: ...


def _parents(store: _Reader, cid: ObjectId) -> tuple[ObjectId, ...]:
    return store.read_as(cid, Commit).parents


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
    """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor)."""
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


def merge_base(store: _Reader, a: ObjectId, b: ObjectId) -> ObjectId | None:
    """A best common ancestor of ``a`` and ``b``: common, and no ancestor of another common one.

    None for unrelated histories. After criss-cross merges there can be several best ones; the one
    with the latest commit time (then the largest id) is returned, as git does by default.
    """
    common = ancestors(store, [a]) & ancestors(store, [b])
    if not common:
        return None
    # Every strict ancestor of a common commit is common too, so one walk from their parents finds
    # all the commits that are "not best".
    below = ancestors(store, (p for c in common for p in _parents(store, c)))
    best = common - below
    return max(best, key=lambda c: (store.read_as(c, Commit).time, c))
