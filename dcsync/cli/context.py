"""What every command shares, kept in ``ctx.obj``: the workspace choice and the lock timeout.

Commands name detectors by name, alias or path to an ``.h5`` file; a path works even outside a
workspace, so the workspace is only looked for when a name needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import typer

from dcsync.errors import DetectorNotFound, WorkspaceNotFound
from dcsync.repo.repository import Repository
from dcsync.workspace.workspace import Workspace, open_repository


def looks_like_path(name: str) -> bool:
    """The same test :meth:`Workspace.resolve` applies: a path names a file, not a detector."""
    return name.endswith(".h5") or os.sep in name or (os.altsep is not None and os.altsep in name)


@dataclass
class State:
    """Global options, resolved lazily so ``dcsync init`` and path-named detectors need no workspace."""

    directory: Path | None = None
    lock_timeout: float = 30.0
    _workspace: Workspace | None = field(default=None, repr=False)

    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(self.directory) if self.directory else Workspace.find()
        return self._workspace

    def workspace_if_any(self) -> Workspace | None:
        """The workspace, or None outside one (commands that also take paths and URLs)."""
        try:
            return self.workspace()
        except WorkspaceNotFound:
            return None

    def resolve(self, name: str) -> Path:
        """A detector's repository file from its name, an alias, or a path to an ``.h5`` file."""
        if looks_like_path(name):
            path = Path(name).expanduser()
            if path.is_file():
                return path.resolve()
            raise DetectorNotFound(f"no repository file {name}")
        return self.workspace().resolve(name)

    def repository(self, name: str) -> Repository:
        return open_repository(self.resolve(name), lock_timeout=self.lock_timeout)

    def detname(self, name: str) -> str:
        """A detector name for ``name``, following an alias (used where the API wants a name)."""
        alias = self.workspace().aliases().get(name)
        return alias.detname if alias is not None else name


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # a command invoked without the main callback (tests)
        obj = ctx.find_root().obj = State()
    return obj
