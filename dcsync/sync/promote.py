"""Promotion: copy chosen constants from one location to another (experiment → central repository)
with their ranges and parameters, recording where they came from.

The chosen versions (by key prefix, or "the defaults valid at time T") are added to the target as
new versions of the same ranges, each with an ``origin`` (source location, detector, commit,
version, original author, who promoted it) and pinned as the range's default. A version keeps its
key: keys are random, not derived from where a version lives, so the key the promoter chose by is
the one the target's hooks, log and listings name (only if the target's ctype already has that key
for another version does it get a fresh one, and then both are shown). Who promoted is the
identity the target authenticated: this process's OS user for a local target, the SSH login the
target's server reports (and logs as ``served_as``) for a remote one; the local user name is kept
only as ``claimed_by`` when it differs. The target's ACL and pre-receive hooks judge the change: for
a local target directly, for a remote one through a push from a scratch clone that holds no
payloads. A version already promoted (same origin, or the same payload in the same range) is
skipped, so running a promotion twice changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dcsync.errors import CtypeNotFound, DcsyncError, DetectorNotFound, UsageError, VersionNotFound
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_user
from dcsync.model.names import RangeKey, VersionKey, new_version_key
from dcsync.model.objects import CtypeTree, RangeTree, VersionEntry
from dcsync.model.times import TimeLike, format_time, now_ns, time_arg
from dcsync.repo.repository import Repository
from dcsync.sync.client import Connection, connect
from dcsync.sync.cloning import clone
from dcsync.sync.compare import Snapshot, snapshot
from dcsync.sync.pushing import push
from dcsync.workspace.acl import current_identity
from dcsync.workspace.config import RemoteConfig, remote_for, remotes
from dcsync.workspace.workspace import CONFIG_DIR, Workspace


@dataclass(frozen=True)
class Pick:
    """One version chosen for promotion and what happens to it."""

    detector: str
    ctype: str
    range: RangeKey
    begin: int
    end: int | None
    version: str  # the key in the source
    obj: ObjectId
    action: str  # "promote" or "skip: <why>"
    target_version: str | None = None  # the key in the target: the same unless it was taken

    @property
    def label(self) -> str:
        """The version as the target knows it, with the source's key when that differs."""
        if self.target_version and self.target_version != self.version:
            return f"{self.target_version}, promoted from {self.version}"
        return self.version

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "ctype": self.ctype,
            "range": self.range,
            "begin": format_time(self.begin),
            "end": None if self.end is None else format_time(self.end),
            "version": self.version,
            "target_version": self.target_version,
            "object": self.obj,
            "action": self.action,
        }


@dataclass
class PromoteReport:
    source: str
    target: str
    dry_run: bool
    picks: list[Pick] = field(default_factory=list)
    commits: dict[str, str] = field(default_factory=dict)
    promoted_by: str = ""  # the identity the target authenticated

    @property
    def promoted(self) -> list[Pick]:
        return [p for p in self.picks if p.action == "promote"]

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "dry_run": self.dry_run,
            "picks": [p.to_json() for p in self.picks],
            "commits": self.commits,
            "promoted_by": self.promoted_by,
        }


def _is_local(location: str) -> bool:
    path = Path(location).expanduser()
    return path.is_dir() and (path / CONFIG_DIR).is_dir()


def _location(source: str, here: Workspace | None) -> str:
    """Where constants come from, for provenance: a named remote's URL, a local path made absolute
    (a remote's name or a relative path means nothing in the target's history)."""
    if here is not None:
        known = remotes(here)
        if source in known:
            return known[source].url
    path = Path(source).expanduser()
    if path.is_dir() or (source.endswith(".h5") and path.is_file()):
        return str(path.resolve())
    return source


def _discard_created(repo: Repository, path: Path, created: ObjectId | None) -> None:
    """Remove a detector file this promotion created, if nothing but its first commit is in it, so
    a refused promotion leaves the target as it was. The file's lock is held meanwhile, so a
    writer that found the file in between is not cut off mid-commit."""
    with contextlib.suppress(DcsyncError, OSError), repo.store.writing():
        if repo.store.head() == created:
            path.unlink()
    repo.close()
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only if empty: the dettype folder this promotion made


