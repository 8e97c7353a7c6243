"""Three-way merge of detector trees: what ``pull`` does when two copies of a repository diverged.

:func:`merge_trees` merges ``ours`` and ``theirs`` against their merge base
(:func:`dcsync.repo.graph.merge_base`), level by level (root → ctype → range → version). At each
level the children are merged by key:

* the same on both sides (same id: shared subtrees short-circuit) → kept;
* changed (added, removed, modified) on one side only → that side's;
* changed on both sides differently → ctypes and ranges recurse; a version is a conflict (its
  parameters excepted: they merge per key like every other ``pars``), and so is a version removed
  on one side and changed on the other. A ctype or range removed on one side and changed on the
  other recurses as if emptied there (as git treats a deleted directory): what the other side
  added survives, what existed and was left alone goes, and what it changed is a conflict at
  the version, default or parameter it changed, so the report names the exact entry.

A range's default, each parameter key (root, ctype, range, version) and each root link merge the
same way, as single values. A merged default that pins a version the other side removed is a
conflict. Version keys are random per site, so independent additions never collide; two sites that
each pinned their own new version in the same range do conflict, on purpose: "the last deployed
wins" is the failure this store exists to prevent. Ranges and ctypes left empty are pruned, as a
transaction would. The caller stores :attr:`MergeResult.new_objects` (bottom-up) and the root.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any, Literal, NamedTuple, TypeVar

from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey
from dcsync.model.objects import (
    CtypeTree,
    ParValue,
    RangeRef,
    RangeTree,
    RootTree,
    VersionEntry,
    object_id,
)
from dcsync.model.times import format_time
from dcsync.store.base import ObjectStore

__all__ = [
    "ROOT",
    "Conflict",
    "MergeResult",
    "Side",
    "conflicts_json",
    "describe_conflicts",
    "merge_trees",
]

Side = Literal["ours", "theirs"]
ROOT = "<root>"
"""The first element of a conflict path on the detector level (links, parameters)."""

Printable = ParValue | None
K = TypeVar("K", bound=str)
V = TypeVar("V")


class Conflict(NamedTuple):
    """Both sides changed one entry differently.

    ``path`` names the entry: ``(ctype, range, version)``, ``(ctype, range, "default")``,
    ``(ctype, "pars", key)``, ``(ctype, range, "pars", key)``, ``(ctype, range, version, "pars",
    key)``, ``("<root>", "pars", key)``, ``("<root>", "links", name)`` or ``("<root>", "detname")``.
    ``base``/``ours``/``theirs`` are short printable values (None: absent); ``resolved`` says which
    side won when the merge was told to prefer one.
    """

    path: tuple[str, ...]
    what: str
    base: Printable
    ours: Printable
    theirs: Printable
    resolved: Side | None = None


class MergeResult(NamedTuple):
    """The merged root, the trees to store first (bottom-up), and the conflicts met."""

    root: RootTree
    new_objects: list[CtypeTree | RangeTree]
    conflicts: list[Conflict]


# -- trees ---------------------------------------------------------------------------------------


def _par_same(x: ParValue | None, y: ParValue | None) -> bool:
    """Equality as stored: ``1``, ``1.0`` and ``True`` differ (they encode differently); NaN == NaN."""
    if type(x) is not type(y):
        return False
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


def _pars_same(x: Mapping[str, ParValue], y: Mapping[str, ParValue]) -> bool:
    return x.keys() == y.keys() and all(_par_same(x[k], y[k]) for k in x)


def _entry_same(x: VersionEntry | None, y: VersionEntry | None) -> bool:
    if x is None or y is None:
        return x is y
    return replace(x, pars={}) == replace(y, pars={}) and _pars_same(x.pars, y.pars)


def _eq(x: object, y: object) -> bool:
    return x == y


def _entry_id(entry: VersionEntry | None) -> ObjectId | None:
    return None if entry is None else entry.obj


def _entry_text(entry: VersionEntry | None) -> str:
    if entry is None:
        return "removed"
    shape = "x".join(map(str, entry.shape)) or "scalar"
    what = "text" if entry.kind == "text" else f"{entry.dtype} {shape}"
    return f"{what} produced {format_time(entry.tsprod)} by {entry.author}"


class _Merger:
    def __init__(self, store: ObjectStore, prefer: Side | None) -> None:
        self.store = store
        self.prefer = prefer
        self.conflicts: list[Conflict] = []
        self.new_objects: list[CtypeTree | RangeTree] = []
        self._new_ids: set[ObjectId] = set()

    # -- helpers ---------------------------------------------------------------------------------
    def conflict(
        self, path: tuple[str, ...], what: str, base: Printable, ours: Printable, theirs: Printable
    ) -> None:
        self.conflicts.append(Conflict(path, what, base, ours, theirs, self.prefer))

    def pick(self, ours: V, theirs: V) -> V:
        """A conflict's value: the preferred side's, or ours as a placeholder (not committed)."""
        return theirs if self.prefer == "theirs" else ours

    def store_new(self, tree: CtypeTree | RangeTree, known: Collection[ObjectId | None]) -> ObjectId:
        oid = object_id(tree)
        if oid not in known and oid not in self._new_ids:
            self._new_ids.add(oid)
            self.new_objects.append(tree)
        return oid

    def scalar(
        self,
        path: tuple[str, ...],
        what: str,
        base: V,
        ours: V,
        theirs: V,
        same: Callable[[V, V], bool],
        label: Callable[[V], Printable],
    ) -> V:
        """Three-way merge of one value."""
        if same(ours, theirs) or same(base, theirs):
            return ours
        if same(base, ours):
            return theirs
        self.conflict(path, what, label(base), label(ours), label(theirs))
        return self.pick(ours, theirs)

    def pars(
        self,
        path: tuple[str, ...],
        base: Mapping[str, ParValue],
        ours: Mapping[str, ParValue],
        theirs: Mapping[str, ParValue],
    ) -> dict[str, ParValue]:
        """Parameters merge per key; both sides setting one key differently is a conflict."""
        if _pars_same(ours, theirs) or _pars_same(base, theirs):
            return dict(ours)
        if _pars_same(base, ours):
            return dict(theirs)
        out: dict[str, ParValue] = {}
        for key in sorted(base.keys() | ours.keys() | theirs.keys()):
            value = self.scalar(
                (*path, "pars", key),
                "parameter set differently on both sides",
                base.get(key),
                ours.get(key),
                theirs.get(key),
                _par_same,
                lambda v: v,
            )
            if value is not None:
                out[key] = value
        return out

    def children(
        self,
        path: tuple[str, ...],
        base: Mapping[K, V],
        ours: Mapping[K, V],
        theirs: Mapping[K, V],
        same: Callable[[V | None, V | None], bool],
        both_changed: Callable[[K, V | None, V | None, V | None], V | None],
    ) -> dict[K, V]:
        """Three-way merge of a level's children by key; ``both_changed`` merges one key deeper
        (one of its sides may be None: removed there, changed on the other side)."""
        out: dict[K, V] = {}
        for key in sorted(base.keys() | ours.keys() | theirs.keys()):
            b, o, t = base.get(key), ours.get(key), theirs.get(key)
            if same(o, t) or same(b, t):
                merged = o
            elif same(b, o):
                merged = t
            else:
                merged = both_changed(key, b, o, t)
            if merged is not None:
                out[key] = merged
        return out

    def read_ctype(self, oid: ObjectId | None) -> CtypeTree:
        if oid is None:
            return CtypeTree()
        return self.store.read_as(oid, CtypeTree)

    def read_range(self, ref: RangeRef | None) -> RangeTree | None:
        if ref is None:
            return None
        return self.store.read_as(ref.tree, RangeTree)

    # -- levels ----------------------------------------------------------------------------------
    def version(
        self,
        path: tuple[str, ...],
        base: VersionEntry | None,
        ours: VersionEntry | None,
        theirs: VersionEntry | None,
    ) -> VersionEntry | None:
        """Both sides changed one version: a conflict unless only their parameters differ."""
        if ours is None or theirs is None:
            self.conflict(
                path,
                f"removed on {'ours' if ours is None else 'theirs'}, changed on the other side",
                _entry_id(base),
                _entry_id(ours),
                _entry_id(theirs),
            )
            return self.pick(ours, theirs)
        o_body, t_body = replace(ours, pars={}), replace(theirs, pars={})
        b_body = None if base is None else replace(base, pars={})
        if o_body == t_body or t_body == b_body:
            body = o_body
        elif o_body == b_body:
            body = t_body
        else:
            self.conflict(
                path,
                "version changed differently on both sides "
                f"(ours: {_entry_text(ours)}; theirs: {_entry_text(theirs)})",
                _entry_id(base),
                _entry_id(ours),
                _entry_id(theirs),
            )
            return self.pick(ours, theirs)
        pars = self.pars(path, {} if base is None else base.pars, ours.pars, theirs.pars)
        return replace(body, pars=pars)

    def range(
        self, path: tuple[str, ...], base: RangeTree | None, ours: RangeTree, theirs: RangeTree
    ) -> RangeTree | None:
        b_versions: Mapping[VersionKey, VersionEntry] = {} if base is None else base.versions
        before = len(self.conflicts)
        versions = self.children(
            path,
            b_versions,
            ours.versions,
            theirs.versions,
            _entry_same,
            lambda k, b, o, t: self.version((*path, k), b, o, t),
        )
        in_conflict = {c.path[len(path)] for c in self.conflicts[before:]}
        before = len(self.conflicts)
        b_default = None if base is None else base.default
        default = self.scalar(
            (*path, "default"),
            "default pinned differently on both sides",
            b_default,
            ours.default,
            theirs.default,
            _eq,
            lambda v: v,
        )
        if default is not None and default not in versions:
            # Reported unless a conflict on the default or on that version already says it all.
            report = len(self.conflicts) == before and default not in in_conflict
            default = self.dangling_default(path, default, versions, b_default, ours, theirs, report)
        pars = self.pars(path, {} if base is None else base.pars, ours.pars, theirs.pars)
        if not versions:
            return None  # an empty range means nothing (as in a transaction)
        return RangeTree(ours.begin, ours.end, default, pars, versions)

    def dangling_default(
        self,
        path: tuple[str, ...],
        default: VersionKey,
        versions: dict[VersionKey, VersionEntry],
        base: VersionKey | None,
        ours: RangeTree,
        theirs: RangeTree,
        report: bool,
    ) -> VersionKey | None:
        """One side pinned a version the other removed: a conflict; resolving toward the pinning
        side keeps the version, toward the removing side keeps that side's default."""
        pinner: Side = "ours" if ours.default == default and default in ours.versions else "theirs"
        pinned, other = (ours, theirs) if pinner == "ours" else (theirs, ours)
        if report:
            self.conflict(
                (*path, "default"),
                f"{pinner} pins version {default}, which the other side removed",
                base,
                ours.default,
                theirs.default,
            )
        if self.prefer in (pinner, None) and default in pinned.versions:
            versions[default] = pinned.versions[default]
            return default
        return other.default if other.default in versions else None

    def ctype(
        self, name: str, base: ObjectId | None, ours: ObjectId | None, theirs: ObjectId | None
    ) -> ObjectId | None:
        b, o, t = self.read_ctype(base), self.read_ctype(ours), self.read_ctype(theirs)
        path = (name,)

        def both_changed(
            key: RangeKey, br: RangeRef | None, orf: RangeRef | None, trf: RangeRef | None
        ) -> RangeRef | None:
            some = orf or trf
            if some is None:  # removed on both sides (children() merges that before asking)
                return None
            # a range removed on one side merges as an empty range there (see the module doc)
            empty = RangeTree(some.begin, some.end)
            o_tree, t_tree = self.read_range(orf) or empty, self.read_range(trf) or empty
            merged = self.range((name, key), self.read_range(br), o_tree, t_tree)
            if merged is None:
                return None
            known = [r.tree for r in (br, orf, trf) if r is not None]
            return RangeRef(merged.begin, merged.end, self.store_new(merged, known))

        ranges = self.children(
            path,
            b.ranges,
            o.ranges,
            t.ranges,
            _eq,
            both_changed,
        )
        pars = self.pars(path, b.pars, o.pars, t.pars)
        if not ranges and not pars:
            return None  # pruned, as a transaction does with an empty ctype
        return self.store_new(CtypeTree(pars, ranges), (base, ours, theirs))

    def root(self, base: RootTree | None, ours: RootTree, theirs: RootTree) -> RootTree:
        b = base or RootTree(ours.dettype, ours.detid, min(ours.created, theirs.created))
        if ours.detname != theirs.detname:
            self.conflict(
                (ROOT, "detname"),
                "these are two different detectors",
                b.detname,
                ours.detname,
                theirs.detname,
            )
        ident = self.pick(ours, theirs)
        links = {
            name: self.scalar(
                (ROOT, "links", name),
                f"{name} set differently on both sides",
                getattr(b, name),
                getattr(ours, name),
                getattr(theirs, name),
                _eq,
                lambda v: v,
            )
            for name in ("predecessor", "successor")
        }
        ctypes = self.children(
            (),
            b.ctypes,
            ours.ctypes,
            theirs.ctypes,
            _eq,
            lambda k, bt, ot, tt: self.ctype(k, bt, ot, tt),
        )
        return RootTree(
            ident.dettype,
            ident.detid,
            # creation time never changes after ``create``; unrelated histories keep the earlier one
            min(ours.created, theirs.created),
            links["predecessor"],
            links["successor"],
            self.pars((ROOT,), b.pars, ours.pars, theirs.pars),
            ctypes,
        )


