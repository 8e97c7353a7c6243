"""``status``: how far each detector is ahead of or behind its remote-tracking ref."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcsync.repo.graph import ancestors
from dcsync.store.refs import remote_ref
from dcsync.workspace.config import (
    tracking_remote,
)
from dcsync.workspace.workspace import Workspace, open_repository


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
        with open_repository(path) as repo:
            head, theirs = repo.head(), repo.store.refs().get(ref)
            mine = ancestors(repo.store, [head]) if head else set()
            other = ancestors(repo.store, [theirs]) if theirs and repo.store.has(theirs) else set()
            rows.append(StatusRow(det, head, theirs, len(mine - other), len(other - mine), checked_out))
    return rows