def _choose(
    snap: Snapshot, det: str, ctypes: list[str] | None, version: str | None, at: int | None
) -> list[tuple[str, RangeKey, RangeTree, VersionKey, VersionEntry]]:
    """The versions to promote: by key prefix, else the ones lookups return at ``at`` (now)."""
    if det not in snap.roots:
        raise DetectorNotFound(f"no detector {det} in {snap.name}")
    store, root = snap.roots[det]
    out = []
    for ctype in ctypes or sorted(root.ctypes):
        if ctype not in root.ctypes:
            if ctypes:
                raise CtypeNotFound(f"{det} in {snap.name} has no ctype {ctype!r}")
            continue
        ct = store.read_as(root.ctypes[ctype], CtypeTree)
        ranges = {k: store.read_as(ref.tree, RangeTree) for k, ref in ct.ranges.items()}
        if version is not None:
            hits = [(k, t, v) for k, t in ranges.items() for v in t.versions if v.startswith(version)]
            if len(hits) > 1:
                raise UsageError(f"version prefix {version!r} is ambiguous in {det} {ctype}")
            if not hits:
                if ctypes:
                    raise VersionNotFound(f"{det} {ctype} in {snap.name} has no version {version!r}")
                continue
            out.append((ctype, hits[0][0], hits[0][1], hits[0][2], hits[0][1].versions[hits[0][2]]))
            continue
        key = ct.lookup(now_ns() if at is None else at)
        effective = ranges[key].effective() if key is not None else None
        if key is not None and effective is not None:
            out.append((ctype, key, ranges[key], effective, ranges[key].versions[effective]))
    return out


def _target_ranges(target: Repository | None, ctype: str) -> dict[RangeKey, RangeTree]:
    """The target's ranges of ``ctype`` at its HEAD (none for a new detector or ctype)."""
    if target is None or target.head() is None:
        return {}
    root = target.root()
    if ctype not in root.ctypes:
        return {}
    ct = target.store.read_as(root.ctypes[ctype], CtypeTree)
    return {key: target.store.read_as(ref.tree, RangeTree) for key, ref in ct.ranges.items()}


def _already(
    ranges: dict[RangeKey, RangeTree], key: RangeKey, origin: dict[str, Any], obj: ObjectId
) -> VersionKey | None:
    """The target's version that makes promoting this one again unnecessary (None: it must)."""
    tree = ranges.get(key)
    for vkey, entry in (tree.versions if tree is not None else {}).items():
        same_origin = (
            entry.origin.get("location") == origin["location"]
            and entry.origin.get("version") == origin["version"]
        )
        if same_origin or entry.obj == obj:
            return vkey
    return None


def _key_taken(ranges: dict[RangeKey, RangeTree], vkey: VersionKey) -> bool:
    return any(vkey in tree.versions for tree in ranges.values())


