"""``push``: send what the remote lacks and ask it to move its HEADs (fast-forward only; ``atomic``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from dcsync.errors import (
    NotFastForward,
)
from dcsync.model.hashing import ObjectId
from dcsync.repo.graph import is_ancestor
from dcsync.repo.reach import objects_for
from dcsync.repo.repository import Repository
from dcsync.sync.client import Connection, connect
from dcsync.sync.fetching import _in_scope
from dcsync.sync.transfer import Meter, ObjectSender, Progress, _no_progress, _track
from dcsync.workspace.config import (
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
            sizes = [n for det, _, _, _, objs in plan for oid, _, n in objs if (det, oid) not in present]
            meter = Meter(sum(sizes), progress, "sending")
            for det, repo, _, _, objects in plan:
                todo = [oid for oid, _, _ in objects if (det, oid) not in present]
                if todo:
                    conn.upload("put_objects", ObjectSender(repo.store, meter).items(todo), detector=det)
                report.objects += len(todo)
            report.bytes = meter.total
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
