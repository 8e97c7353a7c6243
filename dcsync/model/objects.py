"""The object model: payloads, trees and commits as frozen values with a canonical wire form.

A detector's state is a tree of three levels, each its own content-addressed object so unchanged
subtrees are shared between commits (only the path to a change is rewritten)::

    RootTree   {dettype, detid, predecessor, successor, created, pars, ctypes: {ctype: CtypeTree id}}
    CtypeTree  {pars, ranges: {range key: [begin, end|nil, RangeTree id]}}
    RangeTree  {begin, end|nil, default|nil, pars, versions: {version key: VersionEntry}}
    Commit     {tree, parents, author, host, time, message, meta}

Every reference says which kind it points to (a commit's tree is a root tree, a parent is a commit,
a version's object is a payload of the entry's kind), and ids say nothing about kinds: a reader
that relies on a kind asks for it (:func:`expect`, ``ObjectStore.read_as``), and anything else is
refused as :class:`CorruptObject`, or as :class:`ProtocolError` when a peer sent the reference.

Trees and commits are msgpack maps with short keys (encoded by :mod:`dcsync.model.wire`); their id is
:func:`dcsync.model.hashing.hash_bytes` of that encoding, so equal values always have equal ids. Bytes
are decoded only through :func:`decode`, which applies the validity rules (docs/format.md): every
field's type and range (:mod:`dcsync.model.fields`), names as a local commit checks them, range keys
that name their bounds, a pinned default among the versions, and the canonical encoding.
Payloads are numpy arrays (any numeric or bool dtype and shape) or UTF-8 text (geometry).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np

from dcsync.errors import CorruptObject, ProtocolError
from dcsync.model import fields, limits, wire
from dcsync.model.hashing import (
    ARRAY_DTYPES,
    ObjectId,
    canonical_array,
    dtype_string,
    hash_array,
    hash_bytes,
    hash_text,
)
from dcsync.model.names import (
    RangeKey,
    VersionKey,
    check_ctype,
    check_detname,
    check_version_key,
    range_key,
    split_detname,
)

ParValue: TypeAlias = str | int | float | bool
Pars: TypeAlias = Mapping[str, ParValue]
Payload: TypeAlias = np.ndarray | str
Kind = Literal["array", "text", "tree", "commit"]


def _sorted(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A map in key order, so equal values encode (and hash) equally whatever order it was built in."""
    return dict(sorted(mapping.items()))


def _end_rank(end: int | None) -> int:
    """An end for ordering: an open end is later than any time (``end or ...`` would open ``0``)."""
    return 2**63 if end is None else end


def payload_id(value: Payload) -> ObjectId:
    if isinstance(value, str):
        return hash_text(value)
    return hash_array(canonical_array(value))


