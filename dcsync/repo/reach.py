"""Reachability: which objects a commit needs and what a peer lacks (ancestry: :mod:`dcsync.repo.graph`).

Both sides of a transfer use this: the sender lists the objects reachable from a wanted commit
minus what the receiver's heads already imply (``objects_for``), and the receiver, before moving a
ref, walks from the new commit through its own store and its quarantine to find what to import
(``walk_missing``). Subtrees already present are skipped whole, so both walks cost O(change).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NoReturn, Protocol

import numpy as np

from dcsync.errors import CorruptObject, DcsyncError, ProtocolError
from dcsync.model.hashing import ObjectId, dtype_string
from dcsync.model.names import VersionKey
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    Obj,
    RangeRef,
    RangeTree,
    RootTree,
    Tree,
    VersionEntry,
    Via,
    check_tree_size,
    expect,
    kind_name,
    range_bounds_problem,
    wrong_kind,
)
from dcsync.repo.graph import ancestors
from dcsync.store.base import ObjectKind, ObjectStore
from dcsync.store.claims import PayloadFacts, claims_error, disagreements, stored_facts


class Arrived(Protocol):
    """Objects received from a peer and not yet imported (a quarantine, or a diff's scratch store)."""

    def ids(self) -> Mapping[ObjectId, ObjectKind]: ...

    def read_object(self, oid: ObjectId, *, peer: str | None = None) -> Tree | Commit:
        """A tree or commit that arrived, decoded and checked (a rule broken is ``peer``'s
        :class:`ProtocolError`)."""

    def payload_facts(self, oid: ObjectId) -> PayloadFacts: ...


class _Sources:
    """What a walk reads: a store, and (receiving) the objects that arrived from ``peer``.

    A wrong kind is the peer's doing, a :class:`ProtocolError`, when the peer sent the reference
    to it: the head it offered, or any reference held by an object that arrived. A reference
    held by a stored object is the file's own, a :class:`CorruptObject`.
    """

    def __init__(self, store: ObjectStore, arrived: Arrived | None = None, peer: str | None = None) -> None:
        self.store, self.arrived, self.peer = store, arrived, peer
        self.held: Mapping[ObjectId, ObjectKind] = arrived.ids() if arrived is not None else {}
        self._stored: set[ObjectId] = set()  # read from the store: their references are its own

    def _blamed(self, via: Via | None) -> str | None:
        return None if via is not None and via.holder in self._stored else self.peer

    def refuse(self, oid: ObjectId, found: str, expected: str, via: Via | None) -> DcsyncError:
        return wrong_kind(oid, found, expected, where=self.store.where, via=via, peer=self._blamed(via))

    def kind_name_of(self, oid: ObjectId, via: Via | None) -> str:
        """What ``oid`` is, a tree's own kind too (for a refusal's message)."""
        if self.store.has(oid) or self.arrived is None:
            return self.store.kind_name_of(oid)
        kind = self.kind(oid, via)
        if kind in ("tree", "commit"):
            return kind_name(self.arrived.read_object(oid, peer=self.peer))
        return kind_name(kind)

    def kind(self, oid: ObjectId, via: Via | None) -> ObjectKind:
        if self.store.has(oid):
            return self.store.kind_of(oid)
        if oid in self.held:
            return self.held[oid]
        return self.never_received(oid, via, "commit" if via is None or via.role == "a parent" else "object")

    def never_received(self, oid: ObjectId, via: Via | None, what: str = "object") -> NoReturn:
        """``oid`` is referred to but is neither stored nor arrived: a reference the peer sent is
        the peer's fault (a dangling id), one the store holds is the store's."""
        peer = self._blamed(via)
        if peer is not None:
            raise ProtocolError(f"{what} {oid} is needed but was never received (referred to by {peer})")
        raise CorruptObject(f"{what} {oid} is needed but was never received")

    def read_as(self, oid: ObjectId, expected: type[Obj], via: Via | None = None) -> Obj:
        peer = self._blamed(via)
        if self.arrived is None or self.store.has(oid):
            obj = self.store.read_as(oid, expected, via, peer=peer)
            self._stored.add(oid)
            return obj
        kind = self.kind(oid, via)
        if kind not in ("tree", "commit"):
            raise self.refuse(oid, kind_name(kind), kind_name(expected), via)
        arrived = self.arrived.read_object(oid, peer=self.peer)  # its bytes are the peer's
        if kind == "tree":  # a tree too big to walk or commit quickly is refused before either
            check_tree_size(arrived, oid, peer=self.peer or "the peer")
        return expect(arrived, expected, oid, where=self.store.where, via=via, peer=peer)

    def check_bounds(self, key: str, ref: RangeRef, tree: RangeTree, via: Via) -> None:
        """The bounds of range ``key`` in its ctype tree (``via.holder``) are its range tree's."""
        problem = range_bounds_problem(key, ref, tree)
        if problem is None:
            return
        peer = self._blamed(via)
        if peer is not None:
            raise ProtocolError(f"{problem}, in ctype tree {via.holder} from {peer}")
        raise CorruptObject(f"ctype tree {via.holder} in {self.store.where} is inconsistent: {problem}")

    def check_payload(self, oid: ObjectId, kind: str, via: Via) -> None:
        """A version's object is a payload of the kind its entry says (if it is here at all)."""
        if (self.store.has(oid) or oid in self.held) and self.kind(oid, via) != kind:
            raise self.refuse(oid, self.kind_name_of(oid, via), kind_name(kind), via)

    def check_claims(self, holder: ObjectId, vkey: VersionKey, entry: VersionEntry) -> None:
        """A version entry's dtype, shape and size are its payload's (:mod:`dcsync.store.claims`), where
        the peer sent the entry or the payload and the payload is here (a filter may leave it
        out; a missing one the walk refuses). An entry and a payload both stored are the file's
        own, for ``verify``; a payload of another kind is the kind check's to name."""
        oid = entry.obj
        tree_from_peer = holder not in self._stored
        if self.arrived is None or not (tree_from_peer or oid in self.held):
            return  # cheap first: most entries of a walk sit in trees the file holds
        stored = self.store.has(oid)
        if not (stored or oid in self.held) or (stored and not tree_from_peer):
            return
        if self.kind(oid, None) != entry.kind:
            return
        facts = stored_facts(self.store, oid) if stored else self.arrived.payload_facts(oid)
        problems = disagreements(entry, facts)
        if problems:
            via = Via(holder, f"version {vkey!r}")
            raise claims_error(entry, problems, what=via, where=self.store.where, peer=self.peer)


def _wanted_payload(
    ctype: str, oid: ObjectId, flt: Mapping[str, Any], reachable: set[ObjectId] | None
) -> bool:
    if flt.get("payloads") is False:
        return False
    ctypes = flt.get("ctypes")
    if ctypes and ctype not in ctypes:
        return False
    return reachable is None or oid in reachable


def reachable_payloads(
    src: _Sources, root_id: ObjectId, flt: Mapping[str, Any], via: Via
) -> set[ObjectId] | None:
    """With a ``since`` filter: the payloads some lookup at or after it returns in this tree, else
    None (no limit). That is, in every range that wins at such a time, its pinned default or else
    its newest version; the other versions no lookup returns (a pinned default hides them all), and
    a range superseded from ``since`` on (``[Oct 1, end)`` under ``[Nov 1, end)``) none of them.
    The history of ``since`` clones is trees and commits: a read ``--as-of`` an older commit or of
    a ``--version`` outside this set finds its payload not fetched."""
    since = flt.get("since")
    if since is None:
        return None
    out: set[ObjectId] = set()
    root = src.read_as(root_id, RootTree, via)
    for ctype, ctid in root.ctypes.items():
        ct = src.read_as(ctid, CtypeTree, Via(root_id, f"ctype {ctype!r}"))
        for key in ct.winners_from(int(since)):
            rng = src.read_as(ct.ranges[key].tree, RangeTree, Via(ctid, f"range {key!r}"))
            version = rng.effective()
            if version is not None:
                out.add(rng.versions[version].obj)
    return out


def _tree_closure(
    src: _Sources,
    root_id: ObjectId,
    flt: Mapping[str, Any],
    known: dict[ObjectId, str],
    via: Via,
    reachable: set[ObjectId] | None = None,
    entries: Callable[[ObjectId, VersionKey, VersionEntry], None] | None = None,
) -> Iterator[tuple[ObjectId, ObjectKind, Via]]:
    """The root tree ``via`` names and everything below it, as (id, kind, the reference to it),
    skipping ids in ``known`` (and their subtrees). ``entries`` is called with (range tree id,
    version key, entry) for every version of every range tree read, filtered out or not.

    ``known`` maps ids to the kind their first reference established; a later reference that
    promises another kind is refused even where the walk skips the subtree, so a tree reached
    twice cannot pass as two kinds. Payloads come with the kind their version entry promises,
    for the caller to check (only it knows where to look); with a filter, only those it wants
    (``reachable``: :func:`reachable_payloads` of the commit being transferred).
    """
    if _skip(src, known, root_id, RootTree, via):
        return
    root = src.read_as(root_id, RootTree, via)
    yield root_id, "tree", via
    for ctype, ctid in root.ctypes.items():
        cvia = Via(root_id, f"ctype {ctype!r}")
        if _skip(src, known, ctid, CtypeTree, cvia):
            continue
        ct = src.read_as(ctid, CtypeTree, cvia)
        yield ctid, "tree", cvia
        for key, ref in ct.ranges.items():
            rvia = Via(ctid, f"range {key!r}")
            met = _skip(src, known, ref.tree, RangeTree, rvia)
            # read even when met before: a range tree met under another key has other bounds
            rng = src.read_as(ref.tree, RangeTree, rvia)
            src.check_bounds(key, ref, rng, rvia)
            if met:
                continue
            yield ref.tree, "tree", rvia
            for vkey, entry in rng.versions.items():
                if entries is not None:
                    entries(ref.tree, vkey, entry)
                if not _wanted_payload(ctype, entry.obj, flt, reachable):
                    continue
                pvia = Via(ref.tree, f"version {vkey!r}")
                if not _skip(src, known, entry.obj, entry.kind, pvia):
                    yield entry.obj, entry.kind, pvia


def _skip(
    src: _Sources, known: dict[ObjectId, str], oid: ObjectId, expected: type[Tree] | str, via: Via
) -> bool:
    """Whether ``oid`` was met already (refusing it if it was met as another kind); else it is
    recorded as ``expected``, which the caller's read then checks."""
    name = kind_name(expected)
    if oid not in known:
        known[oid] = name
        return False
    if known[oid] != name:
        raise src.refuse(oid, known[oid], name, via)
    return True


def objects_for(
    store: ObjectStore,
    want: ObjectId,
    have: list[ObjectId],
    flt: Mapping[str, Any],
    *,
    peer: str | None = None,
) -> Iterator[tuple[ObjectId, str, int]]:
    """(id, kind, size) of what a peer holding the commits ``have`` needs to have ``want``.

    ``flt``: ``ctypes`` and ``since`` leave out payloads (partial clones; ``since`` keeps what
    :func:`reachable_payloads` of ``want`` names), ``payloads: False`` all of them, ``history:
    False`` every commit but ``want`` (a snapshot, for ``diff``). What the peer holds of ``have``
    is judged through the same filter: a payload it could not have fetched then (a version a
    rollback pins again) is offered now. ``peer`` named ``want`` and ``have``: one that is not a
    commit is its :class:`ProtocolError`.
    """
    src = _Sources(store, peer=peer)
    tips = [src.read_as(tip, Commit) for tip in have]
    known_commits = ancestors(store, have) if have else set()
    known: dict[ObjectId, str] = {}
    for tip, commit in zip(have, tips, strict=True):
        held = reachable_payloads(src, commit.tree, flt, Via(tip, "the tree"))
        for _ in _tree_closure(src, commit.tree, flt, known, Via(tip, "the tree"), held):
            pass
    want_commit = src.read_as(want, Commit)
    reachable = reachable_payloads(src, want_commit.tree, flt, Via(want, "the tree"))
    queue: deque[tuple[ObjectId, Via | None]] = deque([(want, None)])
    seen: set[ObjectId] = set()
    while queue:
        cid, via = queue.popleft()
        if cid in seen or cid in known_commits:
            continue
        seen.add(cid)
        commit = src.read_as(cid, Commit, via)
        _, body = store.body_of(cid)
        yield cid, "commit", len(body)
        if flt.get("history", True):
            queue.extend((p, Via(cid, "a parent")) for p in commit.parents)
        for oid, kind, ref in _tree_closure(src, commit.tree, flt, known, Via(cid, "the tree"), reachable):
            if kind == "tree":
                yield oid, kind, len(store.body_of(oid)[1])
            else:
                src.check_payload(oid, kind, ref)
                yield oid, kind, payload_size(store, oid)


def payload_size(store: ObjectStore, oid: ObjectId) -> int:
    dtype, shape = store.payload_info(oid)
    if dtype is None:
        return len(_text(store, oid).encode("utf-8"))
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _text(store: ObjectStore, oid: ObjectId) -> str:
    value = store.read_payload(oid)
    if not isinstance(value, str):
        raise CorruptObject(f"object {oid} in {store.where} is stored as text but reads as an array")
    return value


def walk_missing(
    store: ObjectStore,
    arrived: Arrived,
    new: ObjectId,
    flt: Mapping[str, Any] | None = None,
    *,
    peer: str,
    detector: str | None = None,
) -> Iterator[tuple[ObjectId, str, int]]:
    """Objects reachable from ``new`` that ``store`` lacks; each must have arrived from ``peer``.

    This walk is the gate for what a peer sent: every reference on the way must lead to the kind
    it promises (see :class:`_Sources` for whom a wrong one is blamed on), every tree and commit
    must keep the validity rules (checked as it is decoded, and a range's bounds against its range
    tree here), and with ``detector`` every new commit's root must be that detector's, before
    anything is imported. ``flt`` is a partial clone's filter: payloads it excludes are not
    expected, nor parents with ``history: False``. Every version entry the peer sent is checked
    against its payload (:meth:`_Sources.check_claims`) on the way.
    """
    flt = flt or {}
    src = _Sources(store, arrived, peer)
    reachable = reachable_payloads(src, src.read_as(new, Commit).tree, flt, Via(new, "the tree"))
    queue: deque[tuple[ObjectId, Via | None]] = deque([(new, None)])
    seen: set[ObjectId] = set()
    known: dict[ObjectId, str] = {}
    other: tuple[ObjectId, str] | None = None  # a new commit whose root is another detector's
    while queue:
        cid, via = queue.popleft()
        if cid in seen:
            continue
        seen.add(cid)
        if store.has(cid):
            if store.kind_of(cid) != "commit":
                raise src.refuse(cid, store.kind_name_of(cid), "commit", via)
            continue
        commit = src.read_as(cid, Commit, via)
        yield cid, "commit", 0
        if flt.get("history", True):
            queue.extend((p, Via(cid, "a parent")) for p in commit.parents)
        closure = _tree_closure(
            src, commit.tree, flt, known, Via(cid, "the tree"), reachable, src.check_claims
        )
        for oid, kind, ref in closure:
            if kind != "tree":
                src.check_payload(oid, kind, ref)
            if store.has(oid):
                continue
            if oid not in src.held:
                src.never_received(oid, ref)
            yield oid, src.held[oid], 0
        if detector is not None and other is None:
            root = src.read_as(commit.tree, RootTree, Via(cid, "the tree"))
            other = None if root.detname == detector else (cid, root.detname)
    if other is not None:  # after the walk, so a wrong kind anywhere is named first
        raise ProtocolError(
            f"{peer} sent commit {other[0]} for detector {detector}, but its tree is detector {other[1]}'s"
        )


def transfer_header(store: ObjectStore, oid: ObjectId, chunk: int) -> tuple[dict[str, Any], Iterator[bytes]]:
    """What goes on the wire for one object: its header and its body in pieces."""
    kind = store.kind_of(oid)
    if kind in ("tree", "commit"):
        _, body = store.body_of(oid)
        return {"id": oid, "k": kind, "n": len(body)}, iter([body])
    if kind == "text":
        raw = _text(store, oid).encode("utf-8")
        return {"id": oid, "k": "text", "n": len(raw)}, iter([raw])
    dtype, shape = store.payload_info(oid)
    if dtype is None:
        raise CorruptObject(f"object {oid} in {store.where} is stored as an array but reads as text")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header = {"id": oid, "k": "array", "n": size, "d": dtype_string(dtype), "s": list(shape)}

    def pieces() -> Iterator[bytes]:
        for piece in store.iter_payload(oid, chunk):
            if isinstance(piece, str):
                raise CorruptObject(f"object {oid} in {store.where} is stored as an array but reads as text")
            yield np.ascontiguousarray(piece).tobytes()

    return header, pieces()
