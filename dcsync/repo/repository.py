"""A detector repository: opening one, and the read API (lookup by time, versions, log).

This is where the lookup rule lives: among ranges with ``begin <= t < end`` the latest begin wins,
on equal begins the narrower range; in the winning range the pinned default, else the most
recently produced version. Version keys resolve by unique prefix. Writing goes through a
:class:`dcsync.repo.transaction.Transaction`, which the repository's commit guard
(:mod:`dcsync.repo.guard`) judges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcsync.errors import (
    CtypeNotFound,
    NotFetched,
    NoValidConstant,
    ObjectNotFound,
    RangeNotFound,
    UsageError,
    VersionNotFound,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.model.names import (
    RangeKey,
    VersionKey,
    check_detname,
    range_key,
    resolve_prefix,
    resolve_range,
    split_detname,
)
from dcsync.model.objects import Commit, CtypeTree, Payload, RangeRef, RangeTree, RootTree, VersionEntry
from dcsync.model.times import TimeLike, format_time, now_ns, time_arg
from dcsync.repo.guard import DEFAULT_GUARD, CommitGuard
from dcsync.repo.transaction import Transaction
from dcsync.repo.trees import Located, consistent, read_commit, read_ctype, read_range, read_root
from dcsync.repo.work import Work
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord


@dataclass(frozen=True)
class Constant:
    """What a lookup returns: the value and where it came from."""

    detname: str
    ctype: str
    range: RangeKey
    begin: int
    end: int | None
    version: VersionKey
    entry: VersionEntry
    pinned: bool
    value: Payload

    @property
    def obj(self) -> ObjectId:
        return self.entry.obj


class Repository:
    """One detector's constants and their history.

    ``guard`` judges every commit made through it (:mod:`dcsync.repo.guard`): a workspace passes
    its ACL and hooks in (:meth:`dcsync.workspace.workspace.Workspace.repository`); without one, a
    file gets the default guard, whose ``repr`` says so.
    """

    def __init__(self, store: ObjectStore, *, guard: CommitGuard = DEFAULT_GUARD) -> None:
        self.store = store
        self.guard = guard

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: Path | str, *, lock_timeout: float = 30.0, guard: CommitGuard = DEFAULT_GUARD
    ) -> Repository:
        """Open a repository file. Its workspace's rules apply only when passed in as ``guard``
        (:func:`dcsync.workspace.workspace.open_repository` finds them)."""
        return cls(HDF5Store(path, lock_timeout=lock_timeout), guard=guard)

    @classmethod
    def create(
        cls,
        path: Path | str | None,
        detname: str,
        *,
        predecessor: str = "",
        message: str | None = None,
        lock_timeout: float = 30.0,
        guard: CommitGuard = DEFAULT_GUARD,
    ) -> Repository:
        """A new repository (an HDF5 file, or in memory when ``path`` is None) with its first commit;
        ``guard`` judges the commits after it."""
        dettype, detid = split_detname(detname)
        if predecessor:
            check_detname(predecessor)
        store: ObjectStore = (
            MemoryStore() if path is None else HDF5Store.create(path, lock_timeout=lock_timeout)
        )
        repo = cls(store, guard=guard)
        root = RootTree(dettype, detid, now_ns(), predecessor=predecessor)
        with store.writing():
            tree = store.put_object(root)
            commit = Commit(
                tree, (), current_user(), current_host(), now_ns(), message or f"create {detname}"
            )
            cid = store.put_object(commit)
            store.set_ref(HEAD, None, cid, LogRecord(HEAD, None, cid, "create", commit.message))
        return repo

    def close(self) -> None:
        if isinstance(self.store, HDF5Store):
            self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repository({self.store.where!r})"

    # -- reading ---------------------------------------------------------------------------------
    def head(self) -> ObjectId | None:
        return self.store.head()

    def commit(self, commit_id: ObjectId | None = None) -> Commit:
        return read_commit(self.store, commit_id)

    def root(self, commit_id: ObjectId | None = None) -> RootTree:
        return read_root(self.store, commit_id)

    @property
    def detname(self) -> str:
        return str(consistent(self.store, lambda: self.root().detname))

    def ctypes(self) -> list[str]:
        return sorted(consistent(self.store, lambda: self.root().ctypes))

    def ctype_tree(self, ctype: str, root: RootTree | None = None) -> CtypeTree:
        return read_ctype(self.store, root or self.root(), ctype)

    def range_tree(self, ref: RangeRef) -> RangeTree:
        return read_range(self.store, ref)

    def ranges(self, ctype: str) -> list[tuple[RangeKey, RangeTree]]:
        """Ranges of a ctype ordered by begin, then end (open last)."""

        def read() -> list[tuple[RangeKey, RangeTree]]:
            ct = self.ctype_tree(ctype)
            items = sorted(
                ct.ranges.items(),
                key=lambda kv: (kv[1].begin, float("inf") if kv[1].end is None else kv[1].end),
            )
            return [(k, self.range_tree(r)) for k, r in items]

        return consistent(self.store, read)

    def find_range(self, ctype: str, key_or_prefix: str) -> tuple[RangeKey, RangeTree]:
        ct = consistent(self.store, lambda: self.ctype_tree(ctype))
        key = resolve_range(key_or_prefix, list(ct.ranges), f"{self.detname} {ctype}")
        if not key:
            raise RangeNotFound(f"{self.detname} {ctype} has no range {key_or_prefix!r}")
        rk = RangeKey(key)
        return rk, consistent(self.store, lambda: self.range_tree(ct.ranges[rk]))

    def find_version(self, ctype: str, prefix: str, *, range: str | None = None) -> Located:
        """A version by unique key prefix, in one range or across the ctype's ranges."""

        def read() -> Located:
            ct = self.ctype_tree(ctype)
            keys = [RangeKey(range)] if range is not None else list(ct.ranges)
            candidates: dict[str, RangeKey] = {}
            trees: dict[RangeKey, RangeTree] = {}
            for rk in keys:
                trees[rk] = self.range_tree(ct.ranges[rk])
                candidates.update({v: rk for v in trees[rk].versions})
            where = f"{self.detname} {ctype}" + (f" range {range}" if range else "")
            key = resolve_prefix(prefix, list(candidates), "version", where)
            if not key:
                raise VersionNotFound(f"{where} has no version {prefix!r}")
            rk = candidates[key]
            return Located(ctype, rk, trees[rk], VersionKey(key), trees[rk].versions[VersionKey(key)])

        if range is not None:
            range = self.find_range(ctype, range)[0]
        return consistent(self.store, read)

    def fetched_version(self, ctype: str, prefix: str) -> dict[str, Located]:
        """The remote-tracking refs (``remotes/<name>``) whose tree has exactly one version of
        ``ctype`` matching ``prefix``, with it: where a version missing from HEAD can be taken from."""
        found: dict[str, Located] = {}
        for ref, commit in sorted(self.store.refs().items()):
            if ref.startswith("remotes/") and self.store.has(commit):
                with contextlib.suppress(CtypeNotFound, RangeNotFound, VersionNotFound, UsageError):
                    found[ref] = Work(self.store, commit).find_version(ctype, prefix, None)
        return found

    def locate(
        self,
        ctype: str,
        at: TimeLike | None = None,
        version: str | None = None,
        *,
        at_ns: int | None = None,
    ) -> Located:
        """Which version a lookup picks, without reading the payload.

        ``at`` is a time as users write it (ISO text, datetime, unix seconds, "now"); ``at_ns``
        the same in nanoseconds. Neither: now, or with ``version`` any range.
        """
        _check_lookup_args(ctype, version)
        t_given = time_arg("at", at, at_ns)
        t = now_ns() if t_given is None else t_given

        def read() -> Located:
            root = self.root()
            ct = self.ctype_tree(ctype, root)
            key = ct.lookup(t)
            if key is None:
                raise NoValidConstant(f"{root.detname} {ctype}: no validity range contains {format_time(t)}")
            tree = self.range_tree(ct.ranges[key])
            if version is not None:
                return self.find_version(ctype, version, range=key)
            vkey = tree.effective()
            if vkey is None:
                raise NoValidConstant(f"{root.detname} {ctype} range {key} has no versions")
            return Located(ctype, key, tree, vkey, tree.versions[vkey])

        if version is not None and t_given is None:
            return self.find_version(ctype, version)
        return consistent(self.store, read)

    def replaced_by_add(self, ctype: str, *, begin_ns: int, end_ns: int | None) -> Located | None:
        """The version a new one added to [begin_ns, end_ns) stands in for, to compare the two (``dcsync
        add`` reports the change): that range's current version when the range exists; else what
        lookups at ``begin_ns`` returned (a range the new one narrows or follows); else the nearest
        range before, else after it. None for the first constant of a ctype."""

        def read() -> Located | None:
            root = self.root()
            if ctype not in root.ctypes:
                return None
            ct = self.ctype_tree(ctype, root)
            key: RangeKey | None = range_key(begin_ns, end_ns)
            if key not in ct.ranges:
                key = ct.lookup(begin_ns)
            if key is None and ct.ranges:
                before = [k for k, r in ct.ranges.items() if r.begin <= begin_ns]
                after = [k for k, r in ct.ranges.items() if r.begin > begin_ns]
                key = (
                    max(before, key=lambda k: ct.ranges[k].begin)
                    if before
                    else min(after, key=lambda k: ct.ranges[k].begin)
                )
            if key is None:
                return None
            tree = self.range_tree(ct.ranges[key])
            vkey = tree.effective()
            return None if vkey is None else Located(ctype, key, tree, vkey, tree.versions[vkey])

        return consistent(self.store, read)

    def get(
        self,
        ctype: str,
        at: TimeLike | None = None,
        version: str | None = None,
        *,
        at_ns: int | None = None,
    ) -> Constant:
        """The constant valid at ``at`` (default now), or a named version; the payload is verified.

        Times as in :meth:`locate`: ``at`` as users write it, or ``at_ns`` in nanoseconds.
        """
        _check_lookup_args(ctype, version)
        t = time_arg("at", at, at_ns)

        def read() -> Constant:
            loc = self.locate(ctype, version=version, at_ns=t)
            try:
                value = self.store.read_payload(loc.entry.obj)
            except ObjectNotFound as exc:
                if self.store.has(loc.entry.obj):
                    raise
                # The tree names it but this file lacks it: only a partial clone does that, since a
                # commit's objects land together.
                raise NotFetched(
                    f"{self.detname} {ctype} {loc.range} {loc.version}: its payload {loc.entry.obj} was "
                    "not fetched (a partial clone); widen the clone's filter or pull from a full copy"
                ) from exc
            return Constant(
                self.root().detname,
                ctype,
                loc.range,
                loc.tree.begin,
                loc.tree.end,
                loc.version,
                loc.entry,
                loc.tree.default == loc.version,
                value,
            )

        return consistent(self.store, read)

    def log(self, last: int | None = None) -> list[LogRecord]:
        return consistent(self.store, lambda: self.store.log(last))

    def commits(self, start: ObjectId | None = None) -> Iterator[tuple[ObjectId, Commit]]:
        """Commits along the first-parent chain, newest first."""
        current = start or self.head()
        while current is not None:
            commit = self.store.read_commit(current)
            yield current, commit
            current = commit.parents[0] if commit.parents else None

    # -- writing ---------------------------------------------------------------------------------
    def transaction(
        self,
        message: str = "",
        *,
        author: str | None = None,
        command: str = "commit",
        meta: Mapping[str, Any] | None = None,
    ) -> Transaction:
        return Transaction(self.store, self.guard, message, author=author, command=command, meta=meta)


def _check_lookup_args(ctype: object, version: object) -> None:
    """A ctype and a version key prefix are text: anything else is the caller's mistake, said as
    such (deep in a read it would surface as a bare TypeError)."""
    if not isinstance(ctype, str):
        raise UsageError(f"ctype must be a name (text), not {ctype!r}")
    if version is not None and not isinstance(version, str):
        raise UsageError(f"version must be a key or key prefix (text), not {version!r}")
