"""clone, fetch, pull, push and status between workspaces, as git does them.

One connection per command. ``fetch`` learns every detector's head in one round trip, asks once
which objects it lacks, streams them into quarantine (verified on arrival, so a cut transfer
resumes where it stopped), then imports them and moves ``remotes/<name>`` in one crash-safe commit
per detector. ``pull`` = fetch + fast-forward or three-way merge of HEAD. ``push`` = the reverse,
fast-forward only, with the server moving its HEADs by compare-and-swap (all-or-nothing with
``atomic``). Remotes and their partial-clone filters live in ``.dcsync/config.toml``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dcsync.repo.diff import Change, Scope, diff_roots, in_scope, readable, summarize, value_stats
from dcsync.store.claims import PayloadFacts, claims_error, disagreements, stored_facts
from dcsync.sync import wholefile
from dcsync.sync.client import Connection
from dcsync.workspace import acl as acl_module
from dcsync.workspace.acl import KINDS, current_identity

__all__ = ["summarize"]
from dcsync.errors import (
    DetectorNotFound,
    MergeConflict,
    NotFastForward,
    ObjectNotFound,
    ProtocolError,
    RefConflict,
    UsageError,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    RangeTree,
    RootTree,
    Tree,
    VersionEntry,
    kind_name,
    wrong_kind,
)
from dcsync.model.times import TimeLike, now_ns, time_arg
from dcsync.repo.merge import conflicts_json, describe_conflicts, merge_base, merge_trees
from dcsync.repo.reach import ancestors, is_ancestor, objects_for, transfer_header, walk_missing
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectKind, ObjectStore, verify_payload
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord, current_host, current_user, remote_ref
from dcsync.sync.protocol import chunk_size, offered_objects
from dcsync.sync.quarantine import Header, Quarantine
from dcsync.transport import open_channel
from dcsync.workspace.config import (
    RemoteConfig,
    absolute_url,
    add_remote,
    remote_for,
    remotes,
    tracking_remote,
)
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): bytes for transfers."""


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def connect(remote: RemoteConfig, *, accept_new_host_key: bool = False) -> Connection:
    return Connection(
        open_channel(
            remote.url,
            remote_dcsync=remote.remote_dcsync,
            ssh_command=remote.ssh_command,
            accept_new_host_key=accept_new_host_key,
        )
    )


# -- receiving objects ---------------------------------------------------------------------------------
def _quarantine(ws: Workspace, det: str) -> Quarantine:
    return Quarantine(ws.root / CONFIG_DIR / "incoming" / det)


def receive_objects(
    conn: Connection,
    items: list[tuple[str, ObjectId, int]],
    sink: Callable[[str, Header], Any],
    progress: Progress,
) -> None:
    """Stream ``items`` (detector, id, size) from the peer into receivers made by ``sink``."""
    if not items:
        return
    total = sum(size for _, _, size in items)
    done = 0
    index = -1
    receiver = None
    try:
        for frame in conn.stream("get_objects", items=[[det, oid] for det, oid, _ in items]):
            if not isinstance(frame, dict):
                raise ProtocolError(f"{conn.peer} sent a malformed object frame")
            if "h" in frame:
                index += 1
                header = Header(frame["h"])
                if index >= len(items) or header.oid != items[index][1]:
                    raise ProtocolError(f"{conn.peer} sent object {header.oid} out of order")
                receiver = sink(items[index][0], header)
            elif "c" in frame and receiver is not None and isinstance(frame["c"], bytes):
                receiver.write(frame["c"])
                done += len(frame["c"])
                progress("receiving", done, total)
            else:
                raise ProtocolError(f"{conn.peer} sent a malformed object frame")
            if receiver is not None and receiver.complete:
                receiver.finish()
                receiver = None
    finally:
        if receiver is not None:
            receiver.abort()
    if index + 1 != len(items):
        raise ProtocolError(f"{conn.peer} sent {index + 1} of {len(items)} objects")


@dataclass
class FetchReport:
    remote: str
    updated: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    # detectors whose HEAD already equals the remote's: pull need not open them again
    settled: set[str] = field(default_factory=set)
    fast_forwarded: list[str] = field(default_factory=list)  # HEAD moved in the fetch's own commit
    files: int = 0  # detectors that came as whole files (dcsync.sync.wholefile)
    # whole files refused (they came object by object instead), and why: a server's file that holds
    # more than dcsync writes, or whose view disagrees with its HEAD, is worth a word to the user
    refused: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "files": self.files,
            "refused_files": dict(self.refused),
            "objects": self.objects,
            "bytes": self.bytes,
            "updated": {d: {"old": o, "new": n} for d, (o, n) in self.updated.items()},
        }


def _whole_files_apply(conn: Connection, spec: RemoteConfig) -> bool:
    """Whether new detectors may come as whole files: both sides can, and nothing is filtered."""
    offered = conn.server.get("capabilities")
    return (
        wholefile.enabled()
        and not spec.filter()
        and isinstance(offered, list)
        and wholefile.CAPABILITY in offered
    )


