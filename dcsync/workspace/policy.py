"""The checks a change passes before it lands in a workspace: the ACL, then the hooks.

One :class:`Incoming` describes a HEAD move asking to land (a local commit, a push received by the
server, a promotion); :meth:`Policy.check` runs inside the repository's write transaction, after the
new objects are in place and before HEAD moves, so a refusal leaves nothing behind.
:meth:`Policy.after` runs the post-receive hooks once the move is durable. A :class:`Policy` is the
commit guard (:mod:`dcsync.repo.guard`) of the repositories a workspace opens: a local commit's
:class:`~dcsync.repo.guard.Move` is judged as made by this process's user.

Both judge the complete diff of the move (:func:`dcsync.repo.diff.diff_roots`, which lists every stored
field that can change an answer), each change under the permission :func:`permissions` names and
the ctype it is in. A change whose names would not stay inside its ctype's part of the file is
refused to everyone: an ACL rule scoped to ``pixel_*`` must not grant a range named ``/.dcsync``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcsync.errors import AccessDenied, CorruptObject
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host
from dcsync.model.objects import Commit, CtypeTree, RangeTree, RootTree, VersionEntry
from dcsync.model.times import format_time
from dcsync.repo.diff import Change, diff_roots, readable
from dcsync.repo.graph import ancestors
from dcsync.repo.guard import Move, PayloadPath
from dcsync.store import view
from dcsync.store.base import ObjectStore
from dcsync.workspace import hooks
from dcsync.workspace.acl import ACL, Identity, current_identity, required_permission


@dataclass
class Incoming:
    detname: str
    store: ObjectStore
    old: ObjectId | None
    new: ObjectId
    command: str  # "commit", "push", "promote"
    who: Identity
    host: str = ""
    source: str = ""
    payload_path: PayloadPath = field(default=lambda oid: None)
    _changes: list[Change] | None = None

    def roots(self) -> tuple[RootTree | None, RootTree]:
        old = None
        if self.old is not None:
            old = self.store.read_as(self.store.read_commit(self.old).tree, RootTree)
        new = self.store.read_as(self.store.read_commit(self.new).tree, RootTree)
        return old, new

    def changes(self) -> list[Change]:
        if self._changes is None:
            old, new = self.roots()
            self._changes = diff_roots(self.store, old, self.store, new)
        return self._changes

    def commits(self) -> list[dict[str, Any]]:
        """The commits being added (reachable from ``new`` through any parent, not from ``old``),
        oldest first."""
        known = ancestors(self.store, [self.old]) if self.old is not None else set()
        found: dict[ObjectId, Commit] = {}
        todo = [self.new]
        while todo and len(found) < 10_000:
            cid = todo.pop()
            if cid in known or cid in found:
                continue
            found[cid] = self.store.read_commit(cid)
            todo.extend(found[cid].parents)
        ordered = sorted(found.items(), key=lambda kv: (kv[1].time, kv[0]))
        return [
            {
                "commit": cid,
                "author": c.author,
                "host": c.host,
                "time": format_time(c.time),
                "message": c.message,
                "meta": dict(c.meta),
            }
            for cid, c in ordered
        ]


class Policy:
    """The ACL and hooks of one workspace."""

    def __init__(self, root: Path, kind: str, *, hook_timeout: float = hooks.DEFAULT_TIMEOUT) -> None:
        self.root = root
        self.kind = kind
        self.hook_timeout = hook_timeout

    def __repr__(self) -> str:
        return f"<commit guard: the ACL and hooks of {self.kind} workspace {self.root}>"

    def acl(self) -> ACL:
        return ACL.load(self.root, self.kind)

    def check_read(self, who: Identity, detname: str) -> None:
        self.acl().require(who, "read", detname)

    def check(self, incoming: Incoming, *, phase: str) -> list[str]:
        """ACL first (cheap, and its refusal names the exact permission), then the hooks."""
        acl = self.acl()
        if incoming.old is None:
            acl.require(incoming.who, "add", incoming.detname)
        for change in incoming.changes():
            _stays_inside(acl, incoming, change)
            for permission in permissions(change):
                acl.require(incoming.who, permission, incoming.detname, change.ctype)
        if not hooks.programs(self.root, phase):
            return []
        return hooks.run(self.root, phase, self.describe(incoming), timeout=self.hook_timeout)

    def after(self, incoming: Incoming) -> list[str]:
        if not hooks.programs(self.root, "post-receive"):
            return []
        return hooks.run(self.root, "post-receive", self.describe(incoming), timeout=self.hook_timeout)

    def check_commit(self, move: Move, *, phase: str) -> list[str]:
        """A local commit, as the commit guard of a workspace's repositories."""
        return self.check(_local(move), phase=phase)

    def after_commit(self, move: Move) -> list[str]:
        return self.after(_local(move))

    def describe(self, incoming: Incoming) -> dict[str, Any]:
        """The hooks' input (docs/admin.md, "Hook input")."""
        old, new = incoming.roots()
        changes = []
        for c in incoming.changes():
            item: dict[str, Any] = {
                "change": c.kind, "ctype": c.ctype, "range": c.range, "version": c.version,
            }  # fmt: skip
            tree = _range_tree(incoming.store, old if _gone(c) else new, c.ctype, c.range)
            if tree is not None:
                item["begin"] = format_time(tree.begin)
                item["end"] = None if tree.end is None else format_time(tree.end)
                item["range_pars"] = dict(tree.pars)
                item["default"] = tree.default
            entry = next((e for e in (c.new, c.old) if isinstance(e, VersionEntry)), None)
            if entry is not None:
                path = incoming.payload_path(entry.obj) if c.kind in ("added", "changed") else None
                item.update(
                    {
                        "object": entry.obj,
                        "kind": entry.kind,
                        "dtype": entry.dtype,
                        "shape": list(entry.shape),
                        "nbytes": entry.nbytes,
                        "pars": dict(entry.pars),
                        "author": entry.author,
                        "origin": dict(entry.origin),
                        "payload": str(path) if path else None,
                    }
                )
            else:
                item.update({"old": readable(c.old), "new": readable(c.new)})
            changes.append(item)
        return {
            "location": str(self.root),
            "kind": self.kind,
            "detector": incoming.detname,
            "command": incoming.command,
            "user": incoming.who.user,
            "groups": sorted(incoming.who.groups),
            "host": incoming.host,
            "source": incoming.source,
            "old": incoming.old,
            "new": incoming.new,
            "commits": incoming.commits(),
            "changes": changes,
            "existing": _existing(incoming.store, old, {c.ctype for c in incoming.changes() if c.ctype}),
        }


