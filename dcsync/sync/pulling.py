"""``pull``: fetch, then fast-forward or merge HEAD three-way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from dcsync.errors import (
    MergeConflict,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.model.objects import (
    Commit,
)
from dcsync.model.times import now_ns
from dcsync.repo.graph import is_ancestor, merge_base
from dcsync.repo.merge import conflicts_json, describe_conflicts, merge_trees
from dcsync.repo.repository import Repository
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync.client import Connection
from dcsync.sync.fetching import FetchReport, _in_scope, fetch
from dcsync.sync.transfer import Progress, _no_progress
from dcsync.workspace.config import (
    tracking_remote,
)
from dcsync.workspace.workspace import Workspace


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