def _in_scope(det: str, globs: tuple[str, ...] | list[str] | None) -> bool:
    return not globs or any(fnmatch.fnmatchcase(det, g) for g in globs)


def fetch(
    ws: Workspace,
    remote: str = "origin",
    *,
    detectors: list[str] | None = None,
    progress: Progress = _no_progress,
    conn: Connection | None = None,
    fast_forward: bool = False,
    must_match: bool = True,
) -> FetchReport:
    """Bring the remote's commits into ``remotes/<remote>`` of every detector in scope.

    ``fast_forward`` also moves HEAD where that is a fast-forward (a new detector, or HEAD an
    ancestor of the remote's), in the same commit (pull and clone). With ``must_match``, a
    detector filter (``detectors``, else the remote's saved one) that matches nothing on the remote
    is :class:`DetectorNotFound` naming what it has: a mistyped glob must not look like success.
    """
    spec = tracking_remote(ws, remote)
    globs = detectors or list(spec.detectors) or None
    own = conn is None
    conn = conn or connect(spec)
    report = FetchReport(spec.name)
    try:
        heads: dict[str, str | None] = conn.call("heads", detectors=globs)["heads"]
        if globs and not heads and must_match:
            raise _no_match(conn, spec, globs)
        wants = []
        lacking = []  # detectors this workspace has no file of: candidates for whole files
        checkouts = []  # fetched earlier, nothing new to download: only HEAD moves (and the file)
        for det, rhead in sorted(heads.items()):
            if rhead is None:
                continue
            path = _repository_file(ws, det)
            if path is not None:
                store = HDF5Store(path)
                try:
                    refs = store.refs()
                    if refs.get(remote_ref(spec.name)) == rhead:
                        if path != ws.detector_path(det):
                            if fast_forward or HEAD in refs:  # HEAD in refs: a check-out cut short
                                checkouts.append(det)
                        elif refs.get(HEAD) == rhead:
                            report.settled.add(det)
                        continue
                    have = sorted({c for c in refs.values() if store.has(c)})
                finally:
                    store.close()
            else:
                have = []
                lacking.append(det)
            wants.append({"detector": det, "want": rhead, "have": have, "filter": spec.filter()})
        for det in checkouts:
            _, moved = _import_and_move(
                ws, det, remote_ref(spec.name), ObjectId(str(heads[det])), spec, True, conn.peer
            )
            if moved:
                report.fast_forwarded.append(det)
            report.settled.add(det)
        if fast_forward and lacking and _whole_files_apply(conn, spec):
            incoming = ws.root / CONFIG_DIR / "incoming"
            adopted, report.bytes, report.refused = wholefile.fetch_files(
                conn.stream, incoming, lacking, ws.detector_path, spec.name, spec.url, progress
            )
            for det, head in adopted.items():
                report.updated[det] = (None, head)
                report.fast_forwarded.append(det)
                report.settled.add(det)
            report.files = len(adopted)
            wants = [w for w in wants if w["detector"] not in adopted]
        if not wants:
            return report
        offered = offered_objects(conn.call("negotiate", wants=wants), peer=conn.peer)
        missing: list[tuple[str, ObjectId, int]] = []
        for det, objects in sorted(offered.items()):
            q = _quarantine(ws, det)
            path = _repository_file(ws, det)
            local = HDF5Store(path) if path is not None else None
            try:
                for oid, _kind, size in objects:
                    if not q.has(oid) and not (local and local.has(oid)):
                        missing.append((det, oid, size))
            finally:
                if local:
                    local.close()
        quarantines = {det: _quarantine(ws, det) for det in offered}
        receive_objects(conn, missing, lambda det, h: quarantines[det].receive(h), progress)
        report.objects = len(missing)
        report.bytes += sum(size for _, _, size in missing)
        for want in wants:
            name, target = str(want["detector"]), ObjectId(str(want["want"]))
            old, moved = _import_and_move(
                ws, name, remote_ref(spec.name), target, spec, fast_forward, conn.peer
            )
            report.updated[name] = (old, target)
            if moved:
                report.fast_forwarded.append(name)
                report.settled.add(name)
    finally:
        if own:
            conn.close()
    return report


def _repository_file(ws: Workspace, det: str) -> Path | None:
    """The file a fetch of ``det`` updates: the checked-out one, else the copy waiting in
    ``.dcsync/fetched/`` for a pull (a copy beside a checked-out file is stale and goes), else None."""
    path, waiting = ws.detector_path(det), ws.fetched_path(det)
    if path.is_file():
        waiting.unlink(missing_ok=True)
        return path
    return waiting if waiting.is_file() else None


NAMED_DETECTORS = 30  # how many of the remote's detectors a filter that matched none names


