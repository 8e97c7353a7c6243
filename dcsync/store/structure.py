"""What a repository file may hold: nothing but what dcsync writes, with every size bounded, checked
through HDF5's low-level API before a byte of data is read.

A whole file handed over by a server (``dcsync.sync.wholefile``), and any local file ``verify`` looks at,
must have exactly this shape (``dcsync.store.hdf5`` and ``dcsync.store.view`` write it)::

    /                                   group; the view's root attributes; /.dcsync and ctype groups
    /.dcsync                            group; attrs format, hash, refs, view; objects and log only
    /.dcsync/log                        1-D variable-length UTF-8 strings, chunked, every row stored
    /.dcsync/objects/<2 hex>            groups, no attributes, datasets only
    /.dcsync/objects/<2 hex>/<30 hex>   one object: attr k; contiguous, its storage exactly its
                                        declared size and inside the file; a dtype dcsync writes
    /<ctype>/<range>/<version>          groups with the view's attributes (each of its type)
    /<ctype>/<range>/<version>/calib    a hard link to one of the objects above

Every link is a hard link: soft, external and user-defined links are refused, never followed. No
dataset has external storage (an "external file list"), a virtual, chunked or compact layout (the
log excepted: chunked), or a filter; no datatype is committed, compound or enumerated beyond what
h5py makes of complex and bool; each group is reached by one path only. Declared sizes are judged
before any read: a tree or commit at most :data:`MAX_BODY` (what :func:`dcsync.model.objects.decode`
accepts), a payload at most :func:`max_payload` (``DCSYNC_MAX_PAYLOAD``), and what an uncompressed
dataset declares must be what it stores, so a small file cannot make a reader allocate more than it
holds. :func:`object_problem` is the same rule for one object, applied by the store on every read.

:func:`view_problems` then compares the view's attributes with a view of HEAD written afresh (the
view writer's own output, so nothing is computed twice); ``history`` lists commits and is left out.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5l, h5o, h5t

from dcsync.errors import UsageError
from dcsync.model import wire
from dcsync.store import view

if TYPE_CHECKING:
    from dcsync.model.hashing import ObjectId
    from dcsync.store.base import ObjectStore

MAX_BODY = wire.DEFAULT_LIMIT  # a longer tree or commit could never be decoded: never read one
DEFAULT_MAX_PAYLOAD = 4 << 30
PAYLOAD_ENV = "DCSYNC_MAX_PAYLOAD"
MAX_PROBLEMS = 50  # a hostile file can break every rule everywhere: say enough, not everything
_FAN = re.compile(rb"[0-9a-f]{2}")
_REST = re.compile(rb"[0-9a-f]{30}")


def max_payload() -> int:
    """The largest payload a repository file may declare (``DCSYNC_MAX_PAYLOAD`` bytes, default
    4 GiB): a peer's file is judged against it before any payload is read. (Parsed here, not with
    the protocol's sizes: local commands such as ``verify`` never load the protocol.)"""
    text = os.environ.get(PAYLOAD_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PAYLOAD
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{PAYLOAD_ENV}={text!r} is not a whole number of bytes") from None
    if value < 1:
        raise UsageError(f"{PAYLOAD_ENV}={text!r} must be positive")
    return value


# -- the types dcsync writes ------------------------------------------------------------------------

_STR = h5t.py_create(h5py.string_dtype(), logical=True)  # h5py's type of a Python str attribute
_I64 = h5t.py_create(np.dtype("<i8"))
_BOOL = h5t.py_create(np.dtype(bool))
_SCALAR, _VECTOR = 0, 1
Spec = tuple[Any, int]  # (HDF5 type, rank) of an attribute
_ROOT_ATTRS: dict[str, Spec] = {
    **{k: (_STR, _SCALAR) for k in ("dettype", "detid", "detname", "predecessor", "successor")},
    **{"tscfile": (_I64, _SCALAR), "dictpars": (_STR, _SCALAR), "history": (_STR, _SCALAR)},
}
_META_ATTRS: dict[str, Spec] = {
    "format": (_I64, _SCALAR),
    **{k: (_STR, _SCALAR) for k in ("hash", "refs", "view")},
}
_CTYPE_ATTRS: dict[str, Spec] = {k: (_STR, _SCALAR) for k in ("ctype", "dictpars", "history")}
_RANGE_ATTRS: dict[str, Spec] = {
    **{k: (_STR, _SCALAR) for k in ("defaultv", "effectivev", "dictpars", "history")},
    **{"tsbegin": (_I64, _SCALAR), "tsend": (_I64, _SCALAR)},
    **{"versions": (_STR, _VECTOR), "tsvers": (_I64, _VECTOR)},
}
_VERSION_ATTRS: dict[str, Spec] = {
    **{k: (_STR, _SCALAR) for k in ("version", "author", "dictpars", "history", "origin")},
    **{"tsprod": (_I64, _SCALAR), "fetched": (_BOOL, _SCALAR)},
}
_OBJECT_ATTRS: dict[str, Spec] = {"k": (_STR, _SCALAR)}
_VIEW_LEVELS = (_CTYPE_ATTRS, _RANGE_ATTRS, _VERSION_ATTRS)
_NOT_COMPARED = {"history", "fetched"}  # commits along the way, and what a partial clone has


def _array_dtype(dtype: np.dtype[Any]) -> bool:
    """A dtype :func:`dcsync.model.hashing.canonical_array` accepts, as h5py reads it back."""
    return (
        dtype.kind in "biufc"
        and dtype.fields is None
        and dtype.byteorder != ">"
        and dtype.itemsize <= (16 if dtype.kind == "c" else 8)
    )


@functools.lru_cache(maxsize=64)
def _hdf5_type(code: str) -> Any:
    """The HDF5 type h5py writes for the dtype ``code`` (``<f4``, ``|S12``): what dcsync's datasets
    have. Keyed by the string: numpy's dtype equality ignores h5py's metadata (enum, vlen, ref)."""
    return h5t.py_create(np.dtype(code))


def object_problem(
    ds: h5py.Dataset, kind: str | None, file_size: int, payload_limit: int | None
) -> str | None:
    """What is wrong with one object's dataset (None: nothing), judged from its metadata alone.

    ``kind`` is the object's ``k`` (None: any kind); ``payload_limit`` None leaves payload sizes to
    the storage rule alone (a local read of a file this process or a verified clone wrote)."""
    dsid = ds.id
    plist = dsid.get_create_plist()
    if plist.get_layout() != h5d.CONTIGUOUS:
        return "is not a contiguous dataset (virtual, chunked or compact layout)"
    if plist.get_external_count():
        return "keeps its data in an external file"
    if plist.get_nfilters():
        return "has an HDF5 filter"
    dtype, shape = ds.dtype, ds.shape
    if set(dtype.metadata or ()) - {"h5py_encoding"}:  # h5py's mark of an enum, vlen or reference
        return f"has an HDF5 datatype dcsync does not write ({dtype}, {dict(dtype.metadata)})"
    if dtype.kind == "S" and not shape and kind in (None, "text"):
        limit = payload_limit
    elif dtype == np.uint8 and len(shape) == 1 and kind in (None, "tree", "commit"):
        limit = MAX_BODY if kind is not None else payload_limit
    elif _array_dtype(dtype) and kind in (None, "array"):
        limit = payload_limit
    else:
        return f"is not what a {kind or 'dcsync'} object is stored as ({dtype}, shape {shape})"
    tid = dsid.get_type()
    if tid.committed() or tid != _hdf5_type(dtype.str):
        return f"has an HDF5 datatype dcsync does not write ({dtype})"
    declared = math.prod(shape) * dtype.itemsize
    if limit is not None and declared > limit:
        return f"declares {declared} bytes, over the limit of {limit}"
    stored = dsid.get_storage_size()
    if stored != declared:
        return f"declares {declared} bytes but stores {stored}"
    offset = dsid.get_offset() if declared else 0
    if offset is None or offset + declared > file_size:
        return "has its data outside the file"
    return None


# -- the walk -----------------------------------------------------------------------------------------


class _Walk:
    """One pass over a file's links, never following anything but hard links."""

    def __init__(self, f: h5py.File, payload_limit: int) -> None:
        self.root = f.id
        self.file_size = f.id.get_filesize()
        self.payload_limit = payload_limit
        self.problems: list[str] = []
        self.objects: set[h5o.ObjectID] = set()  # the object datasets, for calib links to point at
        self.groups: set[h5o.ObjectID] = set()

    def say(self, path: str, what: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{path} {what}")
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... (more problems not listed)")

    def children(self, gid: h5o.ObjectID, path: str) -> list[tuple[bytes, str]]:
        """The names in a group whose links are hard (the others are reported, not followed)."""
        out = []
        for name in list(gid):
            child = f"{path.rstrip('/')}/{name.decode('utf-8', 'replace')}"
            kind = gid.links.get_info(name).type
            if kind == h5l.TYPE_HARD:
                out.append((name, child))
            else:
                what = {h5l.TYPE_SOFT: "a soft link", h5l.TYPE_EXTERNAL: "an external link"}
                self.say(child, f"is {what.get(kind, 'a user-defined link')}; dcsync writes only hard links")
        return out

    def open(self, gid: h5o.ObjectID, name: bytes, path: str, want: int) -> Any:
        """The object a hard link leads to, if it is a group or dataset as ``want`` says."""
        obj = h5o.open(gid, name)
        kind = h5o.get_info(obj).type
        if kind != want:
            self.say(path, f"is a {_TYPE_NAMES.get(kind, 'named datatype')}, not a {_TYPE_NAMES[want]}")
            return None
        if kind == h5o.TYPE_GROUP:
            if obj in self.groups:
                self.say(path, "is a group reached by a second path")
                return None
            self.groups.add(obj)
        return obj

    def attrs(self, obj: Any, path: str, allowed: dict[str, Spec]) -> None:
        for i in range(h5o.get_info(obj).num_attrs):
            attr = h5a.open(obj, index=i)
            name = attr.name.decode("utf-8", "replace")
            spec = allowed.get(name)
            if spec is None:
                self.say(path, f"has an attribute {name!r} dcsync does not write")
            elif attr.get_type() != spec[0] or len(attr.shape) != spec[1]:
                self.say(path, f"attribute {name!r} is not of the type dcsync writes")
            elif _storage_size(attr) > MAX_BODY:
                self.say(path, f"attribute {name!r} is over {MAX_BODY} bytes")

    def run(self) -> list[str]:
        self.attrs(self.root, "/", _ROOT_ATTRS)
        names = dict(self.children(self.root, "/"))
        meta = names.pop(view.META_GROUP.encode(), None)
        if meta is None:
            self.say("/.dcsync", "is missing")
        else:
            self.meta(meta)
        for name, path in names.items():
            self.view_level(self.root, name, path, 0)
        return self.problems

    def meta(self, path: str) -> None:
        meta = self.open(self.root, view.META_GROUP.encode(), path, h5o.TYPE_GROUP)
        if meta is None:
            return
        self.attrs(meta, path, _META_ATTRS)
        names = dict(self.children(meta, path))
        objects, log = names.pop(b"objects", None), names.pop(b"log", None)
        for path_ in names.values():
            self.say(path_, "is not part of a repository file")
        if log is None:
            self.say(f"{path}/log", "is missing")
        else:
            self.log(meta, log)
        if objects is None:
            self.say(f"{path}/objects", "is missing")
            return
        group = self.open(meta, b"objects", objects, h5o.TYPE_GROUP)
        if group is None:
            return
        self.attrs(group, objects, {})
        for fan, fan_path in self.children(group, objects):
            sub = self.open(group, fan, fan_path, h5o.TYPE_GROUP) if _FAN.fullmatch(fan) else None
            if sub is None:
                if not _FAN.fullmatch(fan):
                    self.say(fan_path, "is not an object fan-out group (two hex digits)")
                continue
            self.attrs(sub, fan_path, {})
            for rest, obj_path in self.children(sub, fan_path):
                if not _REST.fullmatch(rest):
                    self.say(obj_path, "is not named as an object (30 hex digits)")
                    continue
                ds = self.open(sub, rest, obj_path, h5o.TYPE_DATASET)
                if ds is not None:
                    self.object(ds, obj_path)

    def object(self, ds: h5d.DatasetID, path: str) -> None:
        self.attrs(ds, path, _OBJECT_ATTRS)
        try:
            kind = h5py.Dataset(ds).attrs["k"] if h5a.exists(ds, b"k") else None
        except (OSError, TypeError, ValueError):
            kind = None
        if kind not in ("array", "text", "tree", "commit"):
            self.say(path, "has no valid kind attribute k")
            return
        problem = object_problem(h5py.Dataset(ds), kind, self.file_size, self.payload_limit)
        if problem:
            self.say(path, problem)
        else:
            self.objects.add(ds)

    def log(self, meta: h5o.ObjectID, path: str) -> None:
        ds = self.open(meta, b"log", path, h5o.TYPE_DATASET)
        if ds is None:
            return
        self.attrs(ds, path, {})
        plist = ds.get_create_plist()
        if plist.get_layout() != h5d.CHUNKED or plist.get_nfilters() or plist.get_external_count():
            self.say(path, "is not a chunked, unfiltered dataset")
        elif ds.get_type() != _STR or len(ds.shape) != 1:
            self.say(path, "is not a list of strings")
        elif ds.shape[0] * ds.get_type().get_size() > ds.get_storage_size():
            self.say(path, f"declares {ds.shape[0]} records but stores fewer")  # unstored rows: a bomb

    def view_level(self, parent: h5o.ObjectID, name: bytes, path: str, depth: int) -> None:
        """A ctype (depth 0), range (1) or version (2) group, and what is below it."""
        group = self.open(parent, name, path, h5o.TYPE_GROUP)
        if group is None:
            return
        self.attrs(group, path, _VIEW_LEVELS[depth])
        for child, child_path in self.children(group, path):
            if depth < 2:
                self.view_level(group, child, child_path, depth + 1)
            elif child != b"calib":
                self.say(child_path, "is not part of the view (only calib is)")
            else:
                target = h5o.open(group, child)
                if target in self.objects:  # ids are equal when the objects are
                    continue
                why = ""
                if isinstance(target, h5d.DatasetID):
                    why = object_problem(h5py.Dataset(target), None, self.file_size, self.payload_limit) or ""
                what = "is a view entry that links to no object of the repository"
                self.say(child_path, what + (f" (it {why})" if why else ""))


_TYPE_NAMES = {h5o.TYPE_GROUP: "group", h5o.TYPE_DATASET: "dataset"}


def _storage_size(attr: Any) -> int:
    """An attribute's stored size (h5py reports the 0 bytes of an empty array as an error)."""
    if attr.shape and 0 in attr.shape:
        return 0
    return int(attr.get_storage_size())


def file_problems(f: h5py.File, payload_limit: int | None = None) -> list[str]:
    """Everything in ``f`` that dcsync does not write, or that declares more than it may (empty:
    the file holds nothing else). Reads metadata only, and follows hard links only."""
    walk = _Walk(f, max_payload() if payload_limit is None else payload_limit)
    try:
        return walk.run()
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:  # HDF5 on damaged metadata
        return [*walk.problems, f"the file's HDF5 structure is unreadable: {exc}"]


# -- the view's attributes ---------------------------------------------------------------------------


def view_problems(f: h5py.File, store: ObjectStore, head: ObjectId | None) -> list[str]:
    """Where the view's groups and attributes differ from a view of ``head`` written afresh.

    Run on a file whose structure passed :func:`file_problems` (so attribute reads are bounded).
    The fresh view is written into memory by the view writer itself, from HEAD's trees alone: the
    scratch file claims to show HEAD's first parent and holds nothing, so the writer fills it in."""
    if head is None:
        return []
    parents = store.read_commit(head).parents
    with h5py.File(io.BytesIO(), "w") as fresh:
        meta = fresh.create_group(view.META_GROUP)
        meta.create_group("objects")
        meta.attrs["view"] = parents[0] if parents else ""
        view.update(fresh, store, None, head)
        problems: list[str] = []
        _compare(fresh, f, "/", 0, problems.append)
    return problems


def _compare(
    fresh: h5py.Group, actual: h5py.Group, path: str, depth: int, say: Callable[[str], None]
) -> None:
    names = {n for n in fresh if n != view.META_GROUP} if depth < 3 else set()
    have = {n for n in actual if n != view.META_GROUP} if depth < 3 else set()
    if names != have:
        say(f"view {path}: has {sorted(have)}, HEAD has {sorted(names)}")
    keys = set(fresh.attrs) - _NOT_COMPARED
    if keys != set(actual.attrs) - _NOT_COMPARED:
        say(f"view {path}: attributes {sorted(set(actual.attrs) - _NOT_COMPARED)}, HEAD's {sorted(keys)}")
    for key in sorted(keys & set(actual.attrs)):
        want, got = fresh.attrs[key], actual.attrs[key]
        if not np.array_equal(np.asarray(want), np.asarray(got)):
            say(f"view {path}: attribute {key} is {str(got)[:80]!r}, HEAD says {str(want)[:80]!r}")
    for name in sorted(names & have):
        _compare(fresh[name], actual[name], f"{path.rstrip('/')}/{name}", depth + 1, say)
