"""``diff`` between two workspaces or remotes: read each side (a remote into memory) and compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dcsync.errors import (
    ObjectNotFound,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    RangeTree,
    RootTree,
    Tree,
    VersionEntry,
    kind_name,
    wrong_kind,
)
from dcsync.repo.diff import Change, Scope, diff_roots, in_scope, readable, summarize, value_stats
from dcsync.repo.reach import walk_missing
from dcsync.store.base import ObjectKind, ObjectStore, verify_payload
from dcsync.store.claims import PayloadFacts, claims_error, disagreements, stored_facts
from dcsync.store.memory import MemoryStore
from dcsync.sync.client import Connection, connect
from dcsync.sync.fetching import detector_selected
from dcsync.sync.quarantine import Header
from dcsync.sync.stores import WorkspaceFiles
from dcsync.sync.transfer import no_progress, receive_objects
from dcsync.workspace.config import (
    RemoteConfig,
    remote_for,
    remotes,
)
from dcsync.workspace.workspace import CONFIG_DIR, Workspace, open_repository


# -- diff between workspaces ---------------------------------------------------------------------------
class _MemoryReceiver:
    """Collects one small object in memory (trees for a diff; payloads only with --values)."""

    def __init__(self, store: MemoryStore, header: Header, peer: str) -> None:
        self.store, self.header, self.parts, self.peer = store, header, bytearray(), peer

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.header.size

    def write(self, data: bytes) -> None:
        self.parts += data

    def finish(self) -> None:
        h, body = self.header, bytes(self.parts)
        with self.store.writing():
            if h.kind in ("tree", "commit"):
                self.store.put_body(h.oid, h.kind, body, peer=self.peer)
            elif h.kind == "text":
                value: Any = body.decode("utf-8")
                self.store.put_payload(verify_payload(h.oid, value, "the transfer"), known_id=h.oid)
            else:
                arr = np.frombuffer(body, dtype=h.dtype).reshape(h.shape).copy()
                self.store.put_payload(verify_payload(h.oid, arr, "the transfer"), known_id=h.oid)

    def abort(self) -> None:
        self.parts.clear()


class _Arrivals:
    """A diff side's scratch store as the receive walk reads it: all of it came from the peer."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def ids(self) -> dict[ObjectId, ObjectKind]:
        return {oid: self.store.kind_of(oid) for oid in self.store.object_ids()}

    def read_object(self, oid: ObjectId, *, peer: str | None = None) -> Tree | Commit:
        return self.store.read_object(oid)  # checked as it arrived (_MemoryReceiver)

    def payload_facts(self, oid: ObjectId) -> PayloadFacts:
        return stored_facts(self.store, oid)


@dataclass
class Snapshot:
    """One side of a diff: each detector's store and HEAD tree, and how to get payloads."""

    name: str
    roots: dict[str, tuple[ObjectStore, RootTree]]
    heads: dict[str, str] = field(default_factory=dict)
    conn: Connection | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    scope: Scope | None = None  # a partial clone's filter: what this side can be compared on

    def payload(self, det: str, entry: VersionEntry) -> Any:
        """The payload of a version, received now if this side is a remote's."""
        store, oid = self.roots[det][0], entry.obj
        conn = self.conn
        if conn is not None and isinstance(store, MemoryStore):  # all of it came from the peer
            if not store.has(oid):
                receive_objects(
                    conn, [(det, oid, 0)], lambda _d, h: _MemoryReceiver(store, h, conn.peer), no_progress
                )
            if store.kind_of(oid) != entry.kind:
                found, expected = store.kind_name_of(oid), kind_name(entry.kind)
                raise wrong_kind(oid, found, expected, where=store.where, peer=conn.peer)
            problems = disagreements(entry, stored_facts(store, oid))
            if problems:  # the diff shows the entry: it must say what arrived
                what = f"a version of {det} compared"
                raise claims_error(entry, problems, what=what, where=store.where, peer=conn.peer)
        return store.read_payload(oid)

    def close(self) -> None:
        for close in self.closers:
            close()
        if self.conn is not None:
            self.conn.close()