@dataclass(frozen=True)
class VersionEntry:
    """One version of a constant: which payload, when it was produced, and what it looks like.

    dtype/shape/nbytes are copied from the payload so listings, diffs and hooks never load it.
    ``origin`` records provenance when the version came from elsewhere (promotion).
    """

    obj: ObjectId
    tsprod: int
    kind: Literal["array", "text"]
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    author: str
    pars: Pars = field(default_factory=dict)
    origin: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def describe(cls, value: Payload, *, tsprod: int, author: str, pars: Pars) -> VersionEntry:
        if isinstance(value, str):
            raw = value.encode("utf-8")
            return cls(payload_id(value), tsprod, "text", "", (), len(raw), author, dict(pars))
        arr = canonical_array(value)
        return cls(
            hash_array(arr),
            tsprod,
            "array",
            dtype_string(arr.dtype),
            tuple(arr.shape),
            arr.nbytes,
            author,
            dict(pars),
        )

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "o": self.obj,
            "t": self.tsprod,
            "k": self.kind,
            "d": self.dtype,
            "s": list(self.shape),
            "n": self.nbytes,
            "a": self.author,
            "p": _sorted(self.pars),
        }
        if self.origin:
            out["g"] = _sorted(self.origin)
        return out

    @classmethod
    def from_wire(cls, w: Any, what: str = "version") -> VersionEntry:
        """Rebuild and check an entry (:mod:`dcsync.model.fields`); its dtype, shape and size agree with
        each other here, with the payload they describe where the payload is received."""
        w = fields.exact_keys(w, what, ("o", "t", "k", "d", "s", "n", "a", "p"), ("g",))
        kind = w["k"]
        if kind not in ("array", "text"):  # the kind of payload it points to, checked on reads
            raise fields.BadField(f"{what} kind {str(kind)[:20]!r} is neither 'array' nor 'text'")
        dtype = fields.text(w["d"], f"{what} dtype")
        if not isinstance(w["s"], list) or len(w["s"]) > fields.MAX_NDIM:
            raise fields.BadField(f"{what} shape must be a list of at most {fields.MAX_NDIM} sizes")
        shape = tuple(fields.count(x, f"{what} shape") for x in w["s"])
        nbytes = fields.count(w["n"], f"{what} nbytes")
        if kind == "array":
            if dtype not in ARRAY_DTYPES:
                raise fields.BadField(f"{what} dtype {dtype[:20]!r} is not one an array payload may have")
            size = math.prod(shape) * ARRAY_DTYPES[dtype].itemsize
            if size != nbytes:
                raise fields.BadField(f"{what} nbytes {nbytes} is not the {size} of {dtype} {shape}")
        elif dtype or shape:
            raise fields.BadField(f"{what} is text, which has no dtype or shape")
        return cls(
            fields.object_id(w["o"], f"{what} object"),
            fields.time(w["t"], f"{what} tsprod"),
            kind,
            dtype,
            shape,
            nbytes,
            fields.attribute_text(w["a"], f"{what} author"),
            fields.pars(w["p"], f"{what} parameters"),
            fields.plain_map(w.get("g", {}), f"{what} origin"),
        )


@dataclass(frozen=True)
class RangeTree:
    begin: int
    end: int | None
    default: VersionKey | None = None
    pars: Pars = field(default_factory=dict)
    versions: Mapping[VersionKey, VersionEntry] = field(default_factory=dict)

    def contains(self, t: int) -> bool:
        return self.begin <= t and (self.end is None or t < self.end)

    def ordered(self) -> list[VersionKey]:
        """Version keys oldest first (production time, then key to break ties deterministically)."""
        return sorted(self.versions, key=lambda k: (self.versions[k].tsprod, k))

    def effective(self) -> VersionKey | None:
        """The pinned default if set, else the most recently produced version."""
        if self.default is not None and self.default in self.versions:
            return self.default
        order = self.ordered()
        return order[-1] if order else None

    def to_wire(self) -> dict[str, Any]:
        return {
            "b": self.begin,
            "e": self.end,
            "d": self.default,
            "p": _sorted(self.pars),
            "v": {k: v.to_wire() for k, v in sorted(self.versions.items())},
        }

    @classmethod
    def from_wire(cls, w: Any) -> RangeTree:
        w = fields.exact_keys(w, "range tree", ("b", "e", "d", "p", "v"))
        begin, end = fields.bounds(w["b"], w["e"], "range")
        versions = {
            VersionKey(fields.name(k, check_version_key, "version key")): VersionEntry.from_wire(
                v, f"version {k!r}"
            )
            for k, v in fields.mapping(w["v"], "versions").items()
        }
        if not versions:  # dcsync prunes a range whose last version goes: an empty one answers nothing
            raise fields.BadField("a range tree has no versions")
        default = w["d"]
        if default is not None and (not isinstance(default, str) or default not in versions):
            raise fields.BadField(f"default version {str(default)[:40]!r} is not one of the range's versions")
        return cls(
            begin,
            end,
            VersionKey(default) if default else None,
            fields.pars(w["p"], "range parameters"),
            versions,
        )


@dataclass(frozen=True)
class RangeRef:
    """A ctype's pointer to one range, with the bounds inline so lookups read one object less."""

    begin: int
    end: int | None
    tree: ObjectId