def _no_match(conn: Connection, spec: RemoteConfig, globs: list[str]) -> DetectorNotFound:
    """The error for a detector filter that matches nothing, naming the detectors there are."""
    names = sorted(conn.call("heads")["heads"])
    shown = ", ".join(names[:NAMED_DETECTORS]) or "none"
    if len(names) > NAMED_DETECTORS:
        shown += f", ... ({len(names)} in all)"
    wanted = " or ".join(repr(g) for g in globs)
    return DetectorNotFound(f"no detector of {spec.url} matches {wanted}; its detectors: {shown}")


def _import_and_move(
    ws: Workspace, det: str, ref: str, new: ObjectId, spec: RemoteConfig, fast_forward: bool, peer: str
) -> tuple[str | None, bool]:
    """Import what ``new`` needs from the quarantine (checked on the way: what ``peer`` sent must
    be what it claims) and move ``ref`` (and, with ``fast_forward``, HEAD where that is a
    fast-forward) in one commit; (the ref's old value, whether HEAD moved).

    A detector new here is built in ``.dcsync/fetched/`` and linked into the workspace only once
    it has a HEAD, so no reader ever finds a repository file with nothing checked out.
    """
    path = _repository_file(ws, det)
    if path is None:
        path = ws.fetched_path(det)
        path.parent.mkdir(parents=True, exist_ok=True)
        HDF5Store.create(path).close()
    q = _quarantine(ws, det)
    store = HDF5Store(path)
    try:
        with store.writing():
            missing = list(walk_missing(store, q, new, spec.filter(), peer=peer, detector=det))
            q.import_into(store, [oid for oid, _, _ in missing])
            old = store.refs().get(ref)
            source = {"source": spec.url}
            if old != new:  # equal: a detector fetched earlier, now only checked out
                fetched = LogRecord(ref, old, new, "fetch", f"fetch from {spec.url}", extra=source)
                store.set_ref(ref, old, new, fetched)
            head = store.head()
            moved = fast_forward and head != new and (head is None or is_ancestor(store, head, new))
            if moved:  # one commit for the pull, not a second one for HEAD
                message = f"check out {ref}" if head is None else f"fast-forward to {ref}"
                store.set_ref(HEAD, head, new, LogRecord(HEAD, head, new, "pull", message, extra=source))
            checked_out = moved or head is not None
            payloads = {oid for oid, kind, _ in missing if kind in ("array", "text")}
            if checked_out and payloads and spec.filter():  # only a partial clone's view lacks any
                store.link_view_payloads(payloads)
    finally:
        store.close()
    q.clear()
    if checked_out and path != ws.detector_path(det):
        _place(ws, det, path)
    return old, moved


def _place(ws: Workspace, det: str, fetched: Path) -> None:
    """Link a checked-out copy from ``.dcsync/fetched/`` into the workspace, never over a file."""
    final = ws.detector_path(det)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(fetched, final)
    except FileExistsError:
        fetched.unlink(missing_ok=True)
        raise RefConflict(
            f"{det} was created in {ws.root} while a pull checked it out: nothing of the remote's was "
            "checked out; pull again to merge it"
        ) from None
    fetched.unlink()


# -- pull ----------------------------------------------------------------------------------------------
@dataclass
class PullReport:
    fetch: FetchReport
    fast_forwarded: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    resolved: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "fetch": self.fetch.to_json(),
            "fast_forwarded": self.fast_forwarded,
            "merged": self.merged,
            "resolved": self.resolved,
        }


def pull(
    ws: Workspace,
    remote: str = "origin",
    *,
    detectors: list[str] | None = None,
    prefer: Literal["ours", "theirs"] | None = None,
    progress: Progress = _no_progress,
    conn: Connection | None = None,
    must_match: bool = True,
) -> PullReport:
    """Fetch, then bring each HEAD to the remote's: fast-forward, or a three-way merge commit.

    Conflicts change nothing and raise :class:`MergeConflict` with every conflicting entry,
    unless ``prefer`` resolves them toward one side. ``must_match`` as in :func:`fetch`.
    """
    spec = tracking_remote(ws, remote)
    report = PullReport(
        fetch(
            ws,
            remote,
            detectors=detectors,
            progress=progress,
            conn=conn,
            fast_forward=True,
            must_match=must_match,
        )
    )
    report.fast_forwarded.extend(report.fetch.fast_forwarded)
    ref = remote_ref(spec.name)
    plans: list[tuple[str, Repository, ObjectId | None, ObjectId]] = []
    reports: list[str] = []
    for det in ws.detectors():
        if not _in_scope(det, detectors or list(spec.detectors) or None) or det in report.fetch.settled:
            continue
        repo = Repository.open(ws.detector_path(det))
        theirs = repo.store.refs().get(ref)
        ours = repo.head()
        if theirs is None or theirs == ours or (ours and is_ancestor(repo.store, theirs, ours)):
            repo.close()
            continue
        plans.append((det, repo, ours, theirs))
    merges = {}
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for det, repo, ours, theirs in plans:
        if ours is None or is_ancestor(repo.store, ours, theirs):
            continue
        base = merge_base(repo.store, ours, theirs)
        result = merge_trees(
            repo.store, repo.root(base) if base else None, repo.root(ours), repo.root(theirs), prefer=prefer
        )
        if result.conflicts and prefer is None:
            reports.append(describe_conflicts(det, result.conflicts, remote=spec.name))
            conflicts[det] = conflicts_json(result.conflicts)
        merges[det] = result
    if reports:
        for _, repo, _, _ in plans:
            repo.close()
        raise MergeConflict("\n".join(reports), details={"remote": spec.name, "conflicts": conflicts})
    for det, repo, ours, theirs in plans:
        try:
            store = repo.store
            with store.writing():
                if ours is None or is_ancestor(store, ours, theirs):
                    store.set_ref(
                        HEAD, ours, theirs, LogRecord(HEAD, ours, theirs, "pull", f"fast-forward to {ref}")
                    )
                    report.fast_forwarded.append(det)
                    continue
                result = merges[det]
                for tree in result.new_objects:
                    store.put_object(tree)
                root_id = store.put_object(result.root)
                message = f"merge {ref} into HEAD"
                commit = Commit(
                    root_id,
                    (ours, theirs),
                    current_user(),
                    current_host(),
                    now_ns(),
                    message,
                    {"merge": ref, "prefer": prefer or ""},
                )
                cid = store.put_object(commit)
                store.set_ref(HEAD, ours, cid, LogRecord(HEAD, ours, cid, "pull", message))
                report.merged.append(det)
                if result.conflicts:
                    report.resolved[det] = [c.what for c in result.conflicts]
        finally:
            repo.close()
    return report


