"""The server's method table: what each method takes (:data:`SPECS`), the right it needs
(:data:`RIGHTS`, judged before it runs by :func:`authorize`), and the checks of the values inside
its arguments (detector names, object ids, a partial-clone filter).

A method missing from either table cannot be called at all. Everything here judges what a client
sent: a value out of place is a :class:`~dcsync.errors.ProtocolError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from dcsync.errors import AccessDenied, ProtocolError
from dcsync.model.hashing import ObjectId, is_object_id
from dcsync.model.names import check_detname
from dcsync.sync.protocol import INT64_MAX, INT64_MIN, ArgSpec, whole_number
from dcsync.workspace.acl import ACL, Identity

SPECS: dict[str, ArgSpec] = {
    "hello": ArgSpec(
        protocol=(int, True),
        min_protocol=(int, True),
        hash=(str, True),
        capabilities=(list, True),
        software=(str, False),
        user=(str, False),
        host=(str, False),
    ),
    "heads": ArgSpec(detectors=(list, False)),
    "negotiate": ArgSpec(wants=(list, True)),
    "get_objects": ArgSpec(items=(list, True)),
    "get_files": ArgSpec(items=(list, True)),
    "have": ArgSpec(items=(list, True)),
    "put_objects": ArgSpec(detector=(str, True)),
    "update_refs": ArgSpec(updates=(list, True), atomic=(bool, False), message=(str, False)),
}


def object_id(value: Any) -> ObjectId:
    if not is_object_id(value):
        raise ProtocolError(f"not an object id: {str(value)[:80]!r}")
    return ObjectId(str(value))


def detector(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError("detector names are strings")
    return check_detname(value)


def pairs(items: list[Any]) -> list[tuple[str, ObjectId]]:
    """``[detector, id]`` items (``get_objects``, ``have``), checked."""
    out = []
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError("items are [detector, id] pairs")
        out.append((detector(item[0]), object_id(item[1])))
    return out


_FILTER_KEYS: dict[str, type] = {"ctypes": list, "since": int, "payloads": bool, "history": bool}
WANT_KEYS = frozenset({"detector", "want", "have", "filter"})


def partial_filter(value: Any) -> dict[str, Any]:
    """A partial-clone filter, checked: known keys only, each of its type (nil means absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("filter must be a map")
    out: dict[str, Any] = {}
    for key, item in value.items():
        expected = _FILTER_KEYS.get(key) if isinstance(key, str) else None
        if expected is None:
            raise ProtocolError(f"unknown filter key {str(key)[:60]!r}")
        if item is None:
            continue
        if not isinstance(item, expected) or (expected is not bool and isinstance(item, bool)):
            raise ProtocolError(f"filter key {key!r} has the wrong type")
        if key == "since":
            whole_number(item, "filter key 'since'", INT64_MIN, INT64_MAX)
        if isinstance(item, list) and not all(isinstance(c, str) for c in item):
            raise ProtocolError("filter key 'ctypes' is a list of names")
        out[key] = item
    return out


# -- who may call what ------------------------------------------------------------------------------


def _put_targets(args: dict[str, Any]) -> list[str]:
    return [detector(args["detector"])]


def _update_targets(args: dict[str, Any]) -> list[str]:
    updates = args["updates"]
    if not all(isinstance(update, dict) for update in updates):
        raise ProtocolError("each update is a map")
    return [detector(update.get("detector")) for update in updates]


class Right(NamedTuple):
    """What a method needs of the caller. ``write`` methods name the detectors they change
    (``targets``); the caller must be allowed to write each, on a server that is not read-only,
    before the method runs at all: before it creates a directory, takes a lock, runs a hook or
    writes a byte. ``read`` methods are judged per detector as they open it (the server's
    ``_store``)."""

    permission: Literal["none", "read", "write"]
    targets: Callable[[dict[str, Any]], list[str]] | None = None


# Checked by Server.serve() before every call; a method missing here cannot be called at all.
RIGHTS: dict[str, Right] = {
    "hello": Right("none"),
    "heads": Right("read"),
    "negotiate": Right("read"),
    "get_objects": Right("read"),
    "get_files": Right("read"),
    "have": Right("read"),
    "put_objects": Right("write", _put_targets),
    "update_refs": Right("write", _update_targets),
}


def authorize(
    right: Right, args: dict[str, Any], *, acl: Callable[[], ACL], who: Identity, read_only: str
) -> None:
    """Refuse a call the caller has no right to, before it runs (see :data:`RIGHTS`).

    ``read_only`` names the served place when it is served read-only ("" when it is not); ``acl``
    loads the ACL, only for a method that writes.
    """
    if right.permission != "write":
        return
    if read_only:
        raise AccessDenied(f"{read_only} is served read-only")
    rules = acl()
    for det in right.targets(args) if right.targets else []:
        if not rules.may_write(who, det):
            rules.require(who, "add", det)  # raises, naming user, detector and location
