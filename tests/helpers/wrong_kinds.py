"""Well-hashed objects of the wrong kind in every position a reference has, and a server that
offers them.

Every reference promises a kind: a pushed or offered head is a commit, a commit's tree a root
tree, its parents commits, a root's ctype entry a ctype tree, a ctype's range entry a range tree,
a version entry a payload of its own kind. :func:`cases` builds, on top of a real repository's
HEAD, one :class:`Case` per position and wrong kind: the wrong object either sent along (fresh)
or one the receiver already has (``stored``). Each case's objects hash correctly, so only a check
of kinds can refuse them.

:class:`HostileServer` is a real :class:`~dcsync.sync.server.Server` whose heads, negotiation and
objects come from the cases, one case per ``heads`` request (so one session, or one process,
serves them in turn); ``python hostile_serve.py`` runs it over stdin/stdout like ``dcsync serve``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dcsync.model.hashing import ObjectId
from dcsync.model.names import VersionKey
from dcsync.model.objects import Commit, CtypeTree, Payload, RangeTree, RootTree, Tree, object_id, payload_id
from dcsync.rawio import write_all
from dcsync.repo.reach import objects_for, transfer_header
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.store.memory import MemoryStore
from dcsync.sync.protocol import chunk_size, write_frame
from dcsync.sync.server import Server

KINDS = ("root tree", "ctype tree", "range tree", "commit", "array payload", "text payload")
# position -> the kind its reference promises
POSITIONS = {
    "head": "commit",
    "commit tree": "root tree",
    "parent": "commit",
    "root ctype": "ctype tree",
    "ctype range": "range tree",
    "version": "array payload",
}
ARRAY_CTYPE, TEXT_CTYPE = "pedestals", "geometry"  # the base HEAD must hold one of each


@dataclass(frozen=True)
class Case:
    position: str
    kind: str  # the kind of the object put where ``expected`` was promised
    stored: bool  # the wrong object is one the receiver has; else it is sent along
    head: ObjectId  # the pushed / offered head
    base_head: ObjectId  # the HEAD it builds on
    target: ObjectId  # the wrong object
    store: MemoryStore  # every object of the case: the base's and the new ones
    new: tuple[ObjectId, ...]  # what the base lacks

    @property
    def expected(self) -> str:
        return POSITIONS[self.position]

    @property
    def name(self) -> str:
        return f"{self.position}={self.kind}{' (stored)' if self.stored else ''}"


def copy_of(base: ObjectStore, head: ObjectId) -> MemoryStore:
    """Every object of ``head`` in a store of its own, to build a case on."""
    out = MemoryStore()
    with out.writing():
        for oid, kind, _ in objects_for(base, head, [], {}):
            if kind in ("tree", "commit"):
                out.put_body(oid, base.kind_of(oid), base.body_of(oid)[1])
            else:
                out.put_payload(base.read_payload(oid), known_id=oid)
    return out


class _Base:
    """The base HEAD's objects the cases build on, one stored example of each kind, and one fresh
    (not stored) object of each kind."""

    def __init__(self, store: ObjectStore, head: ObjectId) -> None:
        self.store, self.head = store, head
        self.commit = store.read_commit(head)
        self.root = store.read_as(self.commit.tree, RootTree)
        self.ct = store.read_as(self.root.ctypes[ARRAY_CTYPE], CtypeTree)
        self.rkey, ref = next(iter(self.ct.ranges.items()))
        self.rng = store.read_as(ref.tree, RangeTree)
        self.vkey: VersionKey = next(iter(self.rng.versions))
        text_ct = store.read_as(self.root.ctypes[TEXT_CTYPE], CtypeTree)
        text_rng = store.read_as(next(iter(text_ct.ranges.values())).tree, RangeTree)
        self.stored = {
            "root tree": self.commit.tree,
            "ctype tree": self.root.ctypes[ARRAY_CTYPE],
            "range tree": ref.tree,
            "commit": head,
            "array payload": self.rng.versions[self.vkey].obj,
            "text payload": next(iter(text_rng.versions.values())).obj,
        }
        fresh_root = RootTree("hostile", "77", created=1)
        self.fresh: dict[str, Tree | Commit | Payload] = {
            "root tree": fresh_root,
            "ctype tree": CtypeTree(pars={"hostile": 1}),
            "range tree": replace(self.rng, pars={"hostile": 1}),  # valid (not empty), and new
            "commit": Commit(object_id(fresh_root), (), "hostile", "h", 1, "a fresh commit"),
            "array payload": np.arange(5, dtype="<i4") * 7,
            "text payload": "hostile text",
        }
        assert not any(store.has(oid) for oid in map(_id_of, self.fresh.values()))


def _id_of(value: Tree | Commit | Payload) -> ObjectId:
    return payload_id(value) if isinstance(value, str | np.ndarray) else object_id(value)


def cases(path: Path) -> list[Case]:
    """Every position × wrong kind × (sent, stored) on top of the HEAD of the repository at ``path``."""
    with Repository.open(path) as repo:
        head = repo.head()
        assert head is not None
        base = _Base(repo.store, head)
        return [
            _case(base, position, kind, is_stored)
            for position, expected in POSITIONS.items()
            for kind in KINDS
            if kind != expected
            for is_stored in (False, True)
        ]


def _case(base: _Base, position: str, kind: str, is_stored: bool) -> Case:
    store = copy_of(base.store, base.head)
    with store.writing():

        def put(value: Tree | Commit | Payload) -> ObjectId:
            if isinstance(value, str | np.ndarray):
                return store.put_payload(value)
            if isinstance(value, Commit):  # a fresh commit is complete: its root comes along
                store.put_object(base.fresh["root tree"])  # type: ignore[arg-type]
            return store.put_object(value)

        target = base.stored[kind] if is_stored else put(base.fresh[kind])
        tag = f"{position} {kind} {is_stored}"  # every case's new commit differs

        def on_top(tree: ObjectId, parents: tuple[ObjectId, ...] = (base.head,)) -> ObjectId:
            return store.put_object(Commit(tree, parents, "hostile", "h", 2, tag))

        def with_ctype(ctid: ObjectId) -> ObjectId:
            return store.put_object(replace(base.root, ctypes={**base.root.ctypes, ARRAY_CTYPE: ctid}))

        def with_range(rid: ObjectId) -> ObjectId:
            ranges = {**base.ct.ranges, base.rkey: replace(base.ct.ranges[base.rkey], tree=rid)}
            return with_ctype(store.put_object(replace(base.ct, ranges=ranges)))

        if position == "head":
            new_head = target
        elif position == "commit tree":
            new_head = on_top(target)
        elif position == "parent":
            new_head = on_top(base.commit.tree, (target,))
        elif position == "root ctype":
            new_head = on_top(with_ctype(target))
        elif position == "ctype range":
            new_head = on_top(with_range(target))
        else:
            entry = replace(base.rng.versions[base.vkey], obj=target)
            versions = {**base.rng.versions, base.vkey: entry}
            new_head = on_top(with_range(store.put_object(replace(base.rng, versions=versions))))
    new = tuple(oid for oid in store.object_ids() if not base.store.has(oid))
    return Case(position, kind, is_stored, new_head, base.head, target, store, new)


def items_of(
    store: ObjectStore, oids: tuple[ObjectId, ...] | list[ObjectId], chunk: int = 64
) -> list[dict[str, Any]]:
    """put_objects / get_objects stream items (a header, then chunks) for ``oids`` of ``store``."""
    items: list[dict[str, Any]] = []
    for oid in oids:
        header, pieces = transfer_header(store, oid, chunk)
        body = b"".join(pieces)
        items.append({"h": header})
        items.extend({"c": body[i : i + chunk]} for i in range(0, len(body), chunk))
    return items


class HostileServer(Server):
    """Serves ``cases`` in turn to one detector: each ``heads`` request moves to the next case."""

    def __init__(self, root: Path, det: str, cases: list[Case]) -> None:
        super().__init__(root)
        self.det, self.cases, self.index = det, cases, -1

    @property
    def case(self) -> Case:
        return self.cases[self.index]

    def serve_stdio(self) -> None:
        """Serve on this process's stdin and stdout, as ``dcsync serve --stdio`` does, then close."""
        try:
            self.serve(lambda n: os.read(0, n), lambda data: write_all(1, data))
        finally:
            self.close()

    def do_heads(self, rid: int, read: Any, write: Any, detectors: list[Any] | None = None) -> dict[str, Any]:
        self.index = min(self.index + 1, len(self.cases) - 1)
        return {"kind": self.ws.kind, "heads": {self.det: self.case.head}}

    def do_negotiate(self, rid: int, read: Any, write: Any, wants: list[Any]) -> dict[str, Any]:
        store = self.case.store
        # a peer that has the base (a fetch) gets what is new; one with nothing (a diff) all of it,
        # whatever its filter says
        offer = self.case.new if any(w.get("have") for w in wants) else tuple(store.object_ids())
        sizes = [transfer_header(store, oid, 1 << 20)[0]["n"] for oid in offer]
        return {
            "objects": {self.det: [[oid, store.kind_of(oid), n] for oid, n in zip(offer, sizes, strict=True)]}
        }

    def do_get_objects(self, rid: int, read: Any, write: Any, items: list[Any]) -> dict[str, Any]:
        for item in items_of(self.case.store, [ObjectId(oid) for _, oid in items], chunk_size()):
            write_frame(write, {"i": rid, "s": item})
        return {"count": len(items)}
