"""A detector repository: the read API (lookup by time, versions, log) and transactions.

This is where the model's rules live: the lookup rule (among ranges with ``begin <= t < end`` the
latest begin wins, on equal begins the narrower range; in the winning range the pinned default,
else the most recently produced version), version keys resolved by unique prefix, and commits
built from a transaction's operations. A :class:`Transaction` records its operations and replays
them on the newest HEAD under the lock, so two writers never lose each other's commits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from dcsync.errors import (
    CtypeNotFound,
    InputError,
    InvalidTime,
    NotFetched,
    NotFound,
    NoValidConstant,
    ObjectNotFound,
    RangeNotFound,
    RepositoryError,
    UsageError,
    VersionNotFound,
)
from dcsync.model.fields import INT_MAX, INT_MIN, is_int
from dcsync.model.hashing import ObjectId, canonical_array
from dcsync.model.identity import current_host, current_user
from dcsync.model.names import (
    RangeKey,
    VersionKey,
    check_ctype,
    check_detname,
    check_known_ctype,
    check_par_key,
    check_version_key,
    new_version_key,
    range_key,
    resolve_prefix,
    resolve_range,
    split_detname,
)
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    ParValue,
    Payload,
    RangeRef,
    RangeTree,
    RootTree,
    VersionEntry,
)
from dcsync.model.times import TimeLike, format_time, now_ns, time_arg
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord

if TYPE_CHECKING:  # imported where a commit needs them: reads never check a policy (start-up)
    from dcsync.workspace.policy import Incoming, Policy


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


@dataclass(frozen=True)
class Located:
    """A version found by name: its range and entry, without the payload."""

    ctype: str
    range: RangeKey
    tree: RangeTree
    version: VersionKey
    entry: VersionEntry


class Repository:
    """One detector's constants and their history."""

    def __init__(self, store: ObjectStore, *, policy: Policy | None = None) -> None:
        self.store = store
        self._policy = policy
        self._find_policy: Path | None = None  # a file whose workspace's policy is looked up on use

    @property
    def policy(self) -> Policy | None:
        """The ACL and hooks of the workspace the file sits in; found when a commit needs them,
        so reads never pay for parsing the workspace's configuration."""
        if self._find_policy is not None:
            from dcsync.workspace.workspace import Workspace  # the workspace module builds on this one

            ws = Workspace.containing(self._find_policy)
            self._policy = ws.policy() if ws is not None else None
            self._find_policy = None
        return self._policy

    @policy.setter
    def policy(self, value: Policy | None) -> None:
        self._policy, self._find_policy = value, None

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, lock_timeout: float = 30.0, policy: bool = True) -> Repository:
        """Open a repository file; inside a workspace, its ACL and hooks apply to commits."""
        repo = cls(HDF5Store(path, lock_timeout=lock_timeout))
        if policy:
            repo._find_policy = Path(path)
        return repo

    @classmethod
    def create(
        cls,
        path: Path | str | None,
        detname: str,
        *,
        predecessor: str = "",
        message: str | None = None,
        lock_timeout: float = 30.0,
    ) -> Repository:
        """A new repository (an HDF5 file, or in memory when ``path`` is None) with its first commit."""
        dettype, detid = split_detname(detname)
        if predecessor:
            check_detname(predecessor)
        store: ObjectStore = (
            MemoryStore() if path is None else HDF5Store.create(path, lock_timeout=lock_timeout)
        )
        repo = cls(store)
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
    def _consistent(self, read: Callable[[], Any]) -> Any:
        if isinstance(self.store, HDF5Store):
            return self.store.consistent(read)
        return read()

    def head(self) -> ObjectId | None:
        return self.store.head()

    def commit(self, commit_id: ObjectId | None = None) -> Commit:
        cid = commit_id or self.head()
        if cid is None:
            raise RepositoryError(f"{self.store.where} has no commits")
        return self.store.read_commit(cid)

    def root(self, commit_id: ObjectId | None = None) -> RootTree:
        return self.store.read_as(self.commit(commit_id).tree, RootTree)

    @property
    def detname(self) -> str:
        return str(self._consistent(lambda: self.root().detname))

    def ctypes(self) -> list[str]:
        return sorted(self._consistent(lambda: self.root().ctypes))

    def ctype_tree(self, ctype: str, root: RootTree | None = None) -> CtypeTree:
        root = root or self.root()
        tid = root.ctypes.get(ctype)
        if tid is None:
            known = ", ".join(sorted(root.ctypes)) or "none"
            raise CtypeNotFound(f"{root.detname} has no ctype {ctype!r} (it has: {known})")
        return self.store.read_as(tid, CtypeTree)

    def range_tree(self, ref: RangeRef) -> RangeTree:
        return self.store.read_as(ref.tree, RangeTree)

    def ranges(self, ctype: str) -> list[tuple[RangeKey, RangeTree]]:
        """Ranges of a ctype ordered by begin, then end (open last)."""

        def read() -> list[tuple[RangeKey, RangeTree]]:
            ct = self.ctype_tree(ctype)
            items = sorted(
                ct.ranges.items(),
                key=lambda kv: (kv[1].begin, float("inf") if kv[1].end is None else kv[1].end),
            )
            return [(k, self.range_tree(r)) for k, r in items]

        return self._consistent(read)  # type: ignore[no-any-return]

    def find_range(self, ctype: str, key_or_prefix: str) -> tuple[RangeKey, RangeTree]:
        ct = self._consistent(lambda: self.ctype_tree(ctype))
        key = resolve_range(key_or_prefix, list(ct.ranges), f"{self.detname} {ctype}")
        if not key:
            raise RangeNotFound(f"{self.detname} {ctype} has no range {key_or_prefix!r}")
        return RangeKey(key), self._consistent(lambda: self.range_tree(ct.ranges[key]))

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
        return self._consistent(read)  # type: ignore[no-any-return]

    def fetched_version(self, ctype: str, prefix: str) -> dict[str, Located]:
        """The remote-tracking refs (``remotes/<name>``) whose tree has exactly one version of
        ``ctype`` matching ``prefix``, with it: where a version missing from HEAD can be taken from."""
        found: dict[str, Located] = {}
        for ref, commit in sorted(self.store.refs().items()):
            if ref.startswith("remotes/") and self.store.has(commit):
                with contextlib.suppress(CtypeNotFound, RangeNotFound, VersionNotFound, UsageError):
                    found[ref] = _Work(self, commit).find_version(ctype, prefix, None)
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
        return self._consistent(read)  # type: ignore[no-any-return]

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

        return self._consistent(read)  # type: ignore[no-any-return]

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

        return self._consistent(read)  # type: ignore[no-any-return]

    def log(self, last: int | None = None) -> list[LogRecord]:
        return self._consistent(lambda: self.store.log(last))  # type: ignore[no-any-return]

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
        return Transaction(self, message, author=author, command=command, meta=meta)


