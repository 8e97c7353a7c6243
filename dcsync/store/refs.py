"""Refs and the append-only log of their moves.

A ref names a commit: ``HEAD`` is the detector's current state, ``remotes/<name>`` the last state
seen at a remote. Refs move only by compare-and-swap (:meth:`ObjectStore.set_ref`), and every move
appends one :class:`LogRecord` — who, where, when, which command, old → new — that is never
rewritten. Records are stored as JSON text so plain h5py users can read the log too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dcsync.errors import CorruptObject, InvalidName
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.model.times import now_ns

HEAD = "HEAD"
_REF = re.compile(r"^(HEAD|remotes/[A-Za-z0-9][A-Za-z0-9._-]{0,63})\Z")  # \Z, not $: no final newline


def check_ref(name: str) -> str:
    if not _REF.match(name):
        raise InvalidName(f"invalid ref name {name!r}: use HEAD or remotes/<name>")
    return name


def remote_ref(remote: str) -> str:
    return check_ref(f"remotes/{remote}")


@dataclass(frozen=True)
class LogRecord:
    ref: str
    old: ObjectId | None
    new: ObjectId | None
    command: str
    message: str = ""
    user: str = field(default_factory=current_user)
    host: str = field(default_factory=current_host)
    time: int = field(default_factory=now_ns)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "ref": self.ref,
                "old": self.old,
                "new": self.new,
                "command": self.command,
                "message": self.message,
                "user": self.user,
                "host": self.host,
                "time": self.time,
                "extra": dict(self.extra),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> LogRecord:
        try:
            d = json.loads(text)
            return cls(
                d["ref"],
                d["old"],
                d["new"],
                d["command"],
                d["message"],
                d["user"],
                d["host"],
                int(d["time"]),
                d.get("extra", {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObject(f"malformed log record: {text[:80]!r}") from exc
