"""The validity rules of the fields of a tree or commit, applied wherever one is decoded.

A tree or commit comes from bytes: a peer's (pushed, fetched, a whole file) or the file's own.
Either way every field is read through these checks before anything relies on it: its type (text
where text, an integer where an integer, a map where a map, a list of object ids), its range
(times and sizes are int64, so nothing a peer sends can overflow numpy or HDF5 further on), and
for names the rules :mod:`dcsync.model.names` applies to a local commit (a ctype named ``.dcsync`` would
otherwise be written over the repository's own metadata by the view). A violation is
:class:`BadField`, whose message names the field; :func:`dcsync.model.objects.decode` turns it into
:class:`~dcsync.errors.ProtocolError` naming the peer, or into
:class:`~dcsync.errors.CorruptObject` for the file's own object.

Integer ranges (docs/format.md, "Validity rules"):

- a time (range bound, production time, creation time, commit time) is int64 nanoseconds up to
  ``2**63 - 2`` (``dcsync.model.times.TIME_MAX``: the view spells an open end ``2**63 - 1``);
- a size or dimension is a non-negative int64, with at most ``MAX_NDIM`` dimensions;
- an integer parameter or metadata value is an int64.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dcsync.errors import InvalidName
from dcsync.model.hashing import ID_HEX_LEN, ObjectId
from dcsync.model.names import check_par_key
from dcsync.model.times import TIME_MAX, TIME_MIN

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
COUNT_MAX = 2**63 - 1
MAX_NDIM = 32  # as many dimensions as a transfer header may announce
MAX_DEPTH = 16  # nesting of free-form metadata (a commit's meta, a version's origin)


_OBJECT_ID = re.compile(rf"[0-9a-f]{{{ID_HEX_LEN}}}\Z")  # hashing.is_object_id, at a tree's pace


class BadField(ValueError):
    """A field of a tree or commit breaks its rule; the message names the field and the rule."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_int(value: Any) -> bool:
    """An integer that is not a bool (msgpack keeps them apart; Python's ``bool`` is an ``int``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def exact_keys(
    w: Any, what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``w`` as a map holding every ``required`` key and nothing but those and ``optional`` ones
    (a key this version does not know could carry meaning it would silently drop)."""
    value = mapping(w, what)
    if len(value) == len(required) and all(k in value for k in required):
        return value  # the usual case, decided without building a message
    missing = [k for k in required if k not in value]
    if missing:
        raise BadField(f"{what} lacks the field {missing[0]!r}")
    unknown = sorted(str(k) for k in value if k not in required and k not in optional)
    if unknown:
        raise BadField(f"{what} has an unknown field {_shown(unknown[0])}")
    return value


def mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadField(f"{what} must be a map, not {type(value).__name__}")
    return value


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadField(f"{what} must be text, not {type(value).__name__} {_shown(value)}")
    return value


def attribute_text(value: Any, what: str) -> str:
    """Text the view stores as an HDF5 attribute (a version's author), which cannot hold NUL."""
    checked = text(value, what)
    if "\0" in checked:
        raise BadField(f"{what} {_shown(value)} contains a NUL character")
    return checked


def integer(value: Any, what: str, low: int = INT_MIN, high: int = INT_MAX) -> int:
    if type(value) is int and low <= value <= high:  # the usual case first: trees hold thousands
        return value
    if not is_int(value):
        raise BadField(f"{what} must be an integer, not {type(value).__name__} {_shown(value)}")
    if not low <= value <= high:
        raise BadField(f"{what} {value} is out of range [{low}, {high}]")
    return int(value)


def time(value: Any, what: str) -> int:
    """Nanoseconds since the epoch, as int64 but for the view's open end (``dcsync.model.times``)."""
    return integer(value, what, TIME_MIN, TIME_MAX)


def count(value: Any, what: str) -> int:
    return integer(value, what, 0, COUNT_MAX)


def object_id(value: Any, what: str) -> ObjectId:
    if not (isinstance(value, str) and _OBJECT_ID.match(value)):
        raise BadField(f"{what} {_shown(value)} is not an object id (32 lower-case hex digits)")
    return ObjectId(value)


def object_ids(value: Any, what: str) -> tuple[ObjectId, ...]:
    if not isinstance(value, list):
        raise BadField(f"{what} must be a list of object ids, not {type(value).__name__}")
    return tuple(object_id(v, what) for v in value)


def name(value: Any, check: Callable[[str], Any], what: str) -> str:
    """A name that passes the same ``check`` (from :mod:`dcsync.model.names`) a local commit passes."""
    text(value, what)
    try:
        check(value)
    except InvalidName as exc:
        raise BadField(f"{what} {_shown(value)} is invalid ({exc.message})") from exc
    return str(value)


def pars(value: Any, what: str) -> dict[str, str | int | float | bool]:
    """Parameters: names as :func:`dcsync.model.names.check_par_key` allows, values text, int64,
    float or bool (what ``Transaction.set_pars`` accepts)."""
    out: dict[str, str | int | float | bool] = {}
    for key, par in mapping(value, what).items():
        name(key, check_par_key, f"{what}: parameter name")
        where = f"{what}: parameter {key!r}"
        if isinstance(par, bool | float):
            out[key] = par
        elif is_int(par):
            out[key] = integer(par, where)
        elif isinstance(par, str):
            out[key] = text(par, where)
        else:
            raise BadField(f"{where} must be text, a number or a bool, not {type(par).__name__}")
    return out


def plain(value: Any, what: str, depth: int = 0) -> Any:
    """Free-form metadata (a commit's ``meta``, a version's ``origin``): what JSON can say (maps
    with text keys, lists, text, int64, float, bool, nil), nested at most ``MAX_DEPTH`` deep; it
    goes into the log and to hooks as JSON."""
    if depth > MAX_DEPTH:
        raise BadField(f"{what} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            text(key, f"{what}: key")
            out[key] = plain(item, f"{what}[{key!r}]", depth + 1)
        return out
    if isinstance(value, list):
        return [plain(item, what, depth + 1) for item in value]
    if is_int(value):
        return integer(value, what)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return text(value, what)
    raise BadField(f"{what} holds a {type(value).__name__}, which metadata may not")


def plain_map(value: Any, what: str) -> dict[str, Any]:
    return plain(mapping(value, what), what)  # type: ignore[no-any-return]


def bounds(begin: Any, end: Any, what: str) -> tuple[int, int | None]:
    """A validity range's ``[begin, end)``: times, the end open (nil) or after the begin."""
    b = time(begin, f"{what} begin")
    e = None if end is None else time(end, f"{what} end")
    if e is not None and e <= b:
        raise BadField(f"{what} ends at {e}, not after its begin {b}")
    return b, e