def promote(
    detectors: list[str],
    source: str,
    target: str,
    *,
    ctypes: list[str] | None = None,
    version: str | None = None,
    at: TimeLike | None = None,
    message: str = "",
    dry_run: bool = False,
    here: Workspace | None = None,
    at_ns: int | None = None,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> PromoteReport:
    """Copy chosen versions from ``source`` to ``target`` (workspace dirs, remote names or URLs).

    ``at`` (a time as users write it) or ``at_ns`` (nanoseconds) picks the versions lookups
    return then; ``version`` picks by key prefix instead. ``remote_dcsync`` and ``ssh_command``
    apply to a side given as a URL, as in :func:`dcsync.sync.cloning.clone` (a named remote has its own).
    """
    when = time_arg("at", at, at_ns)
    if version is not None and when is not None:
        raise UsageError("choose --version or --at, not both")
    location = _location(source, here)
    options = {"remote_dcsync": remote_dcsync, "ssh_command": ssh_command}
    src = snapshot(source, here=here, detectors=detectors, **options)
    report = PromoteReport(source, target, dry_run)
    scratch: Path | None = None
    conn: Connection | None = None
    try:
        if _is_local(target):
            target_ws = Workspace(target)
            who = current_identity().user  # the OS identity the target's files and ACL see
        else:
            remote = remote_for(target, here, **options)
            conn = connect(remote)
            # The identity the target's server runs the session as (its SSH login): the one its
            # ACL judges and its log records as served_as.
            who = conn.server.user
            scratch = Path(tempfile.mkdtemp(prefix="dcsync-promote-"))
            target_ws = _scratch_clone(remote, conn, scratch / "target", detectors)
        report.promoted_by = who
        for det in detectors:
            picks = _choose(src, det, ctypes, version, when)
            origin = {"location": location, "detector": det, "commit": src.heads.get(det, "")}
            _promote_detector(src, target_ws, det, picks, origin, who, message, report)
        if scratch is not None and report.commits and not dry_run:
            summary = message or f"promotion from {source}"
            push(target_ws, "origin", detectors=list(report.commits), atomic=True, message=summary, conn=conn)
    finally:
        src.close()
        if conn is not None:
            conn.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _scratch_clone(remote: RemoteConfig, conn: Connection, path: Path, detectors: list[str]) -> Workspace:
    """A clone of a remote target at ``path`` to commit the promotion in, then push: trees and
    commits only, which is all a commit on top needs."""
    ws, _ = clone(
        remote.url,
        path,
        detectors=detectors,
        remote_dcsync=remote.remote_dcsync,
        ssh_command=remote.ssh_command,
        payloads=False,
        conn=conn,
        must_match=False,  # promotion may bring the target a detector it lacks
    )
    return ws


class _Copy(NamedTuple):
    """A version to add to the target: where it goes, what it is, and the key it keeps there."""

    ctype: str
    key: RangeKey
    tree: RangeTree
    entry: VersionEntry
    origin: dict[str, Any]
    keep: VersionKey


def _promote_detector(
    src: Snapshot,
    target_ws: Workspace,
    det: str,
    picks: list[tuple[str, RangeKey, RangeTree, VersionKey, VersionEntry]],
    source: dict[str, str],
    who: str,
    message: str,
    report: PromoteReport,
) -> None:
    """Report each pick of ``det`` and commit those the target lacks in one transaction."""
    path = target_ws.detector_path(det)
    repo = target_ws.repository(det) if path.is_file() else None
    try:
        todo, renamed = _copies(repo, det, picks, source, who, report)
        if report.dry_run or not todo:
            return
        created: ObjectId | None = None
        if repo is None:
            repo = target_ws.new_detector(
                det,
                predecessor=src.roots[det][1].predecessor,
                message=f"create {det} for promotion from {source['location']}",
                check_predecessor=False,  # the source's link, even if the target lacks it
            )
            created = repo.head()
        try:
            commit_id = _commit_copies(src, repo, det, todo, renamed, source, who, message)
        except BaseException:
            if created is not None:
                _discard_created(repo, path, created)
                repo = None
            raise
        if commit_id is not None:
            report.commits[det] = commit_id
    finally:
        if repo is not None:
            repo.close()


def _copies(
    repo: Repository | None,
    det: str,
    picks: list[tuple[str, RangeKey, RangeTree, VersionKey, VersionEntry]],
    source: dict[str, str],
    who: str,
    report: PromoteReport,
) -> tuple[list[_Copy], dict[str, str]]:
    """The picks the target lacks, each with the key it keeps there (a fresh one where the
    source's is taken: ``renamed`` maps it back); every pick is reported, skipped or not."""
    todo: list[_Copy] = []
    renamed: dict[str, str] = {}
    claimed = current_user()
    for ctype, key, tree, vkey, entry in picks:
        origin = {
            **source,
            "version": vkey,
            "author": entry.author,
            "promoted_by": who,
            "promoted_at": format_time(now_ns()),
        }
        if claimed != who:  # what this machine calls its user: a claim, labelled so
            origin["claimed_by"] = claimed
        ranges = _target_ranges(repo, ctype)
        there = _already(ranges, key, origin, entry.obj)
        keep: VersionKey | None = vkey if there is None and not _key_taken(ranges, vkey) else None
        if there is None and keep is None:  # taken by another version: a fresh key
            keep = new_version_key(f"{entry.obj}{vkey}{source['location']}")
            renamed[keep] = vkey
        action = f"skip: already in the target as {there}" if there else "promote"
        report.picks.append(
            Pick(det, ctype, key, tree.begin, tree.end, vkey, entry.obj, action, there or keep)
        )
        if there is None and keep is not None:
            todo.append(_Copy(ctype, key, tree, entry, origin, keep))
    return todo, renamed


def _commit_copies(
    src: Snapshot,
    repo: Repository,
    det: str,
    todo: list[_Copy],
    renamed: dict[str, str],
    source: dict[str, str],
    who: str,
    message: str,
) -> ObjectId | None:
    """Add ``todo`` to ``repo`` in one commit that the target's ACL and hooks judge as a push."""
    location = source["location"]
    text = message or f"promote {len(todo)} version(s) of {det} from {location}"
    provenance: dict[str, Any] = {"from": location, "commit": source["commit"]}
    if renamed:
        provenance["versions"] = renamed  # target key -> source key
    with repo.transaction(text, author=who, command="promote", meta={"promote": provenance}) as tx:
        tx.phase = "pre-receive"  # promotion arrives at the target like a push
        for copy in todo:
            tx.add(
                copy.ctype,
                src.payload(det, copy.entry),
                begin_ns=copy.tree.begin,
                end_ns=copy.tree.end,
                pars=copy.entry.pars,
                tsprod_ns=copy.entry.tsprod,
                origin=copy.origin,
                version=copy.keep,
                # the source has this ctype: copying it is no typo, whatever the name
                new_ctype=True,
            )
            if copy.tree.pars:
                tx.set_pars(dict(copy.tree.pars), ctype=copy.ctype, range=copy.key)
    return tx.commit_id
