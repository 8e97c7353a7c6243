"""What a server answers, as frozen dataclasses built by checking code (docs/protocol.md, "Methods").

Every result and stream item the client reads passes through one decoder here before any command
uses it: each field is read with :mod:`dcsync.model.fields` (types, ranges, object ids, exact key
sets) and :func:`~dcsync.model.names.check_detname`, and anything that does not match is a
:class:`~dcsync.errors.ProtocolError` naming the peer, the call and the field, never a
``KeyError`` or ``TypeError`` deep inside a command (which the CLI would report as a bug).

The ``hello`` result may carry fields a newer server adds (the newer side judges compatibility,
and a peer ignores what it does not know); every other result has exactly the fields of protocol 1,
and one more is refused: a field this version does not know could carry meaning it would drop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from dcsync.errors import DcsyncError, ProtocolError
from dcsync.model.fields import BadField, count, exact_keys, integer, mapping, object_id, text
from dcsync.model.hashing import ObjectId
from dcsync.model.names import check_detname
from dcsync.sync.protocol import KINDS as OBJECT_KINDS
from dcsync.sync.protocol import error_from_wire
from dcsync.workspace.workspace import KINDS

T = TypeVar("T")


def checked(call: str, peer: str, decode: Callable[[Any], T], value: Any) -> T:
    """``decode(value)``, with any field that breaks its rule reported as the peer's
    :class:`ProtocolError` naming ``call`` and the field."""
    try:
        return decode(value)
    except (BadField, ProtocolError) as exc:
        detail = exc.message if isinstance(exc, ProtocolError) else str(exc)
        raise ProtocolError(f"{peer} sent a malformed {call} reply: {detail}") from None


def _detector(value: Any, what: str) -> str:
    """A detector name as a peer sends it: it becomes a file name here, so it keeps the local rules."""
    try:
        return check_detname(text(value, what))
    except DcsyncError as exc:  # InvalidName: the peer's fault here, not the user's
        raise BadField(f"{what}: {exc.message}") from None


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadField(f"{what} must be true or false, not {type(value).__name__}")
    return value


def _texts(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadField(f"{what} must be a list of text, not {type(value).__name__}")
    return tuple(text(v, f"{what}[{i}]") for i, v in enumerate(value))


def _kind(value: Any) -> str:
    """A location kind (:data:`dcsync.workspace.workspace.KINDS`)."""
    kind = text(value, "kind")
    if kind not in KINDS:
        raise BadField(f"kind {kind[:40]!r} is not one of {', '.join(KINDS)}")
    return kind


def _list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise BadField(f"{what} must be a list, not {type(value).__name__}")
    if length is not None and len(value) != length:
        raise BadField(f"{what} has {len(value)} entries, expected {length}")
    return value


# -- hello -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    """The server's side of the handshake (``software``, ``user``, ``host`` are informational)."""

    protocol: int
    min_protocol: int
    hash: str
    capabilities: tuple[str, ...]
    software: str
    user: str
    host: str
    kind: str
    read_only: bool

    @staticmethod
    def from_wire(value: Any) -> Hello:
        w = mapping(value, "the reply")
        for key in ("protocol", "min_protocol", "hash", "capabilities", "kind", "read_only"):
            if key not in w:
                raise BadField(f"the reply lacks the field {key!r}")
        return Hello(
            protocol=integer(w["protocol"], "protocol", 0, 1 << 31),
            min_protocol=integer(w["min_protocol"], "min_protocol", 0, 1 << 31),
            hash=text(w["hash"], "hash"),
            capabilities=_texts(w["capabilities"], "capabilities"),
            software=text(w.get("software", ""), "software"),
            user=text(w.get("user", ""), "user"),
            host=text(w.get("host", ""), "host"),
            kind=_kind(w["kind"]),
            read_only=_flag(w["read_only"], "read_only"),
        )


# -- heads, negotiate, have ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Heads:
    """The server's kind and the HEAD (None: no commit yet) of each detector the caller may read."""

    kind: str
    heads: Mapping[str, ObjectId | None]

    @staticmethod
    def from_wire(value: Any) -> Heads:
        w = exact_keys(value, "the reply", ("kind", "heads"))
        heads: dict[str, ObjectId | None] = {}
        for det, head in mapping(w["heads"], "heads").items():
            name = _detector(det, "a detector of heads")
            heads[name] = None if head is None else object_id(head, f"heads[{name!r}]")
        return Heads(_kind(w["kind"]), heads)