# -- push ----------------------------------------------------------------------------------------------
@dataclass
class PushReport:
    remote: str
    planned: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    pushed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "notes": self.notes,
            "dry_run": self.dry_run,
            "objects": self.objects,
            "bytes": self.bytes,
            "planned": {d: {"old": o, "new": n} for d, (o, n) in self.planned.items()},
            "pushed": self.pushed,
            "failed": self.failed,
        }


def push(
    ws: Workspace,
    remote: str = "origin",
    *,
    detectors: list[str] | None = None,
    atomic: bool = False,
    dry_run: bool = False,
    message: str = "",
    progress: Progress = _no_progress,
    conn: Connection | None = None,
) -> PushReport:
    """Send local commits and move the remote's HEADs (fast-forward only).

    ``conn`` (here and in fetch, pull, clone) uses an open connection instead of dialling the
    remote's URL: an in-process server, for embedding and tests. The caller closes it.
    """
    spec = tracking_remote(ws, remote)
    report = PushReport(spec.name, dry_run=dry_run)
    with contextlib.nullcontext(conn) if conn is not None else connect(spec) as conn:
        heads: dict[str, str | None] = conn.call("heads", detectors=detectors)["heads"]
        plan: list[tuple[str, Repository, ObjectId | None, ObjectId, list[tuple[ObjectId, str, int]]]] = []
        rejected: dict[str, str] = {}
        try:
            for det in ws.detectors():
                if not _in_scope(det, detectors):
                    continue
                repo = Repository.open(ws.detector_path(det))
                local, theirs = repo.head(), heads.get(det)
                if local is None or local == theirs:
                    if local is not None:  # the remote has it: an earlier push whose answer was lost
                        _track(repo.store, spec, local, "push")
                    repo.close()
                    continue
                if theirs is not None and (
                    not repo.store.has(ObjectId(theirs))
                    or not is_ancestor(repo.store, ObjectId(theirs), local)
                ):
                    repo.close()
                    rejected[det] = (
                        f"{det}: the remote has commits you do not have; pull first (dcsync pull {spec.name})"
                    )
                    continue
                old = ObjectId(theirs) if theirs else None
                objects = list(objects_for(repo.store, local, [old] if old else [], {}))
                plan.append((det, repo, old, local, objects))
                report.planned[det] = (old, local)
            # Like git: a refused detector stops an atomic push (or one with nothing else to send);
            # otherwise the others go and the report names the refused ones.
            if rejected and (atomic or not plan):
                raise NotFastForward("\n".join(rejected.values()), details={"refused": rejected})
            report.failed.update(rejected)
            if dry_run or not plan:
                report.objects = sum(len(p[4]) for p in plan)
                report.bytes = sum(size for p in plan for _, _, size in p[4])
                return report
            items = [[det, oid] for det, _, _, _, objects in plan for oid, _, _ in objects]
            have = conn.call("have", items=items)["have"] if items else []
            present = {(det, oid) for (det, oid), h in zip(map(tuple, items), have, strict=True) if h}
            total = sum(
                size for det, _, _, _, objs in plan for oid, _, size in objs if (det, oid) not in present
            )
            sent = [0]
            for det, repo, _, _, objects in plan:
                todo = [oid for oid, _, _ in objects if (det, oid) not in present]
                if todo:
                    conn.upload("put_objects", _object_items(repo, todo, sent, total, progress), detector=det)
                report.objects += len(todo)
            report.bytes = total
            updates = [{"detector": det, "old": old, "new": new} for det, _, old, new, _ in plan]
            answer = conn.call("update_refs", updates=updates, atomic=atomic, message=message)
            report.notes = [str(n) for n in answer.get("notes", [])]  # what the remote's hooks said
            for result in answer["results"]:
                det = result["detector"]
                if result["ok"]:
                    report.pushed.append(det)
                else:
                    report.failed[det] = result["error"]["message"]
            for det, repo, _, new, _ in plan:
                if det in report.pushed:
                    _track(repo.store, spec, new, "push")
        finally:
            for _, repo, _, _, _ in plan:
                repo.close()
    return report


