"""``fetch``: learn the remote's heads, receive the objects this workspace lacks, move ``remotes/<name>``."""

from __future__ import annotations

import fnmatch
import os
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
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync import wholefile
from dcsync.sync.client import Connection, connect
from dcsync.sync.protocol import offered_objects
from dcsync.sync.quarantine import incoming_dir
from dcsync.sync.transfer import Progress, _no_progress, quarantine_of, receive_objects
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
            adopted, report.bytes, report.refused = wholefile.fetch_files(
                conn.stream, incoming_dir(ws), lacking, ws.detector_path, spec.name, spec.url, progress
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
            q = quarantine_of(ws, det)
            path = _repository_file(ws, det)
            local = HDF5Store(path) if path is not None else None
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
    q = quarantine_of(ws, det)
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