def _local(move: Move) -> Incoming:
    """A commit made here: by this process's user on this host."""
    return Incoming(
        move.detname,
        move.store,
        move.old,
        move.new,
        move.command,
        current_identity(),
        current_host(),
        "local",
        move.payload_path,
    )


def permissions(change: Change) -> tuple[str, ...]:
    """What a change needs: a ctype, range or detector appearing needs ``add``, going ``remove``;
    a range whose bounds move needs both (it is a removal there and an addition here, as dcsync
    itself writes one); a detector's identity changing needs ``admin``; the other kinds as
    :func:`dcsync.workspace.acl.required_permission` says."""
    if _is_level(change):
        if change.old is None:
            return ("add",)
        if change.new is None:
            return ("remove",)
        return ("admin",) if change.kind == "detector" else ("add", "remove")
    return (required_permission(change.kind),)


def _is_level(change: Change) -> bool:
    return change.kind in ("range", "ctype", "detector")


def _gone(change: Change) -> bool:
    """Whether the change takes its level away (its description comes from the old tree)."""
    return change.kind == "removed" or (_is_level(change) and change.new is None)


def _stays_inside(acl: ACL, incoming: Incoming, change: Change) -> None:
    """Refuse (to everyone) a change whose names put it outside its ctype's part of the file: no
    rule's ctype glob can judge where it would land (``pixel_mask`` range ``/.dcsync``)."""
    if change.ctype is None:
        return
    try:
        view.level_path(change.ctype, change.range, change.version if change.range is not None else None)
    except CorruptObject as exc:
        where = " ".join(repr(x) for x in (change.ctype, change.range, change.version) if x is not None)
        raise AccessDenied(
            f"user {incoming.who.user} may not change {incoming.detname} {where} in {acl.kind} "
            f"location {acl.where}: no rule grants a name that leaves its ctype ({exc.message})"
        ) from exc


def _range_tree(
    store: ObjectStore, root: RootTree | None, ctype: str | None, rk: str | None
) -> RangeTree | None:
    if root is None or ctype is None or rk is None or ctype not in root.ctypes:
        return None
    ref = store.read_as(root.ctypes[ctype], CtypeTree).ranges.get(rk)  # type: ignore[call-overload]
    if ref is None:
        return None
    return store.read_as(ref.tree, RangeTree)


def _existing(store: ObjectStore, root: RootTree | None, ctypes: set[str]) -> dict[str, list[dict[str, Any]]]:
    """dtype and shape of every version already there, per changed ctype (for consistency hooks)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if root is None:
        return out
    for name in sorted(ctypes):
        if name not in root.ctypes:
            continue
        ct = store.read_as(root.ctypes[name], CtypeTree)
        rows = out.setdefault(name, [])
        for key, ref in ct.ranges.items():
            tree = store.read_as(ref.tree, RangeTree)
            for vkey, entry in tree.versions.items():
                rows.append(
                    {
                        "range": key,
                        "version": vkey,
                        "kind": entry.kind,
                        "dtype": entry.dtype,
                        "shape": list(entry.shape),
                    }
                )
    return out