def _track(store: HDF5Store | ObjectStore, spec: RemoteConfig, new: ObjectId, command: str) -> None:
    """Move ``remotes/<name>`` to ``new``, a commit the remote is known to have, unless it is there."""
    ref = remote_ref(spec.name)
    if store.refs().get(ref) == new:
        return
    with store.writing():
        old = store.refs().get(ref)
        store.set_ref(ref, old, new, LogRecord(ref, old, new, command, f"{command} to {spec.url}"))


def _object_items(
    repo: Repository, oids: list[ObjectId], sent: list[int], total: int, progress: Progress
) -> Iterator[dict[str, Any]]:
    chunk = chunk_size()
    for oid in oids:
        header, pieces = transfer_header(repo.store, oid, chunk)
        yield {"h": header}
        for piece in pieces:
            for start in range(0, len(piece), chunk):
                part = piece[start : start + chunk]
                sent[0] += len(part)
                progress("sending", sent[0], total)
                yield {"c": part}


# -- status and clone ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    detector: str
    head: str | None
    remote_head: str | None
    ahead: int
    behind: int
    checked_out: bool = True  # False: fetched into .dcsync/fetched/, waiting for a pull

    def to_json(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "head": self.head,
            "remote_head": self.remote_head,
            "ahead": self.ahead,
            "behind": self.behind,
            "checked_out": self.checked_out,
        }


def status(ws: Workspace, remote: str = "origin") -> list[StatusRow]:
    """Ahead/behind of each detector against ``remotes/<remote>`` as last fetched (no network);
    detectors fetched from it but not checked out are rows too."""
    spec = tracking_remote(ws, remote)
    ref = remote_ref(spec.name)
    files = [(det, ws.detector_path(det), True) for det in ws.detectors()]
    files += [(f.detname, f.path, False) for f in ws.fetched_detectors() if spec.name in f.remotes]
    rows = []
    for det, path, checked_out in sorted(files):
        with Repository.open(path) as repo:
            head, theirs = repo.head(), repo.store.refs().get(ref)
            mine = ancestors(repo.store, [head]) if head else set()
            other = ancestors(repo.store, [theirs]) if theirs and repo.store.has(theirs) else set()
            rows.append(StatusRow(det, head, theirs, len(mine - other), len(other - mine), checked_out))
    return rows


CLONE_MARKER = "clone-unfinished"
"""In ``.dcsync/`` from the moment a clone creates the workspace until it has everything: a clone
into a directory holding it resumes instead of refusing the directory as not empty."""


def clone(
    url: str,
    path: Path | str,
    *,
    detectors: list[str] | None = None,
    ctypes: list[str] | None = None,
    since: TimeLike | None = None,
    kind: str | None = None,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
    progress: Progress = _no_progress,
    conn: Connection | None = None,
    payloads: bool = True,
    since_ns: int | None = None,
    must_match: bool = True,
) -> tuple[Workspace, PullReport]:
    """A new workspace at ``path`` with ``origin`` = ``url``, its detectors fetched and checked out.

    ``detectors`` (globs), ``ctypes`` and ``since`` make a partial clone; later pulls keep them.
    ``payloads=False`` fetches trees and commits only (enough to commit on top and push).
    ``since`` is a time as users write it (ISO text, datetime, unix seconds, "now"); ``since_ns``
    the same in nanoseconds.
    ``kind`` is the new workspace's location kind (default ``local``); ``must_match`` as in
    :func:`fetch`.

    The remote is reached before anything is written, and a clone that fails before anything has
    arrived leaves nothing behind: not the workspace, not the directory if the clone made it. One
    cut short after something arrived leaves a workspace marked :data:`CLONE_MARKER`; cloning
    into it again resumes it, and every option given again (the URL too) replaces the saved one,
    so a clone that failed for a wrong ``--remote-dcsync`` goes on with the right one.
    """
    since_t = time_arg("since", since, since_ns)
    target = Path(path)
    if kind is not None and kind not in KINDS:
        raise UsageError(f"invalid location kind {kind!r}: choose one of {', '.join(KINDS)}")
    given = RemoteConfig(
        "origin",
        absolute_url(url),
        remote_dcsync,
        ssh_command,
        tuple(detectors or ()),
        tuple(ctypes or ()),
        since_t,
        payloads,
    )
    ws = unfinished_clone(target)
    if ws is None:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UsageError(f"{target} exists and is not an empty directory")
        origin = given
    else:
        origin = _resumed_origin(remotes(ws).get("origin"), given)
    own = conn is None
    conn = conn or connect(origin)  # most failures (host, key, user, no dcsync, path) happen here
    created, made = ws is None, _directory_to_make(target)
    try:
        if ws is None:  # the marker first: a clone killed at any point after this resumes
            (target / CONFIG_DIR).mkdir(parents=True)
            (target / CONFIG_DIR / CLONE_MARKER).touch()
            ws = Workspace.init(target, kind=kind or "local")
            add_remote(ws, origin)
        else:
            _save_origin(ws, origin, kind)
        report = pull(ws, "origin", progress=progress, conn=conn, must_match=must_match)
    except BaseException:
        if created and (ws is None or not _received_anything(ws)):
            _undo_clone(target, made)
        raise
    finally:
        if own:
            conn.close()
    (ws.root / CONFIG_DIR / CLONE_MARKER).unlink(missing_ok=True)
    return ws, report