_PENDING = ObjectId("0" * 32)  # a placeholder id until write() stores the changed subtree


class _Work:
    """A mutable working copy of the tree, loaded lazily from a base commit.

    Changed ranges and ctypes are kept decoded and marked dirty; :meth:`write` stores them
    bottom-up, so a commit rewrites only the path from a change to the root.
    """

    def __init__(self, repo: Repository, base: ObjectId | None) -> None:
        self.repo = repo
        self.base = base
        self.root = repo.root(base)
        self.ctypes: dict[str, CtypeTree] = {}
        self.ranges: dict[tuple[str, RangeKey], RangeTree] = {}
        self.dirty_ranges: set[tuple[str, RangeKey]] = set()
        self.dirty_ctypes: set[str] = set()

    def ctype(self, name: str, *, create: bool = False) -> CtypeTree:
        if name not in self.ctypes:
            loaded = name in self.root.ctypes
            self.ctypes[name] = self.repo.ctype_tree(name, self.root) if loaded else CtypeTree()
        tree = self.ctypes[name]
        if not create and not tree.ranges and not tree.pars:
            raise CtypeNotFound(f"{self.root.detname} has no ctype {name!r}")
        return tree

    def has_ctype(self, name: str) -> bool:
        """Whether the tree as this transaction has left it so far has the ctype."""
        tree = self.ctypes.get(name)
        return name in self.root.ctypes if tree is None else bool(tree.ranges or tree.pars)

    def check_known_ctype(self, name: str, new_ctype: bool) -> None:
        have = [c for c in {*self.root.ctypes, *self.ctypes} if self.has_ctype(c)]
        check_known_ctype(name, have, self.root.detname, new_ctype=new_ctype)

    def range_key(self, ctype: str, prefix: str) -> RangeKey:
        key = resolve_range(prefix, list(self.ctype(ctype).ranges), f"{self.root.detname} {ctype}")
        if not key:
            raise RangeNotFound(f"{self.root.detname} {ctype} has no range {prefix!r}")
        return RangeKey(key)

    def range(self, ctype: str, key: RangeKey) -> RangeTree | None:
        if (ctype, key) not in self.ranges:
            ref = self.ctype(ctype, create=True).ranges.get(key)
            if ref is None:
                return None
            self.ranges[(ctype, key)] = self.repo.range_tree(ref)
        return self.ranges[(ctype, key)]

    def find_version(self, ctype: str, prefix: str, range: str | None) -> Located:
        keys = [self.range_key(ctype, range)] if range else list(self.ctype(ctype).ranges)
        found: dict[str, tuple[RangeKey, RangeTree]] = {}
        for rk in keys:
            tree = self.range(ctype, rk)
            if tree is not None:
                found.update({v: (rk, tree) for v in tree.versions})
        where = f"{self.root.detname} {ctype}" + (f" range {keys[0]}" if range else "")
        key = resolve_prefix(prefix, list(found), "version", where)
        if not key:
            raise VersionNotFound(f"{where} has no version {prefix!r}")
        rk, tree = found[key]
        return Located(ctype, rk, tree, VersionKey(key), tree.versions[VersionKey(key)])

    def require_new_version(self, ctype: str, vkey: VersionKey) -> None:
        """Refuse a kept version key the ctype already has (keys name one version per ctype)."""
        for rk in self.ctype(ctype, create=True).ranges:
            tree = self.range(ctype, rk)
            if tree is not None and vkey in tree.versions:
                raise UsageError(f"{self.root.detname} {ctype} already has a version {vkey} (range {rk})")

    def set_range(self, ctype: str, key: RangeKey, tree: RangeTree | None) -> None:
        """Replace a range; an empty range means nothing and is pruned."""
        ct = self.ctype(ctype, create=True)
        ranges = dict(ct.ranges)
        if tree is None or not tree.versions:
            ranges.pop(key, None)
            self.ranges.pop((ctype, key), None)
            self.dirty_ranges.discard((ctype, key))
        else:
            ranges[key] = RangeRef(tree.begin, tree.end, _PENDING)
            self.ranges[(ctype, key)] = tree
            self.dirty_ranges.add((ctype, key))
        self.ctypes[ctype] = replace(ct, ranges=ranges)
        self.dirty_ctypes.add(ctype)

    def set_ctype(self, name: str, tree: CtypeTree | None) -> None:
        """Replace a ctype's own fields; None removes it with all its ranges."""
        if tree is None:
            self.ranges = {k: v for k, v in self.ranges.items() if k[0] != name}
            self.dirty_ranges = {k for k in self.dirty_ranges if k[0] != name}
        self.ctypes[name] = tree or CtypeTree()
        self.dirty_ctypes.add(name)

    def write(self, store: ObjectStore) -> ObjectId:
        """Store the changed trees bottom-up and return the new root's id."""
        for ctype, key in sorted(self.dirty_ranges):
            tid = store.put_object(self.ranges[(ctype, key)])
            ct = self.ctypes[ctype]
            self.ctypes[ctype] = replace(ct, ranges={**ct.ranges, key: replace(ct.ranges[key], tree=tid)})
        self.dirty_ranges.clear()
        ctypes = dict(self.root.ctypes)
        for name in sorted(self.dirty_ctypes):
            ct = self.ctypes[name]
            if ct.ranges or ct.pars:
                ctypes[name] = store.put_object(ct)
            else:
                ctypes.pop(name, None)
        self.dirty_ctypes.clear()
        self.root = replace(self.root, ctypes=ctypes)
        return store.put_object(self.root)


