"""A real :class:`~dcsync.sync.server.Server` that answers one call with a malformed reply.

:data:`CASES` names each malformation: the call it spoils, how (a function from the server's true
reply to the spoiled one) and the field the client's error must name. The server is otherwise the
real one, so everything before the spoiled call goes as it would.

``python malformed_replies.py CASE serve --stdio --root PATH`` runs it over stdin/stdout as
``dcsync serve --stdio`` does (as ``--remote-dcsync "python malformed_replies.py CASE"``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcsync.rawio import write_all
from dcsync.sync.protocol import write_frame
from dcsync.sync.server import Server

Reply = dict[str, Any]
SHORT_ID = "0123abcd"  # an object id of the wrong length


@dataclass(frozen=True)
class Malformed:
    call: str
    spoil: Callable[[Reply], Reply]
    field: str  # what the client's error must name


def _without(key: str) -> Callable[[Reply], Reply]:
    return lambda r: {k: v for k, v in r.items() if k != key}


def _with(key: str, value: Any) -> Callable[[Reply], Reply]:
    return lambda r: {**r, key: value}


def _each_head(value: Any) -> Callable[[Reply], Reply]:
    return lambda r: {**r, "heads": {det: value for det in r["heads"]}}


def _each_offer(index: int, value: Any) -> Callable[[Reply], Reply]:
    def spoil(r: Reply) -> Reply:
        return {
            "objects": {
                det: [[*o[:index], value, *o[index + 1 :]] for o in offers]
                for det, offers in r["objects"].items()
            }
        }

    return spoil


def _each_result(change: Callable[[Reply], Reply]) -> Callable[[Reply], Reply]:
    return lambda r: {**r, "results": [change(x) for x in r["results"]]}


CASES: dict[str, Malformed] = {
    "hello without kind": Malformed("hello", _without("kind"), "'kind'"),
    "hello read_only as text": Malformed("hello", _with("read_only", "no"), "read_only"),
    "hello capabilities as a map": Malformed("hello", _with("capabilities", {}), "capabilities"),
    "heads without heads": Malformed("heads", _without("heads"), "'heads'"),
    "heads as a list": Malformed("heads", _with("heads", []), "heads"),
    "heads with an extra field": Malformed("heads", _with("more", 1), "'more'"),
    "heads with a short id": Malformed("heads", _each_head(SHORT_ID), "heads['"),
    "heads with a number for an id": Malformed("heads", _each_head(7), "heads['"),
    "heads naming a path": Malformed(
        "heads", lambda r: {**r, "heads": {"../x-1": None}}, "a detector of heads"
    ),
    "negotiate without objects": Malformed("negotiate", _without("objects"), "'objects'"),
    "negotiate with an extra field": Malformed("negotiate", _with("more", 1), "'more'"),
    "negotiate with a short id": Malformed("negotiate", _each_offer(0, SHORT_ID), "the id of objects["),
    "negotiate with a negative size": Malformed("negotiate", _each_offer(2, -1), "the size of objects["),
    "negotiate with an unknown kind": Malformed("negotiate", _each_offer(1, "blob"), "the kind of objects["),
    "negotiate for another detector": Malformed(
        "negotiate", lambda r: {"objects": {**r["objects"], "cspad-9": []}}, "objects['cspad-9']"
    ),
    "get_objects without count": Malformed("get_objects", _without("count"), "'count'"),
    "get_objects with a negative count": Malformed("get_objects", _with("count", -1), "count"),
    "get_objects with an extra field": Malformed("get_objects", _with("more", 1), "'more'"),
    "get_objects with a short id": Malformed("get_objects", lambda r: r, "the id of a header"),
    "get_files with a negative count": Malformed("get_files", _with("count", -1), "count"),
    "get_files without count": Malformed("get_files", _without("count"), "'count'"),
    "have without have": Malformed("have", _without("have"), "'have'"),
    "have as text": Malformed("have", _with("have", "yes"), "have"),
    "have one short": Malformed("have", lambda r: {"have": r["have"][1:]}, "have"),
    "have with a number": Malformed("have", lambda r: {"have": [1 for _ in r["have"]]}, "have[0]"),
    "put_objects with a negative count": Malformed("put_objects", _with("received", -3), "received"),
    "put_objects without received": Malformed("put_objects", _without("received"), "'received'"),
    "put_objects with an extra field": Malformed("put_objects", _with("more", 1), "'more'"),
    "update_refs without results": Malformed("update_refs", _without("results"), "'results'"),
    "update_refs with notes as text": Malformed("update_refs", _with("notes", "done"), "notes"),
    "update_refs with an extra field": Malformed("update_refs", _with("more", 1), "'more'"),
    "update_refs ok as text": Malformed(
        "update_refs", _each_result(_with("ok", "yes")), "the ok of results[0]"
    ),
    "update_refs failed without error": Malformed(
        "update_refs", _each_result(_with("ok", False)), "results[0] lacks the field 'error'"
    ),
    "update_refs for another detector": Malformed(
        "update_refs", _each_result(_with("detector", "cspad-9")), "results[0]"
    ),
}


class MalformedServer(Server):
    """Answers the call of ``case`` with the malformed reply; every other call as the real server."""

    def __init__(self, root: Path, case: Malformed) -> None:
        super().__init__(root)
        self.case = case

    def _spoiled(self, call: str, reply: Reply) -> Reply:
        return self.case.spoil(reply) if call == self.case.call else reply

    def do_hello(self, rid: int, read: Any, write: Any, **args: Any) -> Reply:
        return self._spoiled("hello", super().do_hello(rid, read, write, **args))

    def do_heads(self, rid: int, read: Any, write: Any, detectors: list[Any] | None = None) -> Reply:
        return self._spoiled("heads", super().do_heads(rid, read, write, detectors))

    def do_negotiate(self, rid: int, read: Any, write: Any, wants: list[Any]) -> Reply:
        return self._spoiled("negotiate", super().do_negotiate(rid, read, write, wants))

    def do_get_objects(self, rid: int, read: Any, write: Any, items: list[Any]) -> Reply:
        if self.case.field == "the id of a header":  # the stream item itself is the spoiled part
            write_frame(write, {"i": rid, "s": {"h": {"id": SHORT_ID, "k": "text", "n": 1}}})
            return {"count": len(items)}
        return self._spoiled("get_objects", super().do_get_objects(rid, read, write, items))

    def do_get_files(self, rid: int, read: Any, write: Any, items: list[Any]) -> Reply:
        return self._spoiled("get_files", super().do_get_files(rid, read, write, items))

    def do_have(self, rid: int, read: Any, write: Any, items: list[Any]) -> Reply:
        return self._spoiled("have", super().do_have(rid, read, write, items))

    def do_put_objects(self, rid: int, read: Any, write: Any, detector: str) -> Reply:
        return self._spoiled("put_objects", super().do_put_objects(rid, read, write, detector))

    def do_update_refs(
        self, rid: int, read: Any, write: Any, updates: list[Any], atomic: bool = False, message: str = ""
    ) -> Reply:
        return self._spoiled(
            "update_refs", super().do_update_refs(rid, read, write, updates, atomic, message)
        )


def main() -> None:
    case = sys.argv[1]
    root = Path(sys.argv[sys.argv.index("--root") + 1])
    server = MalformedServer(root, CASES[case])
    try:
        server.serve(lambda n: os.read(0, n), lambda data: write_all(1, data))
    finally:
        server.close()


if __name__ == "__main__":
    main()