def unfinished_clone(target: Path | str) -> Workspace | None:
    """The workspace at ``target`` if a clone made it and has not finished (it resumes)."""
    root = Path(target)
    return Workspace(root) if (root / CONFIG_DIR / CLONE_MARKER).is_file() else None


def _resumed_origin(saved: RemoteConfig | None, given: RemoteConfig) -> RemoteConfig:
    """The origin a resumed clone goes on with: each option given now, else the saved one."""
    if saved is None:
        return given
    return RemoteConfig(
        "origin",
        given.url,
        given.remote_dcsync if given.remote_dcsync is not None else saved.remote_dcsync,
        given.ssh_command if given.ssh_command is not None else saved.ssh_command,
        given.detectors or saved.detectors,
        given.ctypes or saved.ctypes,
        given.since_ns if given.since_ns is not None else saved.since_ns,
        given.payloads,
    )


def _save_origin(ws: Workspace, origin: RemoteConfig, kind: str | None) -> None:
    """Record a resumed clone's options, so its later pulls use what worked."""
    config = ws.config()
    config.setdefault("remotes", {})["origin"] = origin.to_toml()
    ws.write_config(config)
    acl = ws.acl()
    if kind is not None and kind != acl.kind:
        acl_module.save(ws.root, replace(acl, kind=kind), current_identity(), f"clone --kind {kind}")


def _directory_to_make(target: Path) -> Path | None:
    """The outermost directory of ``target`` that does not exist yet (None: it all exists)."""
    path = target.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def _received_anything(ws: Workspace) -> bool:
    """Whether a failed clone got something worth resuming from: a detector, a verified object
    or part of a whole file (a whole file's token alone is not worth it)."""
    if ws.detectors():
        return True
    incoming = ws.root / CONFIG_DIR / "incoming"
    return incoming.is_dir() and any(
        p.is_file() and not p.name.endswith(".token") and p.stat().st_size > 0 for p in incoming.rglob("*")
    )


def _undo_clone(target: Path, made: Path | None) -> None:
    """Remove what a clone that got nothing made: the directory it created, or (in a directory
    that was empty before) the workspace it made there. Best effort: the error that got us here
    is the one to report, and an unfinished clone left behind still resumes."""
    with contextlib.suppress(OSError):
        shutil.rmtree(made if made is not None else target / CONFIG_DIR)


# -- diff between workspaces ---------------------------------------------------------------------------
class _MemoryReceiver:
    """Collects one small object in memory (trees for a diff; payloads only with --values)."""

    def __init__(self, store: MemoryStore, header: Header, peer: str) -> None:
        self.store, self.header, self.parts, self.peer = store, header, bytearray(), peer

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.header.size

    def write(self, data: bytes) -> None:
        self.parts += data

    def finish(self) -> None:
        h, body = self.header, bytes(self.parts)
        with self.store.writing():
            if h.kind in ("tree", "commit"):
                self.store.put_body(h.oid, h.kind, body, peer=self.peer)
            elif h.kind == "text":
                value: Any = body.decode("utf-8")
                self.store.put_payload(verify_payload(h.oid, value, "the transfer"), known_id=h.oid)
            else:
                arr = np.frombuffer(body, dtype=h.dtype).reshape(h.shape).copy()
                self.store.put_payload(verify_payload(h.oid, arr, "the transfer"), known_id=h.oid)

    def abort(self) -> None:
        self.parts.clear()