Op = Callable[[_Work], Any]


class Transaction:
    """Many changes, one commit. Use as a context manager; leaving it without an error commits.

    Each method validates at once (so errors point at the call) and records an operation; at commit
    time the operations are replayed on the newest HEAD while the store is locked.
    """

    def __init__(
        self,
        repo: Repository,
        message: str,
        *,
        author: str | None,
        command: str,
        meta: Mapping[str, Any] | None,
    ) -> None:
        self.repo = repo
        self.message = message
        self.author = author or current_user()
        if "\0" in self.author:  # each version keeps its author as an HDF5 attribute, which cannot hold NUL
            raise InputError(f"author {self.author!r} contains a NUL character")
        self.command = command
        self.meta = dict(meta or {})
        self._ops: list[Op] = []
        self._payloads: dict[ObjectId, Payload] = {}
        self._work: _Work = repo._consistent(lambda: _Work(repo, repo.head()))
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
        if isinstance(value, str):
            if "\0" in value:
                raise InputError(f"{ctype}: text constants may not contain NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: text is stored as UTF-8
                raise InputError(f"{ctype}: text constants must be valid Unicode ({exc.reason})") from exc
            payload: Payload = value
        else:
            payload = canonical_array(np.asarray(value))
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

        def op(w: _Work) -> Located:
            if version is not None:
                w.require_new_version(ctype, vkey)  # again on replay: another writer may have it
            tree = w.range(ctype, key) or RangeTree(t0, t1)
            default = tree.default
            if make_default:
                default = vkey
            elif default is None and tree.versions:
                default = tree.effective()  # keep lookups returning what they returned
            tree = replace(tree, default=default, versions={**tree.versions, vkey: entry})
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

        def op(w: _Work) -> None:
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
        commit = self.repo.store.refs().get(ref)
        detname = self._work.root.detname
        if commit is None:
            raise NotFound(f"{detname} has no {ref}: fetch from that remote first")
        try:
            loc = _Work(self.repo, commit).find_version(ctype, prefix, range)
        except (CtypeNotFound, RangeNotFound, VersionNotFound) as exc:
            raise type(exc)(f"{ref}: {exc.message}") from exc
        if not self.repo.store.has(loc.entry.obj):
            raise NotFetched(
                f"{detname} {ctype} {loc.range} {loc.version} of {ref}: its payload {loc.entry.obj} was "
                "not fetched (a partial clone); widen the clone's filter and fetch again"
            )
        theirs = loc.tree

        def op(w: _Work) -> Located:
            tree = w.range(ctype, loc.range) or RangeTree(theirs.begin, theirs.end, pars=dict(theirs.pars))
            default = tree.default
            if make_default:
                default = loc.version
            elif default is None and tree.versions:
                default = tree.effective()  # keep lookups returning what they returned
            tree = replace(tree, default=default, versions={**tree.versions, loc.version: loc.entry})
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

            def op(w: _Work) -> None:
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

            def op(w: _Work) -> None:
                if w.range(ctype, rkey) is None:
                    raise RangeNotFound(f"{ctype} has no range {rkey}")
                w.set_range(ctype, rkey, None)
        else:
            self._work.ctype(ctype)  # raises CtypeNotFound
            what = ctype

            def op(w: _Work) -> None:
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

            def op(w: _Work) -> None:
                tree = w.range(ctype, loc.range)
                if tree is None or loc.version not in tree.versions:  # a commit meanwhile removed it
                    raise VersionNotFound(f"{ctype} range {loc.range} has no version {loc.version}")
                entry = tree.versions[loc.version]
                versions = {**tree.versions, loc.version: replace(entry, pars=merged(entry.pars))}
                w.set_range(ctype, loc.range, replace(tree, versions=versions))
        elif range is not None:
            rkey = self._work.range_key(ctype, range)

            def op(w: _Work) -> None:
                tree = w.range(ctype, rkey)
                if tree is None:
                    raise RangeNotFound(f"{ctype} has no range {rkey}")
                w.set_range(ctype, rkey, replace(tree, pars=merged(tree.pars)))
        else:

            def op(w: _Work) -> None:
                ct = w.ctype(ctype, create=True)
                w.set_ctype(ctype, replace(ct, pars=merged(ct.pars)))

        self._do(op)

    def set_links(self, *, predecessor: str | None = None, successor: str | None = None) -> None:
        for name in (predecessor, successor):
            if name:
                check_detname(name)

        def op(w: _Work) -> None:
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
            if cid is not None and self.phase == "pre-receive" and self.repo.policy is not None:
                incoming = self._incoming(self._landed_from, cid)
                if incoming is not None:  # arrived like a push: post-receive reacts
                    self.repo.policy.after(incoming)
            return cid
        finally:
            self._cleanup()

    def _commit(self) -> ObjectId | None:
        store = self.repo.store
        with store.writing():
            head = store.head()
            work = self._work
            if head != work.base:  # someone committed since we started: replay on their commit
                work = _Work(self.repo, head)
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
            incoming = self._incoming(head, cid)
            self._landed_from = head
            if incoming is not None and self.repo.policy is not None:
                self.repo.policy.check(incoming, phase=self.phase)
            store.set_ref(HEAD, head, cid, LogRecord(HEAD, head, cid, self.command, message, extra=self.meta))
        self.commit_id = cid
        return cid

    def _incoming(self, head: ObjectId | None, new: ObjectId) -> Incoming | None:
        if self.repo.policy is None:
            return None
        from dcsync.workspace.acl import current_identity
        from dcsync.workspace.policy import Incoming

        detname = self._work.root.detname
        return Incoming(
            detname,
            self.repo.store,
            head,
            new,
            self.command,
            current_identity(),
            current_host(),
            "local",
            self._payload_path,
        )

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


def _check_lookup_args(ctype: object, version: object) -> None:
    """A ctype and a version key prefix are text: anything else is the caller's mistake, said as
    such (deep in a read it would surface as a bare TypeError)."""
    if not isinstance(ctype, str):
        raise UsageError(f"ctype must be a name (text), not {ctype!r}")
    if version is not None and not isinstance(version, str):
        raise UsageError(f"version must be a key or key prefix (text), not {version!r}")


def _check_par_value(key: str, value: Any) -> ParValue:
    if is_int(value) and not INT_MIN <= value <= INT_MAX:
        raise InputError(f"parameter {key!r}: {value} is out of range (integers are int64)")
    if isinstance(value, bool | int | float | str):
        return value
    raise InputError(f"parameter {key!r}: values must be str, int, float or bool, not {type(value).__name__}")


def _check_pars(pars: Mapping[str, Any]) -> dict[str, ParValue]:
    return {check_par_key(k): _check_par_value(k, v) for k, v in pars.items()}
