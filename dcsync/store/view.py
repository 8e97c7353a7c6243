"""The seed-schema view: HEAD laid out as plain HDF5 groups, so h5py, h5ls and HDFView users read
constants without dcsync.

Layout (all times int64 ns since the epoch, UTC; ``TSEND_OPEN`` = 2**63-1 marks an open end)::

    /                              attrs: dettype detid detname tscfile predecessor successor
                                          dictpars history
    /<ctype>                       attrs: ctype dictpars history
    /<ctype>/<range>               attrs: tsbegin tsend defaultv effectivev versions tsvers
                                          dictpars history          (range = "<begin>-<end|end>" s)
    /<ctype>/<range>/<version>     attrs: version tsprod author dictpars history
    /<ctype>/<range>/<version>/calib   a hard link to the payload object (not a copy)

``dictpars`` and ``history`` are JSON text. ``defaultv`` is the pinned default ("" when the most
recently produced version counts), ``effectivev`` the version a lookup returns, ``versions`` the
keys oldest first and ``tsvers`` their production times. A level's ``history`` lists the commits
that changed that level itself (its parameters, default, or which children it has).

The view is a cache of HEAD, updated in the same crash-safe transaction that moves HEAD, commit by
commit along the first-parent chain so each level's history is complete; ``view`` on ``/.dcsync``
names the commit it shows and ``verify`` checks it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dcsync.hashing import ObjectId
from dcsync.objects import Commit, CtypeTree, RangeTree, RootTree, VersionEntry

if TYPE_CHECKING:
    from dcsync.store.base import ObjectStore

TSEND_OPEN = np.iinfo(np.int64).max
META_GROUP = ".dcsync"
_MAX_CATCHUP = 10_000


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _history_entry(commit_id: ObjectId, commit: Commit) -> dict[str, Any]:
    return {
        "commit": commit_id,
        "time": commit.time,
        "author": commit.author,
        "host": commit.host,
        "message": commit.message,
    }


def _append_history(group: h5py.Group, entry: Mapping[str, Any]) -> None:
    history = json.loads(group.attrs.get("history", "[]"))
    history.append(dict(entry))
    group.attrs["history"] = _json(history)


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=h5py.string_dtype())


def _delete_children(group: h5py.Group, keep: set[str]) -> None:
    for name in [n for n in group if n not in keep]:
        del group[name]


def update(f: h5py.File, store: ObjectStore, old_head: ObjectId | None, new_head: ObjectId | None) -> None:
    """Bring the view from the commit it shows to ``new_head``."""
    shown = ObjectId(str(f[META_GROUP].attrs.get("view", ""))) or None
    chain = _first_parent_chain(store, new_head, stop=shown)
    if chain is None:  # not a descendant of what is shown (a reset or a fresh rebuild): start over
        _clear(f)
        shown = None
        chain = _first_parent_chain(store, new_head, stop=None) or []
    previous: RootTree | None = _root_of(store, shown)
    for commit_id in reversed(chain):
        commit = store.read_commit(commit_id)
        tree = store.read_as(commit.tree, RootTree)
        _apply_root(f, store, previous, tree, _history_entry(commit_id, commit))
        previous = tree
    if new_head is None:
        _clear(f)
    f[META_GROUP].attrs["view"] = new_head or ""


def _first_parent_chain(
    store: ObjectStore, head: ObjectId | None, stop: ObjectId | None
) -> list[ObjectId] | None:
    """Commits from head back to (not including) stop; None when stop is not on the chain."""
    chain: list[ObjectId] = []
    current = head
    while current is not None and current != stop:
        chain.append(current)
        if len(chain) > _MAX_CATCHUP and stop is not None:
            return None
        parents = store.read_commit(current).parents
        current = parents[0] if parents else None
    if current != stop:
        return None
    return chain


def _root_of(store: ObjectStore, commit_id: ObjectId | None) -> RootTree | None:
    if commit_id is None:
        return None
    return store.read_as(store.read_commit(commit_id).tree, RootTree)


def _clear(f: h5py.File) -> None:
    _delete_children(f, keep={META_GROUP})
    for name in list(f.attrs):
        del f.attrs[name]


def _apply_root(
    f: h5py.File, store: ObjectStore, old: RootTree | None, new: RootTree, entry: Mapping[str, Any]
) -> None:
    a = f.attrs
    a["dettype"], a["detid"], a["detname"] = new.dettype, new.detid, new.detname
    a["tscfile"] = np.int64(new.created)
    a["predecessor"], a["successor"] = new.predecessor, new.successor
    a["dictpars"] = _json(dict(new.pars))
    old_ctypes = dict(old.ctypes) if old else {}
    if old is None or (old.predecessor, old.successor, dict(old.pars), set(old_ctypes)) != (
        new.predecessor,
        new.successor,
        dict(new.pars),
        set(new.ctypes),
    ):
        _append_history(f, entry)
    _delete_children(f, keep=set(new.ctypes) | {META_GROUP})
    for name, tid in new.ctypes.items():
        if old_ctypes.get(name) == tid and name in f:
            continue
        ctype = store.read_as(tid, CtypeTree)
        prev = store.read_as(old_ctypes[name], CtypeTree) if name in old_ctypes and name in f else None
        _apply_ctype(f.require_group(name), store, name, prev, ctype, entry)


def _apply_ctype(
    g: h5py.Group,
    store: ObjectStore,
    name: str,
    old: CtypeTree | None,
    new: CtypeTree,
    entry: Mapping[str, Any],
) -> None:
    g.attrs["ctype"] = name
    g.attrs["dictpars"] = _json(dict(new.pars))
    old_ranges = dict(old.ranges) if old else {}
    if old is None or (dict(old.pars), set(old_ranges)) != (dict(new.pars), set(new.ranges)):
        _append_history(g, entry)
    _delete_children(g, keep=set(new.ranges))
    for key, ref in new.ranges.items():
        prev_ref = old_ranges.get(key)
        if prev_ref is not None and prev_ref.tree == ref.tree and key in g:
            continue
        rng = store.read_as(ref.tree, RangeTree)
        prev = store.read_as(prev_ref.tree, RangeTree) if prev_ref is not None and key in g else None
        _apply_range(g.require_group(key), prev, rng, entry)


def _apply_range(g: h5py.Group, old: RangeTree | None, new: RangeTree, entry: Mapping[str, Any]) -> None:
    order = new.ordered()
    a = g.attrs
    a["tsbegin"] = np.int64(new.begin)
    a["tsend"] = np.int64(TSEND_OPEN if new.end is None else new.end)
    a["defaultv"] = new.default or ""
    a["effectivev"] = new.effective() or ""
    a["versions"] = _strings(list(order))
    a["tsvers"] = np.array([new.versions[k].tsprod for k in order], dtype=np.int64)
    a["dictpars"] = _json(dict(new.pars))
    old_versions = dict(old.versions) if old else {}
    if old is None or (old.default, dict(old.pars), set(old_versions)) != (
        new.default,
        dict(new.pars),
        set(new.versions),
    ):
        _append_history(g, entry)
    _delete_children(g, keep=set(new.versions))
    for key, version in new.versions.items():
        if old_versions.get(key) == version and key in g:
            continue
        _apply_version(g.require_group(key), key, version, entry)


def _apply_version(g: h5py.Group, key: str, version: VersionEntry, entry: Mapping[str, Any]) -> None:
    a = g.attrs
    a["version"] = key
    a["tsprod"] = np.int64(version.tsprod)
    a["author"] = version.author
    a["dictpars"] = _json(dict(version.pars))
    if version.origin:
        a["origin"] = _json(dict(version.origin))
    _append_history(g, entry)
    if "calib" in g:
        del g["calib"]
    target = g.file.get(f"/{META_GROUP}/objects/{version.obj[:2]}/{version.obj[2:]}")
    if target is None:  # a partial clone did not fetch this payload
        a["fetched"] = False
        return
    a["fetched"] = True
    g["calib"] = target


def check(f: h5py.File, store: ObjectStore, head: ObjectId | None) -> list[str]:
    """Problems between the view and HEAD (for ``verify``); empty when they agree."""
    problems: list[str] = []
    shown = str(f[META_GROUP].attrs.get("view", "")) or None
    if shown != head:
        problems.append(f"view shows commit {shown or 'nothing'} but HEAD is {head or 'nothing'}")
        return problems
    root = _root_of(store, head)
    if root is None:
        return problems
    if set(f) - {META_GROUP} != set(root.ctypes):
        problems.append(f"view ctypes {sorted(set(f) - {META_GROUP})} differ from HEAD {sorted(root.ctypes)}")
    for name, tid in root.ctypes.items():
        ctype = store.read_as(tid, CtypeTree)
        for key, ref in ctype.ranges.items():
            rng = store.read_as(ref.tree, RangeTree)
            for vkey, version in rng.versions.items():
                path = f"/{name}/{key}/{vkey}/calib"
                link = f.get(path)
                target = f.get(f"/{META_GROUP}/objects/{version.obj[:2]}/{version.obj[2:]}")
                if link is None and target is None:
                    continue  # not fetched (partial clone); verify reports it if that is wrong
                if link is None or target is None or link.id != target.id:
                    problems.append(f"view entry {path} does not link to object {version.obj}")
    return problems


def link_payloads(f: h5py.File, store: ObjectStore, oids: set[ObjectId]) -> None:
    """Link payloads that arrived after the view showed their versions unfetched.

    A partial clone's ``--since`` keeps only what lookups return, and that set moves: a rollback
    that pins an older version again brings its payload later, while the version's entry in the
    view (unchanged, so never rewritten) still has no ``calib``. Walks HEAD's trees once.
    """
    root = _root_of(store, ObjectId(str(f[META_GROUP].attrs.get("view", ""))) or None)
    if root is None or not oids:
        return
    for name, tid in root.ctypes.items():
        ctype = store.read_as(tid, CtypeTree)
        for key, ref in ctype.ranges.items():
            rng = store.read_as(ref.tree, RangeTree)
            for vkey, version in rng.versions.items():
                group = f.get(f"/{name}/{key}/{vkey}") if version.obj in oids else None
                if group is None or "calib" in group:
                    continue
                target = f.get(f"/{META_GROUP}/objects/{version.obj[:2]}/{version.obj[2:]}")
                if target is not None:
                    group["calib"] = target
                    group.attrs["fetched"] = True
