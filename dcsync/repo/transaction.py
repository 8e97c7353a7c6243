"""A transaction: many changes to one detector's tree, one commit.

Each operation is checked when it is called, so an error points at the call, and recorded; at
commit time the operations are replayed on the newest HEAD under the store's lock (on a
:class:`dcsync.repo.work.Work` copy of its tree), so two writers never lose each other's commits.
The commit guard the repository was built with (:mod:`dcsync.repo.guard`) judges the new tree
before HEAD moves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, overload

import numpy as np

from dcsync.errors import (
    CtypeNotFound,
    InputError,
    InvalidTime,
    NotFetched,
    RangeNotFound,
    RemoteNotFound,
    UsageError,
    VersionNotFound,
)
from dcsync.model.fields import INT_MAX, INT_MIN, is_int
from dcsync.model.hashing import ObjectId, canonical_array
from dcsync.model.identity import current_host, current_user
from dcsync.model.names import (
    VersionKey,
    check_ctype,
    check_detname,
    check_par_key,
    check_version_key,
    new_version_key,
    range_key,
)
from dcsync.model.objects import Commit, ParValue, Payload, RangeTree, VersionEntry
from dcsync.model.times import TimeLike, format_time, now_ns, time_arg
from dcsync.repo.guard import CommitGuard, Move
from dcsync.repo.trees import Located, consistent
from dcsync.repo.work import Work
from dcsync.store.base import ObjectStore
from dcsync.store.refs import HEAD, LogRecord

Op = Callable[[Work], Any]


class Transaction:
    """Many changes, one commit. Use as a context manager; leaving it without an error commits.

    Each method validates at once (so errors point at the call) and records an operation; at commit
    time the operations are replayed on the newest HEAD while the store is locked, and ``guard``
    judges the result before HEAD moves.
    """

    def __init__(
        self,
        store: ObjectStore,
        guard: CommitGuard,
        message: str,
        *,
        author: str | None,
        command: str,
        meta: Mapping[str, Any] | None,
    ) -> None:
        self.store = store
        self.guard = guard
        self.message = message
        self.author = author or current_user()
        if "\0" in self.author:  # each version keeps its author as an HDF5 attribute, which cannot hold NUL
            raise InputError(f"author {self.author!r} contains a NUL character")
        self.command = command
        self.meta = dict(meta or {})
        self._ops: list[Op] = []
        self._payloads: dict[ObjectId, Payload] = {}
        self._work = consistent(store, lambda: Work(store, store.head()))
        self.commit_id: ObjectId | None = None
        self.summary: list[str] = []
        self._scratch: Path | None = None
        self.phase = "pre-commit"  # which hooks judge it; a promotion arrives like a push
        self._landed_from: ObjectId | None = None

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()

    def _do(self, op: Op) -> Any:
        result = op(self._work)
        self._ops.append(op)
        return result

    # -- operations ------------------------------------------------------------------------------
    def add(
        self,
        ctype: str,
        value: Payload | np.ndarray,
        begin: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        begin_ns: int | None = None,
        end_ns: int | None = None,
        pars: Mapping[str, ParValue] | None = None,
        make_default: bool = True,
        tsprod: TimeLike | None = None,
        tsprod_ns: int | None = None,
        origin: Mapping[str, Any] | None = None,
        version: str | None = None,
        new_ctype: bool = False,
    ) -> Located:
        """Add a version to the range [begin, end); the new version becomes the pinned default
        unless ``make_default`` is false, in which case lookups keep returning what they did.

        ``version`` keeps a key chosen elsewhere (a promotion keeps the source's, so every message
        about the version names the key its promoter knows); it must be new in the ctype.

        Times are given as users write them (ISO text, datetime, unix seconds, "now") or, through
        the ``*_ns`` parameters, in nanoseconds. No end means open; no tsprod means now.

        A ctype that is neither one psana knows nor already in the detector needs ``new_ctype``
        (a misspelled ctype would otherwise quietly start a new one).
        """
        self._work.check_known_ctype(ctype, new_ctype)
        t0 = time_arg("begin", begin, begin_ns)
        if t0 is None:
            raise UsageError(f"add {ctype}: the range needs a begin (begin= or begin_ns=)")
        t1 = time_arg("end", end, end_ns)
        produced = time_arg("tsprod", tsprod, tsprod_ns)
        if t1 is not None and t1 <= t0:
            raise InvalidTime(f"end {format_time(t1)} is not after begin {format_time(t0)}")
        payload = _payload(ctype, value)
        entry = VersionEntry.describe(
            payload,
            tsprod=now_ns() if produced is None else produced,
            author=self.author,
            pars=_check_pars(pars or {}),
        )
        if origin:
            entry = replace(entry, origin=dict(origin))
        self._payloads[entry.obj] = payload
        key = range_key(t0, t1)
        if version is not None:
            vkey = check_version_key(version)
            self._work.require_new_version(ctype, vkey)  # at once, so the error points at this call
        else:
            vkey = new_version_key(f"{entry.obj}{entry.tsprod}{current_host()}{os.getpid()}")

        def op(w: Work) -> Located:
            if version is not None:
                w.require_new_version(ctype, vkey)  # again on replay: another writer may have it
            tree = _with_version(w.range(ctype, key) or RangeTree(t0, t1), vkey, entry, make_default)
            w.set_range(ctype, key, tree)
            return Located(ctype, key, tree, vkey, entry)

        self.summary.append(f"add {ctype} {key} {vkey}")
        return self._do(op)  # type: ignore[no-any-return]

    @overload
    def set_default(self, ctype: str, version: str, *, range: str | None = None) -> Located: ...

    @overload
    def set_default(self, ctype: str, version: None, *, range: str | None = None) -> None: ...

    def set_default(self, ctype: str, version: str | None, *, range: str | None = None) -> Located | None:
        """Pin a version as its range's default, or (``version=None``) unpin ``range`` so the most
        recently produced version counts again."""
        loc: Located | None = None
        if version is not None:
            loc = self._work.find_version(ctype, version, range)
            rkey, vkey = loc.range, loc.version
        else:
            if range is None:
                raise RangeNotFound(f"{ctype}: unsetting a default needs the range")
            rkey, vkey, loc = self._work.range_key(ctype, range), None, None

        def op(w: Work) -> None:
            tree = w.range(ctype, rkey)
            if tree is None or (vkey is not None and vkey not in tree.versions):
                raise VersionNotFound(f"{ctype} range {rkey} has no version {vkey}")
            w.set_range(ctype, rkey, replace(tree, default=vkey))

        self.summary.append(f"default {ctype} {rkey} {vkey or '(latest)'}")
        self._do(op)
        return loc

    def take_version(
        self, ctype: str, prefix: str, *, ref: str, range: str | None = None, make_default: bool = True
    ) -> Located:
        """Bring a version from another ref's tree (a fetched ``remotes/<name>``) into HEAD.

        The entry keeps its key and everything else, in a range of the same bounds, so a later
        merge with that side sees one version both sides added alike, not a conflict: after a pull
        stopped on two pinned defaults, taking and pinning the remote's version lets the pull go
        through. Like :meth:`add`, it becomes the pinned default unless ``make_default`` is false.
        Its payload must be in this file (a partial clone may have left it out).
        """
        commit = self.store.refs().get(ref)
        detname = self._work.root.detname
        if commit is None:
            raise RemoteNotFound(f"{detname} has no {ref}: fetch from that remote first")
        try:
            loc = Work(self.store, commit).find_version(ctype, prefix, range)
        except (CtypeNotFound, RangeNotFound, VersionNotFound) as exc:
            raise type(exc)(f"{ref}: {exc.message}") from exc
        if not self.store.has(loc.entry.obj):
            raise NotFetched(
                f"{detname} {ctype} {loc.range} {loc.version} of {ref}: its payload {loc.entry.obj} was "
                "not fetched (a partial clone); widen the clone's filter and fetch again"
            )
        theirs = loc.tree

        def op(w: Work) -> Located:
            tree = w.range(ctype, loc.range) or RangeTree(theirs.begin, theirs.end, pars=dict(theirs.pars))
            tree = _with_version(tree, loc.version, loc.entry, make_default)
            w.set_range(ctype, loc.range, tree)
            return replace(loc, tree=tree)

        self.summary.append(f"take {ctype} {loc.range} {loc.version} from {ref}")
        return self._do(op)  # type: ignore[no-any-return]

    def remove(self, ctype: str, *, range: str | None = None, version: str | None = None) -> list[str]:
        """Remove a version, a whole range, or (neither given) the whole ctype; payloads stay in history."""
        if version is not None:
            loc = self._work.find_version(ctype, version, range)
            rkey, vkey = loc.range, loc.version
            what = f"{ctype} {rkey} {vkey}"

            def op(w: Work) -> None:
                tree = w.range(ctype, rkey)
                if tree is None or vkey not in tree.versions:
                    raise VersionNotFound(f"{ctype} range {rkey} has no version {vkey}")
                versions = {k: v for k, v in tree.versions.items() if k != vkey}
                w.set_range(
                    ctype,
                    rkey,
                    replace(tree, versions=versions, default=None if tree.default == vkey else tree.default),
                )
        elif range is not None:
            rkey = self._work.range_key(ctype, range)
            what = f"{ctype} {rkey}"

            def op(w: Work) -> None:
                if w.range(ctype, rkey) is None:
                    raise RangeNotFound(f"{ctype} has no range {rkey}")
                w.set_range(ctype, rkey, None)
        else:
            self._work.ctype(ctype)  # raises CtypeNotFound
            what = ctype

            def op(w: Work) -> None:
                w.ctype(ctype)
                w.set_ctype(ctype, None)

        self.summary.append(f"rm {what}")
        self._do(op)
        return [what]

    def set_pars(
        self,
        pars: Mapping[str, ParValue | None],
        *,
        ctype: str | None = None,
        range: str | None = None,
        version: str | None = None,
        new_ctype: bool = False,
    ) -> None:
        """Merge parameters into a level (a value of None deletes the key). On a ctype the detector
        does not have yet this creates it, so the same names as :meth:`add` need ``new_ctype``."""
        for key in pars:
            check_par_key(key)
        if ctype is not None and range is None and version is None:
            self._work.check_known_ctype(ctype, new_ctype)
        elif ctype is not None:
            check_ctype(ctype)  # a range or version must exist: its lookup names what is missing

        def merged(old: Mapping[str, ParValue]) -> dict[str, ParValue]:
            out = dict(old)
            for k, v in pars.items():
                if v is None:
                    out.pop(k, None)
                else:
                    out[k] = _check_par_value(k, v)
            return out

        if ctype is None:
            self._do(lambda w: setattr(w, "root", replace(w.root, pars=merged(w.root.pars))))
            return
        if version is not None:
            loc = self._work.find_version(ctype, version, range)

            def op(w: Work) -> None:
                tree = w.range(ctype, loc.range)
                if tree is None or loc.version not in tree.versions:  # a commit meanwhile removed it
                    raise VersionNotFound(f"{ctype} range {loc.range} has no version {loc.version}")
                entry = tree.versions[loc.version]
                versions = {**tree.versions, loc.version: replace(entry, pars=merged(entry.pars))}
                w.set_range(ctype, loc.range, replace(tree, versions=versions))
        elif range is not None:
            rkey = self._work.range_key(ctype, range)

            def op(w: Work) -> None:
                tree = w.range(ctype, rkey)
                if tree is None:
                    raise RangeNotFound(f"{ctype} has no range {rkey}")
                w.set_range(ctype, rkey, replace(tree, pars=merged(tree.pars)))
        else:

            def op(w: Work) -> None:
                ct = w.ctype(ctype, create=True)
                w.set_ctype(ctype, replace(ct, pars=merged(ct.pars)))

        self._do(op)

    def set_links(self, *, predecessor: str | None = None, successor: str | None = None) -> None:
        for name in (predecessor, successor):
            if name:
                check_detname(name)

        def op(w: Work) -> None:
            w.root = replace(
                w.root,
                predecessor=w.root.predecessor if predecessor is None else predecessor,
                successor=w.root.successor if successor is None else successor,
            )

        self._do(op)

    # -- commit ----------------------------------------------------------------------------------
    def commit(self) -> ObjectId | None:
        """Write everything as one commit; None when nothing changed."""
        try:
            cid = self._commit()
            if cid is not None and self.phase == "pre-receive":  # arrived like a push: post-receive reacts
                self.guard.after_commit(self._move(self._landed_from, cid))
            return cid
        finally:
            self._cleanup()

    def _commit(self) -> ObjectId | None:
        store = self.store
        with store.writing():
            head = store.head()
            work = self._work
            if head != work.base:  # someone committed since we started: replay on their commit
                work = Work(store, head)
                for op in self._ops:
                    op(work)
            for oid, payload in self._payloads.items():
                store.put_payload(payload, known_id=oid)
            tree = work.write(store)
            if head is not None and tree == store.read_commit(head).tree:
                return None
            message = self.message or "; ".join(self.summary) or "commit"
            commit = Commit(
                tree, (head,) if head else (), self.author, current_host(), now_ns(), message, self.meta
            )
            cid = store.put_object(commit)
            self._landed_from = head
            self.guard.check_commit(self._move(head, cid), phase=self.phase)
            store.set_ref(HEAD, head, cid, LogRecord(HEAD, head, cid, self.command, message, extra=self.meta))
        self.commit_id = cid
        return cid

    def _move(self, head: ObjectId | None, new: ObjectId) -> Move:
        return Move(self._work.root.detname, self.store, head, new, self.command, self._payload_path)

    def _payload_path(self, oid: ObjectId) -> Path | None:
        """A new payload as a file, for hooks that check values (written only when asked)."""
        value = self._payloads.get(oid)
        if value is None:
            return None
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="dcsync-hook-"))
        if isinstance(value, str):
            path = self._scratch / f"{oid}.text"
            path.write_bytes(value.encode("utf-8"))
        else:
            path = self._scratch / f"{oid}.npy"
            np.save(path, value, allow_pickle=False)
        return path

    def _cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _payload(ctype: str, value: Payload | np.ndarray) -> Payload:
    """A value as it is stored: text as UTF-8 without NUL (HDF5 strings), arrays canonical."""
    if not isinstance(value, str):
        return canonical_array(np.asarray(value))
    if "\0" in value:
        raise InputError(f"{ctype}: text constants may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: text is stored as UTF-8
        raise InputError(f"{ctype}: text constants must be valid Unicode ({exc.reason})") from exc
    return value


def _with_version(tree: RangeTree, vkey: VersionKey, entry: VersionEntry, make_default: bool) -> RangeTree:
    """``tree`` with a version added: pinned as the default, or else keeping lookups returning what
    they returned (an unpinned range with versions pins its effective one first)."""
    default = tree.default
    if make_default:
        default = vkey
    elif default is None and tree.versions:
        default = tree.effective()
    return replace(tree, default=default, versions={**tree.versions, vkey: entry})


def _check_par_value(key: str, value: Any) -> ParValue:
    if is_int(value) and not INT_MIN <= value <= INT_MAX:
        raise InputError(f"parameter {key!r}: {value} is out of range (integers are int64)")
    if isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"parameter {key!r}: values must be str, int, float or bool, not {type(value).__name__}")


def _check_pars(pars: Mapping[str, Any]) -> dict[str, ParValue]:
    return {check_par_key(k): _check_par_value(k, v) for k, v in pars.items()}