@dataclass(frozen=True)
class CtypeTree:
    pars: Pars = field(default_factory=dict)
    ranges: Mapping[RangeKey, RangeRef] = field(default_factory=dict)

    @cached_property
    def _by_begin(self) -> tuple[list[int], list[RangeKey]]:
        # Sorted by begin, then widest first, so scanning backwards from the last begin <= t meets
        # the latest begin first and, among equal begins, the narrowest range first.
        keys = sorted(
            self.ranges,
            key=lambda k: (self.ranges[k].begin, -_end_rank(self.ranges[k].end), k),
        )
        return [self.ranges[k].begin for k in keys], keys

    def lookup(self, t: int) -> RangeKey | None:
        """The lookup rule: among ranges with ``begin <= t < end`` the latest begin wins; on equal
        begins the narrower range (an open end is the widest). O(log n) for the usual layouts."""
        begins, keys = self._by_begin
        for i in range(bisect.bisect_right(begins, t) - 1, -1, -1):
            end = self.ranges[keys[i]].end
            if end is None or t < end:
                return keys[i]
        return None

    def winners_from(self, t: int) -> set[RangeKey]:
        """The ranges :meth:`lookup` returns at some time at or after ``t``.

        Which ranges contain a time changes only where one begins or ends, so the lookups at ``t``
        and at every begin and end after it meet every winner (and only winners).
        """
        times = {t}
        for ref in self.ranges.values():
            times.update(x for x in (ref.begin, ref.end) if x is not None and x > t)
        return {key for key in map(self.lookup, times) if key is not None}

    def to_wire(self) -> dict[str, Any]:
        return {
            "p": _sorted(self.pars),
            "r": {k: [r.begin, r.end, r.tree] for k, r in sorted(self.ranges.items())},
        }

    @classmethod
    def from_wire(cls, w: Any) -> CtypeTree:
        """Rebuild and check a ctype tree: each range key is the one its inline bounds make (the
        range tree's own bounds are compared where it is read, :func:`range_bounds_problem`)."""
        w = fields.exact_keys(w, "ctype tree", ("p", "r"))
        ranges: dict[RangeKey, RangeRef] = {}
        for key, ref in fields.mapping(w["r"], "ranges").items():
            fields.text(key, "range key")
            if not isinstance(ref, list) or len(ref) != 3:
                raise fields.BadField(f"range {key[:40]!r} must be [begin, end, range tree]")
            begin, end = fields.bounds(ref[0], ref[1], f"range {key[:40]!r}")
            if key != range_key(begin, end):
                raise fields.BadField(
                    f"range key {key[:40]!r} does not name its bounds (they make {range_key(begin, end)!r})"
                )
            ranges[RangeKey(key)] = RangeRef(begin, end, fields.object_id(ref[2], f"range {key!r} tree"))
        return cls(fields.pars(w["p"], "ctype parameters"), ranges)


@dataclass(frozen=True)
class RootTree:
    dettype: str
    detid: str
    created: int
    predecessor: str = ""
    successor: str = ""
    pars: Pars = field(default_factory=dict)
    ctypes: Mapping[str, ObjectId] = field(default_factory=dict)

    @property
    def detname(self) -> str:
        return f"{self.dettype}-{self.detid}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "dt": self.dettype,
            "di": self.detid,
            "c": self.created,
            "pr": self.predecessor,
            "su": self.successor,
            "p": _sorted(self.pars),
            "ct": dict(sorted(self.ctypes.items())),
        }

    @classmethod
    def from_wire(cls, w: Any) -> RootTree:
        w = fields.exact_keys(w, "root tree", ("dt", "di", "c", "pr", "su", "p", "ct"))
        dettype, detid = fields.text(w["dt"], "dettype"), fields.text(w["di"], "detid")
        detname = fields.name(f"{dettype}-{detid}", check_detname, "detector name")
        if split_detname(detname) != (dettype, detid):  # the dettype is all before the first "-"
            raise fields.BadField(f"dettype {dettype[:40]!r} contains a '-'")
        predecessor, successor = (
            fields.name(w[k], check_detname, what) if w[k] != "" else ""
            for k, what in (("pr", "predecessor"), ("su", "successor"))
        )
        ctypes = {
            fields.name(k, check_ctype, "ctype name"): fields.object_id(v, f"ctype {k!r} tree")
            for k, v in fields.mapping(w["ct"], "ctypes").items()
        }
        return cls(
            dettype,
            detid,
            fields.time(w["c"], "created"),
            predecessor,
            successor,
            fields.pars(w["p"], "parameters"),
            ctypes,
        )