def merge_trees(
    store: ObjectStore,
    base: RootTree | None,
    ours: RootTree,
    theirs: RootTree,
    *,
    prefer: Side | None = None,
) -> MergeResult:
    """Merge two detector trees three-way against ``base`` (None: unrelated histories).

    Every tree the three roots name must be readable from ``store``. With conflicts and no
    ``prefer`` the returned root is a placeholder that must not be committed; with ``prefer`` each
    conflict is resolved toward that side (at the finest level: the rest still merges) and listed.
    """
    ours_id, theirs_id = object_id(ours), object_id(theirs)
    base_id = None if base is None else object_id(base)
    if ours_id == theirs_id or theirs_id == base_id:
        return MergeResult(ours, [], [])
    if ours_id == base_id:
        return MergeResult(theirs, [], [])
    merger = _Merger(store, prefer)
    root = merger.root(base, ours, theirs)
    return MergeResult(root, merger.new_objects, merger.conflicts)


def _show(path: tuple[str, ...], value: Printable) -> str:
    if value is None:
        return "(not pinned: the latest version counts)" if path[-1] == "default" else "(absent)"
    if "pars" in path:
        return repr(value)  # so 1, 1.0, True and "1" are told apart
    return str(value) or "(none)"


def describe_conflicts(detname: str, conflicts: list[Conflict], *, remote: str = "origin") -> str:
    """A report for users: each conflicting entry with its three values, and the ways out.

    A default pinned differently on both sides can also be settled entry by entry: pinning the
    remote's version here (``dcsync default DET CTYPE REMOTE:VERSION``, which takes that version
    from ``remotes/REMOTE`` into HEAD) makes both sides agree, and the next pull merges.
    """
    if not conflicts:
        return f"{detname}: no conflicts"
    resolved = {c.resolved for c in conflicts} - {None}
    n = len(conflicts)
    noun = "conflict" if n == 1 else "conflicts"
    if resolved:
        head = f"{detname}: {n} {noun}, resolved toward {' and '.join(sorted(str(s) for s in resolved))}:"
    else:
        head = f"{detname}: {n} {noun}; both sides changed the same entries differently:"
    lines = [head]
    for c in sorted(conflicts, key=lambda c: c.path):
        lines.append(f"  {'/'.join(c.path)}: {c.what}")
        lines.append(f"      base:   {_show(c.path, c.base)}")
        lines.append(f"      ours:   {_show(c.path, c.ours)}")
        lines.append(f"      theirs: {_show(c.path, c.theirs)}")
    if not resolved:
        lines.append("Nothing was changed. To go on, use --ours or --theirs (each conflict goes to that")
        lines.append("side, everything else still merges), or fix one side and pull again.")
        takes = [
            f"  dcsync default {detname} {c.path[0]} {remote}:{c.theirs} --range {c.path[1]}"
            for c in sorted(conflicts, key=lambda c: c.path)
            if len(c.path) == 3 and c.path[2] == "default" and c.path[0] != ROOT and c.theirs is not None
        ]
        if takes:
            lines.append(f"To keep {remote}'s default of a range, pin its version here, then pull again:")
            lines.extend(takes)
    return "\n".join(lines)


def conflicts_json(conflicts: list[Conflict]) -> list[dict[str, Any]]:
    """Conflicts as scripts see them (``--json`` errors): the path and the three values as data."""

    def value(v: Printable) -> Printable:
        return repr(v) if isinstance(v, float) and not math.isfinite(v) else v  # NaN is not JSON

    return [
        {
            "path": list(c.path),
            "what": c.what,
            "base": value(c.base),
            "ours": value(c.ours),
            "theirs": value(c.theirs),
            **({"resolved": c.resolved} if c.resolved else {}),
        }
        for c in sorted(conflicts, key=lambda c: c.path)
    ]