class _Arrivals:
    """A diff side's scratch store as the receive walk reads it: all of it came from the peer."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def ids(self) -> dict[ObjectId, ObjectKind]:
        return {oid: self.store.kind_of(oid) for oid in self.store.object_ids()}

    def read_object(self, oid: ObjectId, *, peer: str | None = None) -> Tree | Commit:
        return self.store.read_object(oid)  # checked as it arrived (_MemoryReceiver)

    def payload_facts(self, oid: ObjectId) -> PayloadFacts:
        return stored_facts(self.store, oid)


@dataclass
class Snapshot:
    """One side of a diff: each detector's store and HEAD tree, and how to get payloads."""

    name: str
    roots: dict[str, tuple[ObjectStore, RootTree]]
    heads: dict[str, str] = field(default_factory=dict)
    conn: Connection | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    scope: Scope | None = None  # a partial clone's filter: what this side can be compared on

    def payload(self, det: str, entry: VersionEntry) -> Any:
        """The payload of a version, received now if this side is a remote's."""
        store, oid = self.roots[det][0], entry.obj
        conn = self.conn
        if conn is not None and isinstance(store, MemoryStore):  # all of it came from the peer
            if not store.has(oid):
                receive_objects(
                    conn, [(det, oid, 0)], lambda _d, h: _MemoryReceiver(store, h, conn.peer), _no_progress
                )
            if store.kind_of(oid) != entry.kind:
                found, expected = store.kind_name_of(oid), kind_name(entry.kind)
                raise wrong_kind(oid, found, expected, where=store.where, peer=conn.peer)
            problems = disagreements(entry, stored_facts(store, oid))
            if problems:  # the diff shows the entry: it must say what arrived
                what = f"a version of {det} compared"
                raise claims_error(entry, problems, what=what, where=store.where, peer=conn.peer)
        return store.read_payload(oid)

    def close(self) -> None:
        for close in self.closers:
            close()
        if self.conn is not None:
            self.conn.close()


