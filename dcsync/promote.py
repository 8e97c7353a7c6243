"""Promotion: copy chosen constants from one location to another (experiment → central repository)
with their ranges and parameters, recording where they came from.

The chosen versions (by key prefix, or "the defaults valid at time T") are added to the target as
new versions of the same ranges, each with an ``origin`` (source location, detector, commit,
version, original author) and pinned as the range's default. The target's ACL and pre-receive
hooks judge the change: for a local target directly, for a remote one through a push from a
scratch clone that holds no payloads. A version already promoted (same origin, or the same payload
in the same range) is skipped, so running a promotion twice changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcsync.acl import current_identity
from dcsync.errors import DcsyncError, DetectorNotFound, UsageError
from dcsync.hashing import ObjectId
from dcsync.names import RangeKey, VersionKey
from dcsync.objects import CtypeTree, RangeTree, VersionEntry
from dcsync.repository import Repository
from dcsync.sync import RemoteConfig, Snapshot, clone, get_remote, push, remotes, snapshot
from dcsync.times import format_time, now_ns
from dcsync.workspace import CONFIG_DIR, Workspace


@dataclass(frozen=True)
class Pick:
    """One version chosen for promotion and what happens to it."""

    detector: str
    ctype: str
    range: RangeKey
    begin: int
    end: int | None
    version: str
    obj: ObjectId
    action: str  # "promote" or "skip: <why>"

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "ctype": self.ctype,
            "range": self.range,
            "begin": format_time(self.begin),
            "end": None if self.end is None else format_time(self.end),
            "version": self.version,
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
                raise DetectorNotFound(f"{det} in {snap.name} has no ctype {ctype!r}")
            continue
        ct = store.read_object(root.ctypes[ctype])
        assert isinstance(ct, CtypeTree)
        ranges: dict[RangeKey, RangeTree] = {}
        for k, ref in ct.ranges.items():
            tree = store.read_object(ref.tree)
            assert isinstance(tree, RangeTree)
            ranges[k] = tree
        if version is not None:
            hits = [(k, t, v) for k, t in ranges.items() for v in t.versions if v.startswith(version)]
            if len(hits) > 1:
                raise UsageError(f"version prefix {version!r} is ambiguous in {det} {ctype}")
            if not hits:
                if ctypes:
                    raise DetectorNotFound(f"{det} {ctype} in {snap.name} has no version {version!r}")
                continue
            out.append((ctype, hits[0][0], hits[0][1], hits[0][2], hits[0][1].versions[hits[0][2]]))
            continue
        key = ct.lookup(now_ns() if at is None else at)
        effective = ranges[key].effective() if key is not None else None
        if key is not None and effective is not None:
            out.append((ctype, key, ranges[key], effective, ranges[key].versions[effective]))
    return out


def _already(
    target: Repository | None, ctype: str, key: RangeKey, origin: dict[str, Any], obj: ObjectId
) -> str | None:
    """Why this version need not be promoted again (None: it must)."""
    if target is None or target.head() is None:
        return None
    root = target.root()
    if ctype not in root.ctypes:
        return None
    ct = target.store.read_object(root.ctypes[ctype])
    assert isinstance(ct, CtypeTree)
    ref = ct.ranges.get(key)
    if ref is None:
        return None
    tree = target.store.read_object(ref.tree)
    assert isinstance(tree, RangeTree)
    for vkey, entry in tree.versions.items():
        same_origin = (
            entry.origin.get("location") == origin["location"]
            and entry.origin.get("version") == origin["version"]
        )
        if same_origin or entry.obj == obj:
            return f"skip: already in the target as {vkey}"
    return None


def promote(
    detectors: list[str],
    source: str,
    target: str,
    *,
    ctypes: list[str] | None = None,
    version: str | None = None,
    at: int | None = None,
    message: str = "",
    dry_run: bool = False,
    here: Workspace | None = None,
) -> PromoteReport:
    """Copy chosen versions from ``source`` to ``target`` (workspace dirs, remote names or URLs)."""
    if version is not None and at is not None:
        raise UsageError("choose --version or --at, not both")
    location = _location(source, here)
    src = snapshot(source, here=here, detectors=detectors)
    report = PromoteReport(source, target, dry_run)
    scratch: Path | None = None
    try:
        if _is_local(target):
            target_ws = Workspace(target)
        else:
            remote = get_remote(here, target) if here is not None else RemoteConfig(target, target)
            scratch = Path(tempfile.mkdtemp(prefix="dcsync-promote-"))
            target_ws, _ = clone(
                remote.url,
                scratch / "target",
                detectors=detectors,
                remote_dcsync=remote.remote_dcsync,
                ssh_command=remote.ssh_command,
                payloads=False,
            )
        who = current_identity().user
        for det in detectors:
            picks = _choose(src, det, ctypes, version, at)
            _, root = src.roots[det]
            src_commit = src.heads.get(det, "")
            path = target_ws.detector_path(det)
            repo = target_ws.repository(det) if path.is_file() else None
            try:
                todo = []
                for ctype, key, tree, vkey, entry in picks:
                    origin = {
                        "location": location,
                        "detector": det,
                        "commit": src_commit,
                        "version": vkey,
                        "author": entry.author,
                        "promoted_by": who,
                        "promoted_at": format_time(now_ns()),
                    }
                    skip = _already(repo, ctype, key, origin, entry.obj)
                    report.picks.append(
                        Pick(det, ctype, key, tree.begin, tree.end, vkey, entry.obj, skip or "promote")
                    )
                    if skip is None:
                        todo.append((ctype, key, tree, entry, origin))
                if dry_run or not todo:
                    continue
                created: ObjectId | None = None
                if repo is None:
                    repo = target_ws.new_detector(
                        det,
                        predecessor=root.predecessor,
                        message=f"create {det} for promotion from {location}",
                        check_predecessor=False,  # the source's link, even if the target lacks it
                    )
                    # new_detector's repository carries no policy: without this, the promotion of a
                    # new detector would skip the target's ACL and hooks.
                    repo.policy = target_ws.policy()
                    created = repo.head()
                text = message or f"promote {len(todo)} version(s) of {det} from {location}"
                meta = {"promote": {"from": location, "commit": src_commit}}
                try:
                    with repo.transaction(text, command="promote", meta=meta) as tx:
                        tx.phase = "pre-receive"  # promotion arrives at the target like a push
                        for ctype, key, tree, entry, origin in todo:
                            value = src.payload(det, entry.obj)
                            tx.add(
                                ctype,
                                value,
                                tree.begin,
                                tree.end,
                                pars=entry.pars,
                                tsprod=entry.tsprod,
                                origin=origin,
                                # the source has this ctype: copying it is no typo, whatever the name
                                new_ctype=True,
                            )
                            if tree.pars:
                                tx.set_pars(dict(tree.pars), ctype=ctype, range=key)
                except BaseException:
                    if created is not None:
                        _discard_created(repo, path, created)
                        repo = None
                    raise
                if tx.commit_id is not None:
                    report.commits[det] = tx.commit_id
            finally:
                if repo is not None:
                    repo.close()
        if scratch is not None and report.commits and not dry_run:
            push(
                target_ws,
                "origin",
                detectors=list(report.commits),
                atomic=True,
                message=message or f"promotion from {source}",
            )
    finally:
        src.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return report