def snapshot(
    source: str,
    *,
    here: Workspace | None = None,
    detectors: list[str] | None = None,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> Snapshot:
    """A diff side from a repository file, a workspace directory, a remote name or a URL.

    ``remote_dcsync`` and ``ssh_command`` apply to a URL (a named remote has its own).
    """
    path = Path(source).expanduser()
    if source.endswith(".h5") and path.is_file():
        repo = open_repository(path)
        root = repo.root()
        return Snapshot(
            source, {root.detname: (repo.store, root)}, {root.detname: str(repo.head())}, closers=[repo.close]
        )
    if path.is_dir() and (path / CONFIG_DIR).is_dir():
        ws = Workspace(path)
        snap = Snapshot(source, {}, scope=_scope(source, ws, remotes(ws).get("origin")))
        files = WorkspaceFiles(ws)
        for det in ws.detectors():
            if detector_selected(det, detectors):
                repo = files.repository(det)
                if repo.head() is not None:
                    snap.roots[det] = (repo.store, repo.root())
                    snap.heads[det] = str(repo.head())
                snap.closers.append(repo.close)
        return snap
    spec = remote_for(source, here, remote_dcsync=remote_dcsync, ssh_command=ssh_command)
    conn = connect(spec)
    named = here is not None and source in remotes(here)
    snap = Snapshot(source, {}, conn=conn, scope=_scope(source, here, spec) if named and here else None)
    try:
        _receive_trees(snap, conn, detectors)
    except BaseException:
        snap.close()
        raise
    return snap


def _receive_trees(snap: Snapshot, conn: Connection, detectors: list[str] | None) -> None:
    """Fill ``snap`` with the trees and commits at each remote HEAD (payloads come when compared),
    each checked to be what the peer claims before anything compares it."""
    heads = conn.heads(detectors).heads
    flt = {"payloads": False, "history": False}
    wants = [{"detector": d, "want": h, "have": [], "filter": flt} for d, h in sorted(heads.items()) if h]
    offered = conn.negotiate(wants) if wants else {}
    stores = {det: MemoryStore() for det in offered}
    items = [(det, oid, size) for det, objs in sorted(offered.items()) for oid, _, size in objs]
    receive_objects(conn, items, lambda det, h: _MemoryReceiver(stores[det], h, conn.peer), no_progress)
    for det, head in sorted(heads.items()):
        if head is None:
            continue
        store = stores[det]
        for _ in walk_missing(MemoryStore(), _Arrivals(store), head, flt, peer=conn.peer, detector=det):
            pass  # what the peer sent is what it claims to be, or nothing is compared
        snap.roots[det] = (store, store.read_as(store.read_commit(head).tree, RootTree))
        snap.heads[det] = str(head)


def _scope(source: str, ws: Workspace, remote: RemoteConfig | None) -> Scope | None:
    """What a diff side can be compared on when ``remote`` carries a partial-clone filter (the
    ``origin`` of a partial workspace, or such a remote named as a side): its detectors (and those
    ``ws`` holds), ctypes and ``since``."""
    if remote is None or not (remote.detectors or remote.ctypes or remote.since_ns is not None):
        return None
    return Scope(source, remote.detectors, remote.ctypes, remote.since_ns, frozenset(ws.detectors()))


@dataclass
class LeftOut:
    """What a diff did not compare because a side is a partial clone (see :class:`Scope`)."""

    scopes: list[Scope]
    detectors: list[str] = field(default_factory=list)  # not compared at all
    changes: int = 0  # differences in compared detectors outside the filters

    def to_json(self) -> dict[str, Any]:
        return {
            "filters": [s.to_json() for s in self.scopes],
            "detectors": self.detectors,
            "changes": self.changes,
        }

    def describe(self) -> str:
        """One line for the human output, or "" when nothing was left out."""
        if not self.detectors and not self.changes:
            return ""
        what = []
        if self.detectors:
            names = ", ".join(self.detectors[:5]) + (", ..." if len(self.detectors) > 5 else "")
            what.append(f"{len(self.detectors)} detector(s) ({names})")
        if self.changes:
            what.append(f"{self.changes} change(s) in other ctypes or ranges")
        filters = "; ".join(s.describe() for s in self.scopes)
        return f"left out, outside the partial-clone filter of {filters}: {' and '.join(what)}"


@dataclass
class DiffReport:
    a: str
    b: str
    changes: list[Change]
    values: dict[int, dict[str, Any]] = field(default_factory=dict)  # index in changes -> stats
    left_out: LeftOut | None = None  # None: neither side is a partial clone

    def to_json(self) -> dict[str, Any]:
        def entry(value: Any) -> Any:
            if isinstance(value, VersionEntry):
                return {
                    "object": value.obj,
                    "dtype": value.dtype,
                    "shape": list(value.shape),
                    "tsprod": value.tsprod,
                    "pars": dict(value.pars),
                }
            return readable(value)

        return {
            "a": self.a,
            "b": self.b,
            "left_out": None if self.left_out is None else self.left_out.to_json(),
            "summary": summarize(self.changes),
            "changes": [
                {
                    "detector": c.detname,
                    "ctype": c.ctype,
                    "range": c.range,
                    "version": c.version,
                    "kind": c.kind,
                    "old": entry(c.old),
                    "new": entry(c.new),
                    **({"values": self.values[i]} if i in self.values else {}),
                }
                for i, c in enumerate(self.changes)
            ],
        }


def _compared_entries(left: Snapshot, right: Snapshot, c: Change) -> tuple[VersionEntry, VersionEntry] | None:
    """The two versions whose values a change compares: a changed version's old and new content,
    or, when a range's default moved, the old default's and the new one's."""
    if c.kind == "changed" and isinstance(c.old, VersionEntry) and isinstance(c.new, VersionEntry):
        return c.old, c.new
    if c.kind == "default" and c.ctype and c.range:
        old = _effective_entry(left, c.detname, c.ctype, c.range)
        new = _effective_entry(right, c.detname, c.ctype, c.range)
        if old is not None and new is not None and old.obj != new.obj:
            return old, new
    return None


def _effective_entry(snap: Snapshot, det: str, ctype: str, rk: str) -> VersionEntry | None:
    """The version lookups return in one range on one side, if that range exists there."""
    if det not in snap.roots:
        return None
    store, root = snap.roots[det]
    if ctype not in root.ctypes:
        return None
    ct = store.read_as(root.ctypes[ctype], CtypeTree)
    ref = ct.ranges.get(RangeKey(rk))
    if ref is None:
        return None
    tree = store.read_as(ref.tree, RangeTree)
    key = tree.effective()
    return None if key is None else tree.versions[key]


def diff_sources(
    a: str,
    b: str,
    *,
    here: Workspace | None = None,
    detectors: list[str] | None = None,
    ctypes: list[str] | None = None,
    values: bool = False,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> DiffReport:
    """What differs from ``a`` to ``b``; payloads cross the wire only with ``values``.

    ``remote_dcsync`` and ``ssh_command`` are for a side given as a URL, as in :func:`clone`.
    """
    remote = {"remote_dcsync": remote_dcsync, "ssh_command": ssh_command}
    left = snapshot(a, here=here, detectors=detectors, **remote)
    try:
        right = snapshot(b, here=here, detectors=detectors, **remote)
        try:
            changes: list[Change] = []
            scopes = [s for s in (left.scope, right.scope) if s is not None]
            if len(scopes) == 2 and replace(scopes[1], source=scopes[0].source) == scopes[0]:
                scopes = scopes[:1]  # "diff origin ." in the clone: one filter, said once
            left_out = LeftOut(scopes) if scopes else None
            for det in sorted(set(left.roots) | set(right.roots)):
                if not detector_selected(det, detectors):
                    continue
                if left_out is not None and not all(s.covers_detector(det) for s in scopes):
                    left_out.detectors.append(det)
                    continue
                sa, ra = left.roots.get(det, (MemoryStore(), None))
                sb, rb = right.roots.get(det, (MemoryStore(), None))
                for c in diff_roots(sa, ra, sb, rb, ctypes=set(ctypes) if ctypes else None):
                    if left_out is None or all(in_scope(s, c, sa, ra, sb, rb) for s in scopes):
                        changes.append(c)
                    else:
                        left_out.changes += 1
            report = DiffReport(a, b, changes, left_out=left_out)
            if values:
                for i, c in enumerate(changes):
                    pair = _compared_entries(left, right, c)
                    if pair is None:
                        continue
                    try:
                        report.values[i] = value_stats(
                            left.payload(c.detname, pair[0]), right.payload(c.detname, pair[1])
                        )
                    except ObjectNotFound:  # a partial clone's side: that payload stayed behind
                        if not (left.scope or right.scope):
                            raise
                        report.values[i] = {"comparable": False, "not_fetched": True}
            return report
        finally:
            right.close()
    finally:
        left.close()