class Offered(NamedTuple):
    """One object a ``negotiate`` answer offers: its id, kind and body size on the wire."""

    oid: ObjectId
    kind: str
    size: int


def offered_objects(value: Any, wanted: Collection[str]) -> dict[str, tuple[Offered, ...]]:
    """A ``negotiate`` result: ``{detector: [[id, kind, size], ...]}`` for detectors in ``wanted``."""
    w = exact_keys(value, "the reply", ("objects",))
    out: dict[str, tuple[Offered, ...]] = {}
    for det, items in mapping(w["objects"], "objects").items():
        name = _detector(det, "a detector of objects")
        if name not in wanted:
            raise BadField(f"objects[{name!r}] answers a detector that was not asked for")
        offered = []
        for i, item in enumerate(_list(items, f"objects[{name!r}]")):
            where = f"objects[{name!r}][{i}]"
            oid, kind, size = _list(item, where, 3)
            if kind not in OBJECT_KINDS:
                raise BadField(f"the kind of {where} is {str(kind)[:40]!r}, not {', '.join(OBJECT_KINDS)}")
            offered.append(
                Offered(object_id(oid, f"the id of {where}"), kind, count(size, f"the size of {where}"))
            )
        out[name] = tuple(offered)
    unanswered = sorted(set(wanted) - set(out))
    if unanswered:
        raise BadField(f"objects lacks the detector {unanswered[0]!r}, which was asked for")
    return out


def have_answers(value: Any, asked: int) -> tuple[bool, ...]:
    """A ``have`` result: one flag per item asked about, in order."""
    w = exact_keys(value, "the reply", ("have",))
    return tuple(_flag(h, f"have[{i}]") for i, h in enumerate(_list(w["have"], "have", asked)))


def sent_count(value: Any, field: str, expected: int | None = None) -> int:
    """The one-count result of a stream or upload (``count``, ``received``), checked."""
    n = count(exact_keys(value, "the reply", (field,))[field], field)
    if expected is not None and n != expected:
        raise BadField(f"{field} is {n}, but {expected} were asked for")
    return n


# -- update_refs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RefUpdate:
    """One HEAD a push asks the server to move: from ``old`` (None: no detector yet) to ``new``."""

    detector: str
    old: ObjectId | None
    new: ObjectId

    def to_wire(self) -> dict[str, Any]:
        return {"detector": self.detector, "old": self.old, "new": self.new}


@dataclass(frozen=True)
class RefResult:
    """Whether one update landed; ``error`` is the server's error, rebuilt, when it did not."""

    detector: str
    error: DcsyncError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RefsUpdated:
    """The ``update_refs`` result: one :class:`RefResult` per update, and what the hooks printed."""

    results: tuple[RefResult, ...]
    notes: tuple[str, ...]


def refs_updated(value: Any, asked: Collection[str], peer: str) -> RefsUpdated:
    w = exact_keys(value, "the reply", ("results", "notes"))
    results = []
    for i, entry in enumerate(_list(w["results"], "results")):
        where = f"results[{i}]"
        r = exact_keys(entry, where, ("detector", "ok"), ("error",))
        det = _detector(r["detector"], f"the detector of {where}")
        if det not in asked:
            raise BadField(f"{where} answers {det!r}, which was not asked for")
        if _flag(r["ok"], f"the ok of {where}"):
            if "error" in r:
                raise BadField(f"{where} is ok and has an error")
            results.append(RefResult(det))
        else:
            if "error" not in r:
                raise BadField(f"{where} lacks the field 'error'")
            err = exact_keys(r["error"], f"the error of {where}", ("code", "message"))
            text(err["code"], f"the error code of {where}")
            text(err["message"], f"the error message of {where}")
            results.append(RefResult(det, error_from_wire(err, peer=peer)))
    return RefsUpdated(tuple(results), _texts(w["notes"], "notes"))


# -- get_objects stream items ---------------------------------------------------------------------------
def file_item(value: Any) -> dict[str, Any]:
    """One ``get_files`` stream item: a map, read further by :func:`dcsync.sync.wholefile.fetch_files`."""
    return mapping(value, "a stream item")
