"""``pull``: fetch, then fast-forward or merge HEAD three-way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

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
from dcsync.repo.merge import MergeResult, conflicts_json, describe_conflicts, merge_trees
from dcsync.repo.repository import Repository
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync.client import Connection
from dcsync.sync.fetching import FetchReport, detector_selected, fetch
from dcsync.sync.stores import WorkspaceFiles
from dcsync.sync.transfer import Progress, no_progress
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
    progress: Progress = no_progress,
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
    plans = _behind(ws, spec.name, detectors or list(spec.detectors) or None, report.fetch.settled)
    try:
        merges = _merge(plans, spec.name, prefer)
        for plan in plans:
            _move_head(plan, merges.get(plan.detector), remote_ref(spec.name), prefer, report)
    finally:
        for plan in plans:
            plan.repo.close()
    return report


class _PullPlan(NamedTuple):
    """A detector whose HEAD (``ours``) lacks the remote-tracking ref's commit (``theirs``)."""

    detector: str
    repo: Repository
    ours: ObjectId | None
    theirs: ObjectId

    @property
    def fast_forward(self) -> bool:
        return self.ours is None or is_ancestor(self.repo.store, self.ours, self.theirs)


def _behind(ws: Workspace, remote: str, globs: list[str] | None, settled: set[str]) -> list[_PullPlan]:
    """The detectors in scope whose HEAD the fetch left behind ``remotes/<remote>`` (opened)."""
    ref = remote_ref(remote)
    files = WorkspaceFiles(ws)
    plans: list[_PullPlan] = []
    for det in ws.detectors():
        if not detector_selected(det, globs) or det in settled:
            continue
        repo = files.repository(det)
        theirs = repo.store.refs().get(ref)
        ours = repo.head()
        if theirs is None or theirs == ours or (ours and is_ancestor(repo.store, theirs, ours)):
            repo.close()
            continue
        plans.append(_PullPlan(det, repo, ours, theirs))
    return plans


def _merge(
    plans: list[_PullPlan], remote: str, prefer: Literal["ours", "theirs"] | None
) -> dict[str, MergeResult]:
    """The three-way merge of every plan that is no fast-forward, or :class:`MergeConflict`
    naming every conflict (unless ``prefer`` resolves them) before any HEAD moves."""
    merges = {}
    reports: list[str] = []
    conflicts: dict[str, list[dict[str, Any]]] = {}
    for plan in plans:
        if plan.fast_forward or plan.ours is None:
            continue
        store, ours, theirs = plan.repo.store, plan.ours, plan.theirs
        base = merge_base(store, ours, theirs)
        repo = plan.repo
        result = merge_trees(
            store, repo.root(base) if base else None, repo.root(ours), repo.root(theirs), prefer=prefer
        )
        if result.conflicts and prefer is None:
            reports.append(describe_conflicts(plan.detector, result.conflicts, remote=remote))
            conflicts[plan.detector] = conflicts_json(result.conflicts)
        merges[plan.detector] = result
    if reports:
        raise MergeConflict("\n".join(reports), details={"remote": remote, "conflicts": conflicts})
    return merges


def _move_head(
    plan: _PullPlan,
    merged: MergeResult | None,
    ref: str,
    prefer: Literal["ours", "theirs"] | None,
    report: PullReport,
) -> None:
    """Fast-forward HEAD to ``theirs``, or commit ``merged`` on top of both sides."""
    store, ours, theirs, det = plan.repo.store, plan.ours, plan.theirs, plan.detector
    with store.writing():
        if merged is None or ours is None:
            store.set_ref(HEAD, ours, theirs, LogRecord(HEAD, ours, theirs, "pull", f"fast-forward to {ref}"))
            report.fast_forwarded.append(det)
            return
        for tree in merged.new_objects:
            store.put_object(tree)
        root_id = store.put_object(merged.root)
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
    if merged.conflicts:
        report.resolved[det] = [c.what for c in merged.conflicts]
