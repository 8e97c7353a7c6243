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

Trees and commits are msgpack maps with short keys (encoded by :mod:`dcsync.wire`); their id is
:func:`dcsync.hashing.hash_bytes` of that encoding, so equal values always have equal ids.
Payloads are numpy arrays (any numeric or bool dtype and shape) or UTF-8 text (geometry).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np

from dcsync import wire
from dcsync.errors import CorruptObject, ProtocolError
from dcsync.hashing import ObjectId, canonical_array, dtype_string, hash_array, hash_bytes, hash_text
from dcsync.names import RangeKey, VersionKey

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
    def from_wire(cls, w: Mapping[str, Any]) -> VersionEntry:
        if w["k"] not in ("array", "text"):  # the kind of payload it points to, checked on reads
            raise ValueError(f"a version of kind {str(w['k'])[:20]!r}")
        return cls(
            ObjectId(w["o"]),
            int(w["t"]),
            w["k"],
            w["d"],
            tuple(int(x) for x in w["s"]),
            int(w["n"]),
            w["a"],
            dict(w["p"]),
            dict(w.get("g", {})),
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
    def from_wire(cls, w: Mapping[str, Any]) -> RangeTree:
        return cls(
            int(w["b"]),
            None if w["e"] is None else int(w["e"]),
            None if w["d"] is None else VersionKey(w["d"]),
            dict(w["p"]),
            {VersionKey(k): VersionEntry.from_wire(v) for k, v in w["v"].items()},
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
    def from_wire(cls, w: Mapping[str, Any]) -> CtypeTree:
        return cls(
            dict(w["p"]),
            {
                RangeKey(k): RangeRef(int(b), None if e is None else int(e), ObjectId(t))
                for k, (b, e, t) in w["r"].items()
            },
        )


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
    def from_wire(cls, w: Mapping[str, Any]) -> RootTree:
        return cls(
            w["dt"],
            w["di"],
            int(w["c"]),
            w["pr"],
            w["su"],
            dict(w["p"]),
            {k: ObjectId(v) for k, v in w["ct"].items()},
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
    def from_wire(cls, w: Mapping[str, Any]) -> Commit:
        return cls(
            ObjectId(w["tr"]),
            tuple(ObjectId(p) for p in w["pa"]),
            w["au"],
            w["ho"],
            int(w["ti"]),
            w["m"],
            dict(w["x"]),
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
    (:func:`dcsync.reach.walk_missing`) asks whether ``holder`` came from the peer to know whom a
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
    (``ObjectStore.read_as``) and a peer's on arrival (:mod:`dcsync.reach`), so this is also the
    place for checks of what a tree may hold (names, range keys).
    """
    if not isinstance(obj, expected):
        raise wrong_kind(oid, kind_name(obj), kind_name(expected), where=where, via=via, peer=peer)
    return obj


def decode(kind: str, body: bytes, oid: str = "?") -> Tree | Commit:
    """Rebuild a tree or commit from its bytes; anything malformed is :class:`CorruptObject`."""
    value = wire.unpack(body, what=f"object {oid}")
    try:
        if kind == "commit":
            return Commit.from_wire(value)
        if kind == "tree":
            name, fields = value
            return _TREE_CLASSES[name].from_wire(fields)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CorruptObject(f"object {oid} is a malformed {kind}: {exc!r}") from exc
    raise CorruptObject(f"object {oid} has unknown kind {kind!r}")