def snapshot(
    source: str,
    *,
    here: Workspace | None = None,
    detectors: list[str] | None = None,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> Snapshot:
    """A diff side from a repository file, a workspace directory, a remote name or a URL.

    ``remote_dcsync`` and ``ssh_command`` apply to a URL (a named remote has its own).
    """
    path = Path(source).expanduser()
    if source.endswith(".h5") and path.is_file():
        repo = Repository.open(path)
        root = repo.root()
        return Snapshot(
            source, {root.detname: (repo.store, root)}, {root.detname: str(repo.head())}, closers=[repo.close]
        )
    if path.is_dir() and (path / CONFIG_DIR).is_dir():
        ws = Workspace(path)
        snap = Snapshot(source, {}, scope=_scope(source, ws, remotes(ws).get("origin")))
        for det in ws.detectors():
            if _in_scope(det, detectors):
                repo = Repository.open(ws.detector_path(det))
                if repo.head() is not None:
                    snap.roots[det] = (repo.store, repo.root())
                    snap.heads[det] = str(repo.head())
                snap.closers.append(repo.close)
        return snap
    spec = remote_for(source, here, remote_dcsync=remote_dcsync, ssh_command=ssh_command)
    conn = connect(spec)
    named = here is not None and source in remotes(here)
    snap = Snapshot(source, {}, conn=conn, scope=_scope(source, here, spec) if named and here else None)
    try:
        heads = conn.call("heads", detectors=detectors)["heads"]
        flt = {"payloads": False, "history": False}
        wants = [{"detector": d, "want": h, "have": [], "filter": flt} for d, h in sorted(heads.items()) if h]
        offered = offered_objects(conn.call("negotiate", wants=wants), peer=conn.peer) if wants else {}
        stores = {det: MemoryStore() for det in offered}
        items = [(det, oid, size) for det, objs in sorted(offered.items()) for oid, _, size in objs]
        receive_objects(conn, items, lambda det, h: _MemoryReceiver(stores[det], h, conn.peer), _no_progress)
        for want in wants:
            det, store, head = want["detector"], stores[want["detector"]], ObjectId(want["want"])
            for _ in walk_missing(MemoryStore(), _Arrivals(store), head, flt, peer=conn.peer, detector=det):
                pass  # what the peer sent is what it claims to be, or nothing is compared
            snap.roots[det] = (store, store.read_as(store.read_commit(head).tree, RootTree))
            snap.heads[det] = str(want["want"])
    except BaseException:
        snap.close()
        raise
    return snap


def _scope(source: str, ws: Workspace, remote: RemoteConfig | None) -> Scope | None:
    """What a diff side can be compared on when ``remote`` carries a partial-clone filter (the
    ``origin`` of a partial workspace, or such a remote named as a side): its detectors (and those
    ``ws`` holds), ctypes and ``since``."""
    if remote is None or not (remote.detectors or remote.ctypes or remote.since_ns is not None):
        return None
    return Scope(source, remote.detectors, remote.ctypes, remote.since_ns, frozenset(ws.detectors()))


@dataclass
class LeftOut:
    """What a diff did not compare because a side is a partial clone (see :class:`Scope`)."""

    scopes: list[Scope]
    detectors: list[str] = field(default_factory=list)  # not compared at all
    changes: int = 0  # differences in compared detectors outside the filters

    def to_json(self) -> dict[str, Any]:
        return {
            "filters": [s.to_json() for s in self.scopes],
            "detectors": self.detectors,
            "changes": self.changes,
        }

    def describe(self) -> str:
        """One line for the human output, or "" when nothing was left out."""
        if not self.detectors and not self.changes:
            return ""
        what = []
        if self.detectors:
            names = ", ".join(self.detectors[:5]) + (", ..." if len(self.detectors) > 5 else "")
            what.append(f"{len(self.detectors)} detector(s) ({names})")
        if self.changes:
            what.append(f"{self.changes} change(s) in other ctypes or ranges")
        filters = "; ".join(s.describe() for s in self.scopes)
        return f"left out, outside the partial-clone filter of {filters}: {' and '.join(what)}"


@dataclass
class DiffReport:
    a: str
    b: str
    changes: list[Change]
    values: dict[int, dict[str, Any]] = field(default_factory=dict)  # index in changes -> stats
    left_out: LeftOut | None = None  # None: neither side is a partial clone

    def to_json(self) -> dict[str, Any]:
        def entry(value: Any) -> Any:
            if isinstance(value, VersionEntry):
                return {
                    "object": value.obj,
                    "dtype": value.dtype,
                    "shape": list(value.shape),
                    "tsprod": value.tsprod,
                    "pars": dict(value.pars),
                }
            return readable(value)

        return {
            "a": self.a,
            "b": self.b,
            "left_out": None if self.left_out is None else self.left_out.to_json(),
            "summary": summarize(self.changes),
            "changes": [
                {
                    "detector": c.detname,
                    "ctype": c.ctype,
                    "range": c.range,
                    "version": c.version,
                    "kind": c.kind,
                    "old": entry(c.old),
                    "new": entry(c.new),
                    **({"values": self.values[i]} if i in self.values else {}),
                }
                for i, c in enumerate(self.changes)
            ],
        }


def _compared_entries(left: Snapshot, right: Snapshot, c: Change) -> tuple[VersionEntry, VersionEntry] | None:
    """The two versions whose values a change compares: a changed version's old and new content,
    or, when a range's default moved, the old default's and the new one's."""
    if c.kind == "changed" and isinstance(c.old, VersionEntry) and isinstance(c.new, VersionEntry):
        return c.old, c.new
    if c.kind == "default" and c.ctype and c.range:
        old = _effective_entry(left, c.detname, c.ctype, c.range)
        new = _effective_entry(right, c.detname, c.ctype, c.range)
        if old is not None and new is not None and old.obj != new.obj:
            return old, new
    return None


def _effective_entry(snap: Snapshot, det: str, ctype: str, rk: str) -> VersionEntry | None:
    """The version lookups return in one range on one side, if that range exists there."""
    if det not in snap.roots:
        return None
    store, root = snap.roots[det]
    if ctype not in root.ctypes:
        return None
    ct = store.read_as(root.ctypes[ctype], CtypeTree)
    ref = ct.ranges.get(RangeKey(rk))
    if ref is None:
        return None
    tree = store.read_as(ref.tree, RangeTree)
    key = tree.effective()
    return None if key is None else tree.versions[key]


def diff_sources(
    a: str,
    b: str,
    *,
    here: Workspace | None = None,
    detectors: list[str] | None = None,
    ctypes: list[str] | None = None,
    values: bool = False,
    remote_dcsync: str | None = None,
    ssh_command: str | None = None,
) -> DiffReport:
    """What differs from ``a`` to ``b``; payloads cross the wire only with ``values``.

    ``remote_dcsync`` and ``ssh_command`` are for a side given as a URL, as in :func:`clone`.
    """
    remote = {"remote_dcsync": remote_dcsync, "ssh_command": ssh_command}
    left = snapshot(a, here=here, detectors=detectors, **remote)
    try:
        right = snapshot(b, here=here, detectors=detectors, **remote)
        try:
            changes: list[Change] = []
            scopes = [s for s in (left.scope, right.scope) if s is not None]
            if len(scopes) == 2 and replace(scopes[1], source=scopes[0].source) == scopes[0]:
                scopes = scopes[:1]  # "diff origin ." in the clone: one filter, said once
            left_out = LeftOut(scopes) if scopes else None
            for det in sorted(set(left.roots) | set(right.roots)):
                if not _in_scope(det, detectors):
                    continue
                if left_out is not None and not all(s.covers_detector(det) for s in scopes):
                    left_out.detectors.append(det)
                    continue
                sa, ra = left.roots.get(det, (MemoryStore(), None))
                sb, rb = right.roots.get(det, (MemoryStore(), None))
                for c in diff_roots(sa, ra, sb, rb, ctypes=set(ctypes) if ctypes else None):
                    if left_out is None or all(in_scope(s, c, sa, ra, sb, rb) for s in scopes):
                        changes.append(c)
                    else:
                        left_out.changes += 1
            report = DiffReport(a, b, changes, left_out=left_out)
            if values:
                for i, c in enumerate(changes):
                    pair = _compared_entries(left, right, c)
                    if pair is None:
                        continue
                    try:
                        report.values[i] = value_stats(
                            left.payload(c.detname, pair[0]), right.payload(c.detname, pair[1])
                        )
                    except ObjectNotFound:  # a partial clone's side: that payload stayed behind
                        if not (left.scope or right.scope):
                            raise
                        report.values[i] = {"comparable": False, "not_fetched": True}
            return report
        finally:
            right.close()
    finally:
        left.close()
