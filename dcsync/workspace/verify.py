"""Verify a repository file as its workspace sees it: what the file's place makes expected.

A workspace that fetches with a filter (a partial clone) leaves payloads out on purpose, and a
fetched copy in ``.dcsync/fetched/`` has no HEAD until a pull checks it out; neither is damage.
The checks themselves know no workspace (:func:`dcsync.repo.verify.verify_file`); this finds the
context they take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dcsync.errors import DcsyncError
from dcsync.repo.verify import VerifyReport, verify_file
from dcsync.workspace.config import is_partial_clone
from dcsync.workspace.workspace import Workspace, is_fetched_copy


def verify_path(path: Path | str, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify one repository file (:func:`dcsync.repo.verify.verify_file`) in the context of the
    workspace it sits in, if any."""
    path = Path(path)
    return verify_file(path, progress, partial=_is_partial(path), checked_out=not is_fetched_copy(path))


def _is_partial(path: Path) -> bool:
    """Whether the workspace holding ``path`` fetches with a filter (so payloads may be absent)."""
    try:
        ws = Workspace.containing(path)
        return ws is not None and is_partial_clone(ws)
    except DcsyncError:  # an unreadable config: judge the file as a full copy
        return False
