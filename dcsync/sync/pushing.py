"""``push``: send what the remote lacks and ask it to move its HEADs (fast-forward only; ``atomic``)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dcsync.errors import (
    NotFastForward,
)
from dcsync.model.hashing import ObjectId
from dcsync.repo.graph import is_ancestor
from dcsync.repo.reach import objects_for
from dcsync.repo.repository import Repository
from dcsync.sync.client import Connection, connect
from dcsync.sync.fetching import detector_selected
from dcsync.sync.replies import RefUpdate
from dcsync.sync.stores import WorkspaceFiles
from dcsync.sync.transfer import Meter, ObjectSender, Progress, no_progress, track_remote
from dcsync.workspace.config import (
    RemoteConfig,
    tracking_remote,
)
from dcsync.workspace.workspace import Workspace


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
    progress: Progress = no_progress,
    conn: Connection | None = None,
) -> PushReport:
    """Send local commits and move the remote's HEADs (fast-forward only).

    ``conn`` (here and in fetch, pull, clone) uses an open connection instead of dialling the
    remote's URL: an in-process server, for embedding and tests. The caller closes it.
    """
    spec = tracking_remote(ws, remote)
    report = PushReport(spec.name, dry_run=dry_run)
    with contextlib.nullcontext(conn) if conn is not None else connect(spec) as conn:
        plans: list[PushPlan] = []
        try:
            plans, rejected = _plan(ws, spec, conn.heads(detectors).heads, detectors)
            report.planned = {p.detector: (p.old, p.new) for p in plans}
            # Like git: a refused detector stops an atomic push (or one with nothing else to send);
            # otherwise the others go and the report names the refused ones.
            if rejected and (atomic or not plans):
                raise NotFastForward("\n".join(rejected.values()), details={"refused": rejected})
            report.failed.update(rejected)
            if dry_run or not plans:
                report.objects = sum(len(p.objects) for p in plans)
                report.bytes = sum(size for p in plans for _, _, size in p.objects)
                return report
            report.objects, report.bytes = _send_objects(conn, plans, progress)
            answer = conn.update_refs(
                [RefUpdate(p.detector, p.old, p.new) for p in plans], atomic=atomic, message=message
            )
            report.notes = list(answer.notes)  # what the remote's hooks said
            for result in answer.results:
                if result.error is None:
                    report.pushed.append(result.detector)
                else:
                    report.failed[result.detector] = result.error.message
            for p in plans:
                if p.detector in report.pushed:
                    track_remote(p.repo.store, spec, p.new, "push")
        finally:
            for p in plans:
                p.repo.close()
    return report


class PushPlan(NamedTuple):
    """One detector a push moves on the remote, from ``old`` (None: new there) to ``new``, and
    the objects (id, kind, size) ``new`` needs beyond ``old``."""

    detector: str
    repo: Repository
    old: ObjectId | None
    new: ObjectId
    objects: list[tuple[ObjectId, str, int]]


def _plan(
    ws: Workspace, spec: RemoteConfig, heads: Mapping[str, ObjectId | None], detectors: list[str] | None
) -> tuple[list[PushPlan], dict[str, str]]:
    """What to push (repositories left open) and, per detector, why a push of it is refused."""
    plans: list[PushPlan] = []
    rejected: dict[str, str] = {}
    files = WorkspaceFiles(ws)
    try:
        for det in ws.detectors():
            if not detector_selected(det, detectors):
                continue
            repo = files.repository(det)
            local, theirs = repo.head(), heads.get(det)
            if local is None or local == theirs:
                if local is not None:  # the remote has it: an earlier push whose answer was lost
                    track_remote(repo.store, spec, local, "push")
                repo.close()
                continue
            if theirs is not None and (
                not repo.store.has(theirs) or not is_ancestor(repo.store, theirs, local)
            ):
                repo.close()
                rejected[det] = (
                    f"{det}: the remote has commits you do not have; pull first (dcsync pull {spec.name})"
                )
                continue
            objects = list(objects_for(repo.store, local, [theirs] if theirs else [], {}))
            plans.append(PushPlan(det, repo, theirs, local, objects))
    except BaseException:
        for p in plans:
            p.repo.close()
        raise
    return plans, rejected


def _send_objects(conn: Connection, plans: list[PushPlan], progress: Progress) -> tuple[int, int]:
    """Upload what the remote lacks of each plan (it may hold some from a push cut short);
    (objects, bytes) sent."""
    pairs = [(p.detector, oid) for p in plans for oid, _, _ in p.objects]
    present = {pair for pair, has in zip(pairs, conn.have(pairs), strict=True) if has}
    sizes = {(p.detector, oid): size for p in plans for oid, _, size in p.objects}
    meter = Meter(sum(size for pair, size in sizes.items() if pair not in present), progress, "sending")
    objects = 0
    for p in plans:
        todo = [oid for oid, _, _ in p.objects if (p.detector, oid) not in present]
        if todo:
            conn.put_objects(p.detector, ObjectSender(p.repo.store, meter).items(todo))
        objects += len(todo)
    return objects, meter.total
