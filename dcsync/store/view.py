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

The writer only ever writes or deletes inside the groups of the view: every path it touches comes
from :func:`level_path`, which resolves the joined names as HDF5 would and refuses any that land
anywhere else (``/.dcsync``, the root, another ctype's group). Names are checked when trees are
received and committed too; this holds even if a bad name got past those checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from dcsync.errors import CorruptObject
from dcsync.model.hashing import ObjectId, is_object_id
from dcsync.model.objects import Commit, CtypeTree, RangeTree, RootTree, VersionEntry

if TYPE_CHECKING:
    from dcsync.store.base import ObjectStore

TSEND_OPEN = np.iinfo(np.int64).max
META_GROUP = ".dcsync"
_MAX_CATCHUP = 10_000
_LEVELS = ("ctype", "range", "version")


def level_path(ctype: str, range_key: str | None = None, version: str | None = None) -> str:
    """The HDF5 path of a ctype's, range's or version's group in the view.

    Each name is resolved below its parent's group the way HDF5 resolves a name there (one that
    begins with ``/`` starts again at the root; empty components and ``.`` collapse; ``..`` is
    taken as the parent, to be safe), and the result must be exactly one component per name
    below the root, not under ``/.dcsync``: a name holding ``/``, or being ``.``, ``..`` or
    empty, would put the level somewhere else. Anything else is :class:`CorruptObject` (the tree
    naming it breaks the rules), and nothing is written.
    """
    names = (
        [ctype]
        if range_key is None
        else [ctype, range_key]
        if version is None
        else [ctype, range_key, version]
    )
    level = _LEVELS[len(names) - 1]
    if not all(isinstance(name, str) for name in names):
        raise CorruptObject(f"HEAD names a {level} by a {type(names[-1]).__name__}, not a string")
    resolved: list[str] = []
    for name in names:
        if name.startswith("/"):
            resolved = []
        for part in name.split("/"):
            if part == "..":
                resolved = resolved[:-1]
            elif part not in ("", "."):
                resolved.append(part)
    path = "/" + "/".join(resolved)
    if resolved != names or any("\0" in name for name in names) or resolved[0] == META_GROUP:
        parent = "/" + "/".join(names[:-1])
        what = (
            "the repository's own metadata"
            if resolved[:1] == [META_GROUP]
            else "not a group of its own there"
        )
        raise CorruptObject(
            f"HEAD names {level} {names[-1]!r} in {parent!r}, which the view cannot hold: below "
            f"{parent!r} it resolves to {path!r}, {what}; nothing was written"
        )
    return "/" + "/".join(names)


def _object_path(oid: ObjectId, version: str) -> str:
    """Where a version's payload sits; an entry whose object is not an id is refused, so a link
    into the view never points anywhere but the object store."""
    if not is_object_id(oid):
        raise CorruptObject(
            f"version {version!r} of HEAD names object {str(oid)[:80]!r}, which is not an object id"
        )
    return f"/{META_GROUP}/objects/{oid[:2]}/{oid[2:]}"


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
    paths = {name: level_path(name) for name in new.ctypes}  # every name checked before any write
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
        if old_ctypes.get(name) == tid and paths[name] in f:
            continue
        ctype = store.read_as(tid, CtypeTree)
        in_view = name in old_ctypes and paths[name] in f
        prev = store.read_as(old_ctypes[name], CtypeTree) if in_view else None
        _apply_ctype(f, store, name, prev, ctype, entry)


def _apply_ctype(
    f: h5py.File,
    store: ObjectStore,
    name: str,
    old: CtypeTree | None,
    new: CtypeTree,
    entry: Mapping[str, Any],
) -> None:
    paths = {key: level_path(name, key) for key in new.ranges}
    g = f.require_group(level_path(name))
    g.attrs["ctype"] = name
    g.attrs["dictpars"] = _json(dict(new.pars))
    old_ranges = dict(old.ranges) if old else {}
    if old is None or (dict(old.pars), set(old_ranges)) != (dict(new.pars), set(new.ranges)):
        _append_history(g, entry)
    _delete_children(g, keep=set(new.ranges))
    for key, ref in new.ranges.items():
        prev_ref = old_ranges.get(key)
        if prev_ref is not None and prev_ref.tree == ref.tree and paths[key] in f:
            continue
        rng = store.read_as(ref.tree, RangeTree)
        in_view = prev_ref is not None and paths[key] in f
        prev = store.read_as(prev_ref.tree, RangeTree) if in_view and prev_ref is not None else None
        _apply_range(f, name, key, prev, rng, entry)


def _apply_range(
    f: h5py.File, ctype: str, key: str, old: RangeTree | None, new: RangeTree, entry: Mapping[str, Any]
) -> None:
    paths = {vkey: level_path(ctype, key, vkey) for vkey in new.versions}
    objects = {vkey: _object_path(version.obj, vkey) for vkey, version in new.versions.items()}
    order = new.ordered()
    g = f.require_group(level_path(ctype, key))
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
    for vkey, version in new.versions.items():
        if old_versions.get(vkey) == version and paths[vkey] in f:
            continue
        _apply_version(f.require_group(paths[vkey]), vkey, version, objects[vkey], entry)


def _apply_version(
    g: h5py.Group, key: str, version: VersionEntry, object_path: str, entry: Mapping[str, Any]
) -> None:
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
    target = g.file.get(object_path)
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
                try:
                    path = f"{level_path(name, key, vkey)}/calib"
                    target = f.get(_object_path(version.obj, vkey))
                except CorruptObject as exc:  # a name no view can hold: reported, never looked up
                    problems.append(exc.message)
                    continue
                link = f.get(path)
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
                if version.obj not in oids:
                    continue
                group = f.get(level_path(name, key, vkey))
                if group is None or "calib" in group:
                    continue
                target = f.get(_object_path(version.obj, vkey))
                if target is not None:
                    group["calib"] = target
                    group.attrs["fetched"] = True
