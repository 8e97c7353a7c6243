"""What differs between two detector trees, possibly read from two different stores.

Ids are content hashes, so equal ids mean equal subtrees even across stores (a laptop's copy and
the experiment's): :func:`diff_roots` skips them unopened and costs O(changed path). Each
difference is one :class:`Change`; a level's own attributes (a range's pinned default, any level's
parameters, the detector's links) are compared with "absent" meaning "unpinned, no parameters", so
an added range also reports its pinned default and parameters, and a removed one their loss.

Every stored field that can change an answer of ``get`` or ``ls`` is compared, because the ACL and
the hooks judge exactly this list: the detector's identity (``detector``), a ctype or a range
appearing or going (``ctype``, ``range``: an empty one has no versions to report it), a range's
bounds as lookups see them (in its ctype tree) and as its own tree records them (``range``), as
well as versions, defaults, parameters and links.
:func:`value_stats` compares two payloads in bounded memory; :func:`summarize` counts for ``--stat``.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from dcsync.model import wire
from dcsync.model.hashing import ObjectId, dtype_string
from dcsync.model.names import RangeKey, VersionKey
from dcsync.model.objects import CtypeTree, ParValue, Payload, RangeRef, RangeTree, RootTree, VersionEntry
from dcsync.model.times import format_time
from dcsync.store.base import ObjectStore

__all__ = [
    "KINDS", "Change", "ChangeKind", "Scope", "diff_roots", "in_scope", "readable", "summarize",
    "value_stats",
]  # fmt: skip

ChangeKind = Literal["added", "removed", "changed", "default", "pars", "links", "range", "ctype", "detector"]
KINDS: tuple[ChangeKind, ...] = (
    "added", "removed", "changed", "default", "pars", "links", "range", "ctype", "detector",
)  # fmt: skip
CHUNK_ELEMENTS = 1 << 18  # 2 MiB of float64 per temporary per step, whatever the payload's size


class Change(NamedTuple):
    """One difference, from old (a) to new (b).

    ``ctype`` is None for the detector level (``detector``, ``links`` and the root's ``pars``);
    ``range`` and ``version`` name the level a ``pars``, ``default`` or ``range`` change is on.
    ``old``/``new`` are :class:`VersionEntry` (added/removed/changed), a version key (default), a
    parameter dict (pars), a ``{"predecessor", "successor"}`` dict (links), a ``{"begin", "end"}``
    dict of ns (range: the bounds lookups use, with ``tree_begin``/``tree_end`` added where the
    range's own tree records others), ``{"ranges": n}`` (ctype), ``{"dettype", "detid",
    "created"}`` (detector), or None where absent or unpinned.
    """

    detname: str
    ctype: str | None
    range: RangeKey | None
    version: VersionKey | None
    kind: ChangeKind
    old: Any
    new: Any


def _end_rank(end: int | None) -> int:
    return 2**63 if end is None else end


class _Side:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def ctype(self, oid: ObjectId | None) -> CtypeTree:
        if oid is None:
            return CtypeTree()
        return self.store.read_as(oid, CtypeTree)

    def range(self, ref: RangeRef | None) -> RangeTree | None:
        if ref is None:
            return None
        return self.store.read_as(ref.tree, RangeTree)


_NO_LINKS = {"predecessor": "", "successor": ""}


def _identity(root: RootTree | None) -> dict[str, Any] | None:
    return None if root is None else {"dettype": root.dettype, "detid": root.detid, "created": root.created}


def _bounds(ref: RangeRef | None, tree: RangeTree | None) -> dict[str, int | None] | None:
    """A range's bounds as lookups see them, and its tree's own where they differ."""
    if ref is None:
        return None
    out: dict[str, int | None] = {"begin": ref.begin, "end": ref.end}
    if tree is not None and (tree.begin, tree.end) != (ref.begin, ref.end):
        out.update(tree_begin=tree.begin, tree_end=tree.end)
    return out


def _links(root: RootTree | None) -> dict[str, str] | None:
    return None if root is None else {"predecessor": root.predecessor, "successor": root.successor}


def _pars(x: Mapping[str, ParValue]) -> dict[str, ParValue]:
    return dict(sorted(x.items()))


def _pars_differ(x: Mapping[str, ParValue], y: Mapping[str, ParValue]) -> bool:
    # 1, 1.0 and True are different stored values; compare them as stored
    return x.keys() != y.keys() or any(type(x[k]) is not type(y[k]) or x[k] != y[k] for k in x)


def diff_roots(
    store_a: ObjectStore,
    root_a: RootTree | None,
    store_b: ObjectStore,
    root_b: RootTree | None,
    *,
    ctypes: set[str] | None = None,
) -> list[Change]:
    """Every difference from ``root_a`` (old) to ``root_b`` (new), in ctype/range/version order.

    A None root is a detector absent on that side. ``ctypes`` limits the diff to those ctypes (and
    then leaves out the detector level).
    """
    some = root_b if root_b is not None else root_a
    if some is None:
        return []
    detname = some.detname
    a, b = _Side(store_a), _Side(store_b)
    out: list[Change] = []
    ra_ctypes: Mapping[str, ObjectId] = {} if root_a is None else root_a.ctypes
    rb_ctypes: Mapping[str, ObjectId] = {} if root_b is None else root_b.ctypes
    if ctypes is None:
        if _identity(root_a) != _identity(root_b):
            out.append(Change(detname, None, None, None, "detector", _identity(root_a), _identity(root_b)))
        links_a, links_b = _links(root_a), _links(root_b)
        if (links_a or _NO_LINKS) != (links_b or _NO_LINKS):
            out.append(Change(detname, None, None, None, "links", links_a, links_b))
        pars_a: Mapping[str, ParValue] = {} if root_a is None else root_a.pars
        pars_b: Mapping[str, ParValue] = {} if root_b is None else root_b.pars
        if _pars_differ(pars_a, pars_b):
            out.append(Change(detname, None, None, None, "pars", _pars(pars_a), _pars(pars_b)))
    names = sorted(ra_ctypes.keys() | rb_ctypes.keys())
    for name in names:
        if ctypes is not None and name not in ctypes:
            continue
        ida, idb = ra_ctypes.get(name), rb_ctypes.get(name)
        if ida == idb:
            continue
        ct_a, ct_b = a.ctype(ida), b.ctype(idb)
        if (ida is None) != (idb is None):
            count_a = None if ida is None else {"ranges": len(ct_a.ranges)}
            count_b = None if idb is None else {"ranges": len(ct_b.ranges)}
            out.append(Change(detname, name, None, None, "ctype", count_a, count_b))
        if _pars_differ(ct_a.pars, ct_b.pars):
            out.append(Change(detname, name, None, None, "pars", _pars(ct_a.pars), _pars(ct_b.pars)))
        refs = {**ct_a.ranges, **ct_b.ranges}
        for rk in sorted(refs, key=lambda k: (refs[k].begin, _end_rank(refs[k].end), k)):
            ref_a, ref_b = ct_a.ranges.get(rk), ct_b.ranges.get(rk)
            if ref_a == ref_b:
                continue
            tree_a, tree_b = a.range(ref_a), b.range(ref_b)
            bounds_a, bounds_b = _bounds(ref_a, tree_a), _bounds(ref_b, tree_b)
            if bounds_a != bounds_b:
                out.append(Change(detname, name, rk, None, "range", bounds_a, bounds_b))
            out.extend(_diff_range(detname, name, rk, tree_a, tree_b))
    return out


def _diff_range(
    detname: str, ctype: str, rk: RangeKey, old: RangeTree | None, new: RangeTree | None
) -> list[Change]:
    out: list[Change] = []
    old_default = None if old is None else old.default
    new_default = None if new is None else new.default
    if old_default != new_default:
        out.append(Change(detname, ctype, rk, None, "default", old_default, new_default))
    old_pars: Mapping[str, ParValue] = {} if old is None else old.pars
    new_pars: Mapping[str, ParValue] = {} if new is None else new.pars
    if _pars_differ(old_pars, new_pars):
        out.append(Change(detname, ctype, rk, None, "pars", _pars(old_pars), _pars(new_pars)))
    va: Mapping[VersionKey, VersionEntry] = {} if old is None else old.versions
    vb: Mapping[VersionKey, VersionEntry] = {} if new is None else new.versions
    entries = {**va, **vb}
    for vk in sorted(entries, key=lambda k: (entries[k].tsprod, k)):
        ea, eb = va.get(vk), vb.get(vk)
        if ea is None:
            out.append(Change(detname, ctype, rk, vk, "added", None, eb))
        elif eb is None:
            out.append(Change(detname, ctype, rk, vk, "removed", ea, None))
        elif _stored_form(ea) == _stored_form(eb):
            continue
        elif _same_but_pars(ea, eb):
            out.append(Change(detname, ctype, rk, vk, "pars", _pars(ea.pars), _pars(eb.pars)))
        else:
            out.append(Change(detname, ctype, rk, vk, "changed", ea, eb))
    return out


def _stored_form(entry: VersionEntry, *, pars: bool = True) -> bytes:
    """An entry as stored (1, 1.0 and True differ there, as in parameters), optionally without
    its parameters."""
    fields = entry.to_wire()
    if not pars:
        fields["p"] = {}
    return wire.pack(fields)


def _same_but_pars(x: VersionEntry, y: VersionEntry) -> bool:
    return _stored_form(x, pars=False) == _stored_form(y, pars=False)


@dataclass(frozen=True)
class Scope:
    """What a partial clone holds, so that a diff against it compares only that.

    A partial clone has the detectors its globs match (and any it holds anyway), and of those the
    payloads of its ctypes that lookups at or after ``since`` return. Outside that it either has
    nothing (other detectors: every one would read as "removed") or what it has is not what it
    follows, so a diff leaves it out and says how much it left out.
    """

    source: str  # whose filter: "origin" (a remote), "." (a workspace cloned with it)
    detectors: tuple[str, ...] = ()
    ctypes: tuple[str, ...] = ()
    since: int | None = None
    held: frozenset[str] = frozenset()  # detectors the partial workspace holds: always compared

    def covers_detector(self, det: str) -> bool:
        return (
            not self.detectors
            or det in self.held
            or any(fnmatch.fnmatchcase(det, glob) for glob in self.detectors)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "detectors": list(self.detectors),
            "ctypes": list(self.ctypes),
            "since": None if self.since is None else format_time(self.since),
        }

    def describe(self) -> str:
        parts = [
            *([f"detectors {' '.join(self.detectors)}"] if self.detectors else []),
            *([f"ctypes {' '.join(self.ctypes)}"] if self.ctypes else []),
            *([f"since {format_time(self.since)}"] if self.since is not None else []),
        ]
        return f"{self.source} ({', '.join(parts)})"


def in_scope(
    scope: Scope,
    change: Change,
    store_a: ObjectStore,
    root_a: RootTree | None,
    store_b: ObjectStore,
    root_b: RootTree | None,
) -> bool:
    """Whether ``scope`` covers ``change``: the detector level always (its detector is covered),
    a ctype of the filter, and with ``since`` a range that wins a lookup at or after it on
    either side (a range no such lookup reaches is one the partial clone never fetches)."""
    if change.ctype is None:
        return True
    if scope.ctypes and change.ctype not in scope.ctypes:
        return False
    if scope.since is None or change.range is None:
        return True
    return any(
        root is not None
        and change.ctype in root.ctypes
        and change.range in _Side(store).ctype(root.ctypes[change.ctype]).winners_from(scope.since)
        for store, root in ((store_a, root_a), (store_b, root_b))
    )


def readable(value: Any) -> Any:
    """A change's side for JSON (hooks, ``diff --json``): the times of a range's or detector's
    fields as ISO 8601 like every other time there; anything else as it is."""
    if not isinstance(value, dict):
        return value
    times = {"begin", "end", "tree_begin", "tree_end", "created"}
    return {k: format_time(v) if k in times and isinstance(v, int) else v for k, v in value.items()}


def summarize(changes: list[Change]) -> dict[str, int]:
    """How many changes of each kind (every kind present, in a fixed order), for ``--stat``."""
    counts: dict[str, int] = dict.fromkeys(KINDS, 0)
    for change in changes:
        counts[change.kind] += 1
    return counts


# -- payload values ------------------------------------------------------------------------------


def _describe(value: Payload) -> tuple[str, tuple[int, ...]]:
    if isinstance(value, str):
        return "text", (len(value.splitlines()),)
    arr = np.asarray(value)
    return dtype_string(arr.dtype), tuple(arr.shape)


def value_stats(old: Payload, new: Payload) -> dict[str, Any]:
    """How two payloads differ: dtypes, shapes, and (when comparable) the size of the change.

    Arrays of one shape are comparable whatever their dtypes; the difference ``new - old`` is taken
    in float64 (complex128 for complex input) one chunk of the flattened arrays at a time, so a
    200 MB payload needs only a few MB more. ``max_abs_diff`` and ``mean_diff`` (signed, new - old)
    skip elements whose difference is not a finite number (NaN or inf on a side: the non-finite
    counts report those, and JSON could not carry them) and are None when no element has one;
    ``changed_elements`` counts unequal stored values exactly (NaN equals NaN here), so it can see
    an int64 change that float64 rounds to a difference of 0. ``nonfinite_old``/``nonfinite_new``
    count NaN and ±inf elements of each array (in the same pass when the shapes match). Text is
    compared line by line: ``changed_lines`` counts lines replaced, inserted or deleted.
    """
    dtype_old, shape_old = _describe(old)
    dtype_new, shape_new = _describe(new)
    stats: dict[str, Any] = {
        "dtype_old": dtype_old,
        "dtype_new": dtype_new,
        "shape_old": shape_old,
        "shape_new": shape_new,
        "comparable": False,
        "max_abs_diff": None,
        "mean_diff": None,
        "changed_elements": None,
        "changed_lines": None,
        "nonfinite_old": None if isinstance(old, str) else 0,
        "nonfinite_new": None if isinstance(new, str) else 0,
    }
    if isinstance(old, str) or isinstance(new, str):
        if isinstance(old, str) and isinstance(new, str):
            stats["comparable"] = True
            stats["changed_lines"] = _changed_lines(old, new)
        if not isinstance(old, str):
            stats["nonfinite_old"] = _nonfinite(np.asarray(old))
        if not isinstance(new, str):
            stats["nonfinite_new"] = _nonfinite(np.asarray(new))
        return stats
    a, b = np.asarray(old), np.asarray(new)
    if a.shape != b.shape:
        stats["nonfinite_old"], stats["nonfinite_new"] = _nonfinite(a), _nonfinite(b)
        return stats
    stats["comparable"] = True
    stats.update(_array_diff(a, b))
    return stats


def _changed_lines(old: str, new: str) -> int:
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def _flat(arr: np.ndarray) -> np.ndarray:
    """A 1-d view (a copy only for non-contiguous input)."""
    return arr.reshape(-1)


def _count_nonfinite(chunk: np.ndarray) -> int:
    if chunk.dtype.kind not in "fc":
        return 0  # integers and bools are always finite
    return int(chunk.size - np.count_nonzero(np.isfinite(chunk)))


def _nonfinite(arr: np.ndarray) -> int:
    """NaN and ±inf elements, one chunk at a time (no full-size temporary)."""
    flat = _flat(arr)
    return sum(_count_nonfinite(flat[i : i + CHUNK_ELEMENTS]) for i in range(0, flat.size, CHUNK_ELEMENTS))


def _array_diff(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    complex_ = a.dtype.kind == "c" or b.dtype.kind == "c"
    work = np.complex128 if complex_ else np.float64
    fa, fb = _flat(a), _flat(b)
    nonfinite_a = nonfinite_b = 0
    changed = 0
    defined = 0
    max_abs = 0.0
    total: complex | float = 0.0
    for start in range(0, fa.size, CHUNK_ELEMENTS):
        ca, cb = fa[start : start + CHUNK_ELEMENTS], fb[start : start + CHUNK_ELEMENTS]
        nonfinite_a += _count_nonfinite(ca)
        nonfinite_b += _count_nonfinite(cb)
        # equality on the stored values (numpy promotes exactly where float64 would round int64)
        equal = ca == cb
        if ca.dtype.kind in "fc" and cb.dtype.kind in "fc":
            equal |= np.isnan(ca) & np.isnan(cb)
        changed += int(ca.size - np.count_nonzero(equal))
        d = cb.astype(work)
        d -= ca
        ok = np.isfinite(d)
        n = int(np.count_nonzero(ok))
        if n < d.size:
            d = d[ok]
        if n:
            defined += n
            total += complex(d.sum()) if complex_ else float(d.sum())
            max_abs = max(max_abs, float(np.max(np.abs(d) if complex_ else np.abs(d, out=d))))
        del d, ok
    counts = {"changed_elements": changed, "nonfinite_old": nonfinite_a, "nonfinite_new": nonfinite_b}
    if not defined:
        return {"max_abs_diff": None, "mean_diff": None, **counts}
    return {"max_abs_diff": max_abs, "mean_diff": total / defined, **counts}