@dataclass(frozen=True)
class Commit:
    tree: ObjectId
    parents: tuple[ObjectId, ...]
    author: str
    host: str
    time: int
    message: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "tr": self.tree,
            "pa": list(self.parents),
            "au": self.author,
            "ho": self.host,
            "ti": self.time,
            "m": self.message,
            "x": _sorted(self.meta),
        }

    @classmethod
    def from_wire(cls, w: Any) -> Commit:
        w = fields.exact_keys(w, "commit", ("tr", "pa", "au", "ho", "ti", "m", "x"))
        return cls(
            fields.object_id(w["tr"], "tree"),
            fields.object_ids(w["pa"], "parents"),
            fields.text(w["au"], "author"),
            fields.text(w["ho"], "host"),
            fields.time(w["ti"], "time"),
            fields.text(w["m"], "message"),
            fields.plain_map(w["x"], "meta"),
        )


Tree: TypeAlias = RootTree | CtypeTree | RangeTree
_TREE_CLASSES: dict[str, type[RootTree] | type[CtypeTree] | type[RangeTree]] = {
    "root": RootTree,
    "ctype": CtypeTree,
    "range": RangeTree,
}
_TREE_NAMES = {cls: name for name, cls in _TREE_CLASSES.items()}


def encode(obj: Tree | Commit) -> tuple[Kind, bytes]:
    """The canonical bytes of a tree or commit and the kind they are hashed under."""
    if isinstance(obj, Commit):
        return "commit", wire.pack(obj.to_wire())
    return "tree", wire.pack([_TREE_NAMES[type(obj)], obj.to_wire()])


def object_id(obj: Tree | Commit) -> ObjectId:
    kind, body = encode(obj)
    return hash_bytes(kind, body)


Obj = TypeVar("Obj", RootTree, CtypeTree, RangeTree, Commit)
_KIND_NAMES: dict[type, str] = {
    RootTree: "root tree",
    CtypeTree: "ctype tree",
    RangeTree: "range tree",
    Commit: "commit",
}


def kind_name(value: Tree | Commit | type[Tree | Commit] | str) -> str:
    """A kind as messages and checks name it: "root tree", "ctype tree", "range tree", "commit"
    for an object or its class, "array payload"/"text payload" for a stored payload kind."""
    if isinstance(value, str):
        return f"{value} payload" if value in ("array", "text") else value
    return _KIND_NAMES[value if isinstance(value, type) else type(value)]


@dataclass(frozen=True)
class Via:
    """Where a reference was found: the ``role`` it plays in object ``holder`` ("the tree",
    "a parent", "ctype 'pedestals'", ...). Errors name it, and the walk over received objects
    (:func:`dcsync.repo.reach.walk_missing`) asks whether ``holder`` came from the peer to know whom a
    wrong kind is to blame on."""

    holder: ObjectId
    role: str

    def __str__(self) -> str:
        return f"{self.role} of {self.holder}"


def wrong_kind(
    oid: ObjectId, found: str, expected: str, *, where: str, via: Via | None = None, peer: str | None = None
) -> CorruptObject | ProtocolError:
    """The error for object ``oid`` being a ``found`` where its reference promises an ``expected``:
    :class:`ProtocolError` naming ``peer`` when the peer sent that reference, else the file's own
    :class:`CorruptObject`."""
    at = f" ({via})" if via is not None else ""
    a_found = with_article(found)
    if peer is not None:
        return ProtocolError(f"{peer} sent object {oid}{at} as {with_article(expected)}, but it is {a_found}")
    return CorruptObject(f"object {oid}{at} in {where} is {a_found}, not {with_article(expected)}")


def with_article(name: str) -> str:
    """'a root tree', 'an array payload'."""
    return f"{'an' if name[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {name}"


