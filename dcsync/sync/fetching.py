"""``fetch``: learn the remote's heads, receive the objects this workspace lacks, move ``remotes/<name>``."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcsync.errors import (
    DetectorNotFound,
    RefConflict,
)
from dcsync.model.hashing import ObjectId
from dcsync.repo.graph import is_ancestor
from dcsync.repo.reach import walk_missing
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync import wholefile
from dcsync.sync.client import Connection, connect
from dcsync.sync.quarantine import incoming_dir
from dcsync.sync.stores import WorkspaceFiles
from dcsync.sync.transfer import Progress, no_progress, quarantine_of, receive_objects
from dcsync.workspace.config import (
    RemoteConfig,
    tracking_remote,
)
from dcsync.workspace.workspace import Workspace


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
    return wholefile.enabled() and not spec.filter() and wholefile.CAPABILITY in conn.server.capabilities


def detector_selected(det: str, globs: tuple[str, ...] | list[str] | None) -> bool:
    """Whether ``det`` is among the detectors a command's globs select (none: all of them)."""
    return not globs or any(fnmatch.fnmatchcase(det, g) for g in globs)


@dataclass
class _Plan:
    """What a fetch does for each remote HEAD it learned, decided from the local files alone."""

    wants: list[dict[str, Any]] = field(default_factory=list)  # negotiate's wants: objects to come
    lacking: list[str] = field(default_factory=list)  # no file here: candidates for whole files
    # fetched earlier (detector, remote HEAD): only HEAD (and the file) move
    checkouts: list[tuple[str, ObjectId]] = field(default_factory=list)


def fetch(
    ws: Workspace,
    remote: str = "origin",
    *,
    detectors: list[str] | None = None,
    progress: Progress = no_progress,
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
        heads = conn.heads(globs).heads
        if globs and not heads and must_match:
            raise _no_match(conn, spec, globs)
        plan = _plan(ws, spec, heads, fast_forward, report)
        for det, rhead in plan.checkouts:
            _, moved = _import_and_move(ws, det, remote_ref(spec.name), rhead, spec, True, conn.peer)
            if moved:
                report.fast_forwarded.append(det)
            report.settled.add(det)
        if fast_forward and plan.lacking and _whole_files_apply(conn, spec):
            adopted = _fetch_whole_files(ws, conn, spec, plan.lacking, progress, report)
            plan.wants = [w for w in plan.wants if w["detector"] not in adopted]
        if plan.wants:
            _fetch_objects(ws, conn, spec, plan.wants, fast_forward, progress, report)
    finally:
        if own:
            conn.close()
    return report


def _plan(
    ws: Workspace,
    spec: RemoteConfig,
    heads: Mapping[str, ObjectId | None],
    fast_forward: bool,
    report: FetchReport,
) -> _Plan:
    """Sort the remote's HEADs: settled already (into ``report``), to check out, or to fetch."""
    plan = _Plan()
    files = WorkspaceFiles(ws)
    for det, rhead in sorted(heads.items()):
        if rhead is None:
            continue
        store = files.open_fetch_target(det)
        if store is not None:
            try:
                refs = store.refs()
                if refs.get(remote_ref(spec.name)) == rhead:
                    if store.path != ws.detector_path(det):  # a copy in .dcsync/fetched/
                        if fast_forward or HEAD in refs:  # HEAD in refs: a check-out cut short
                            plan.checkouts.append((det, rhead))
                    elif refs.get(HEAD) == rhead:
                        report.settled.add(det)
                    continue
                have = sorted({c for c in refs.values() if store.has(c)})
            finally:
                store.close()
        else:
            have = []
            plan.lacking.append(det)
        plan.wants.append({"detector": det, "want": rhead, "have": have, "filter": spec.filter()})
    return plan


def _fetch_whole_files(
    ws: Workspace,
    conn: Connection,
    spec: RemoteConfig,
    lacking: list[str],
    progress: Progress,
    report: FetchReport,
) -> dict[str, ObjectId]:
    """Receive the detectors this workspace lacks as whole files; the HEADs of those adopted."""
    incoming = incoming_dir(ws)
    adopted, report.bytes, report.refused = wholefile.fetch_files(
        conn.get_files, incoming, lacking, ws.detector_path, spec.name, spec.url, progress
    )
    for det, head in adopted.items():
        report.updated[det] = (None, head)
        report.fast_forwarded.append(det)
        report.settled.add(det)
    report.files = len(adopted)
    return adopted


def _fetch_objects(
    ws: Workspace,
    conn: Connection,
    spec: RemoteConfig,
    wants: list[dict[str, Any]],
    fast_forward: bool,
    progress: Progress,
    report: FetchReport,
) -> None:
    """Receive the objects ``wants`` lack here into the quarantine, then import them and move the refs."""
    offered = conn.negotiate(wants)
    missing: list[tuple[str, ObjectId, int]] = []
    files = WorkspaceFiles(ws)
    for det, objects in sorted(offered.items()):
        q = quarantine_of(ws, det)
        local = files.open_fetch_target(det)
        try:
            for oid, _kind, size in objects:
                if not q.has(oid) and not (local and local.has(oid)):
                    missing.append((det, oid, size))
        finally:
            if local:
                local.close()
    quarantines = {det: quarantine_of(ws, det) for det in offered}
    receive_objects(conn, missing, lambda det, h: quarantines[det].receive(h), progress)
    report.objects = len(missing)
    report.bytes += sum(size for _, _, size in missing)
    for want in wants:
        name, target = str(want["detector"]), ObjectId(str(want["want"]))
        old, moved = _import_and_move(ws, name, remote_ref(spec.name), target, spec, fast_forward, conn.peer)
        report.updated[name] = (old, target)
        if moved:
            report.fast_forwarded.append(name)
            report.settled.add(name)


NAMED_DETECTORS = 30  # how many of the remote's detectors a filter that matched none names


def _no_match(conn: Connection, spec: RemoteConfig, globs: list[str]) -> DetectorNotFound:
    """The error for a detector filter that matches nothing, naming the detectors there are."""
    names = sorted(conn.heads().heads)
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
    files = WorkspaceFiles(ws)
    store = files.open_fetch_target(det) or files.new_fetched_copy(det)
    fetched_copy = store.path != ws.detector_path(det)  # not checked out: placed once it has a HEAD
    q = quarantine_of(ws, det)
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
    if checked_out and fetched_copy:
        _place(ws, det, store.path)
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