def expect(
    obj: Tree | Commit,
    expected: type[Obj],
    oid: ObjectId,
    *,
    where: str,
    via: Via | None = None,
    peer: str | None = None,
) -> Obj:
    """``obj`` (object ``oid``) as the kind its reference promises, else :func:`wrong_kind`.

    Every typed read of a tree or commit comes through here, a store's own
    (``ObjectStore.read_as``) and a peer's on arrival (:mod:`dcsync.repo.reach`). What a tree may
    hold (names, range keys, integer ranges) was checked when it was decoded (:func:`decode`).
    """
    if not isinstance(obj, expected):
        raise wrong_kind(oid, kind_name(obj), kind_name(expected), where=where, via=via, peer=peer)
    return obj


def check_tree_size(tree: Tree | Commit, oid: str, *, peer: str) -> None:
    """Refuse a tree a peer sent with more entries than its kind may hold (:mod:`dcsync.model.limits`:
    a tree is counted before it is walked or committed). A local tree has no such limit."""
    if isinstance(tree, RootTree):
        count, limit, what = len(tree.ctypes), limits.MAX_CTYPES_PER_ROOT, "ctypes in a root tree"
        name = "MAX_CTYPES_PER_ROOT"
    elif isinstance(tree, CtypeTree):
        count, limit, what = len(tree.ranges), limits.MAX_RANGES_PER_CTYPE, "ranges in a ctype"
        name = "MAX_RANGES_PER_CTYPE"
    elif isinstance(tree, RangeTree):
        count, limit, what = len(tree.versions), limits.MAX_VERSIONS_PER_RANGE, "versions in a range"
        name = "MAX_VERSIONS_PER_RANGE"
    else:
        return
    if count > limit:
        raise ProtocolError(f"{peer} sent tree {oid} with {count} {what} ({name}): over the limit of {limit}")


def decode(kind: str, body: bytes, oid: str = "?", *, peer: str | None = None) -> Tree | Commit:
    """Rebuild a tree or commit from its bytes, every field checked (:mod:`dcsync.model.fields`, and
    the checks of each ``from_wire``), and the bytes the canonical encoding of the value (so one
    value has one id, and nothing a reader drops rides along).

    Anything else is :class:`ProtocolError` naming ``peer`` when the peer sent the bytes (a push,
    a fetch, a diff), else the file's own :class:`CorruptObject`.
    """
    what = kind
    try:
        value = wire.unpack(body, what=f"object {oid}")
        if kind == "commit":
            obj: Tree | Commit = Commit.from_wire(value)
        elif kind == "tree":
            if not (isinstance(value, list) and len(value) == 2 and value[0] in ("root", "ctype", "range")):
                raise fields.BadField("a tree must be [kind, fields] with kind 'root', 'ctype' or 'range'")
            cls = _TREE_CLASSES[value[0]]
            what = kind_name(cls)
            obj = cls.from_wire(value[1])
        else:
            raise fields.BadField(f"unknown kind {kind[:20]!r}")
        if encode(obj)[1] != body:
            raise fields.BadField(
                "its bytes are not the canonical encoding of its value "
                "(keys out of order, or a number or text encoded another way)"
            )
    except (CorruptObject, fields.BadField, KeyError, TypeError, ValueError, OverflowError) as exc:
        # the last four only if a check above missed a case: still this object's fault, not a crash
        detail = str(exc) if isinstance(exc, CorruptObject | fields.BadField) else repr(exc)
        if peer is not None:
            raise ProtocolError(f"{detail}, in {what} {oid} from {peer}") from exc
        raise CorruptObject(f"{what} {oid} is malformed: {detail}") from exc
    return obj


def range_bounds_problem(key: str, ref: RangeRef, tree: RangeTree) -> str | None:
    """Why a ctype tree's range ``key`` (bounds inline in ``ref``, which its key names) and the
    range tree ``ref`` points to disagree on the range's bounds, or None.

    Lookups read the ctype tree's bounds and the view the range tree's: a tree where they differ
    answers two ways (a range "moved" to 2100 in the ctype tree alone changes what ``get``
    returns while every diff of the range trees is empty), so it is refused like a bad field.
    """
    if (ref.begin, ref.end) == (tree.begin, tree.end):
        return None
    return f"range {key!r} points to range tree {ref.tree}, which spans {range_key(tree.begin, tree.end)!r}"
