"""``clone``: a new workspace from a remote, resumable when cut short."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

from dcsync.errors import (
    UsageError,
)
from dcsync.model.times import TimeLike, time_arg
from dcsync.sync.client import Connection, connect
from dcsync.sync.pulling import PullReport, pull
from dcsync.sync.quarantine import incoming_dir
from dcsync.sync.transfer import Progress, no_progress
from dcsync.workspace import acl as acl_module
from dcsync.workspace.acl import KINDS, current_identity
from dcsync.workspace.config import (
    RemoteConfig,
    absolute_url,
    add_remote,
    remotes,
)
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

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
    progress: Progress = no_progress,
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
    ws, origin = _clone_to_resume(target, given)
    own = conn is None
    conn = conn or connect(origin)  # most failures (host, key, user, no dcsync, path) happen here
    created, made = ws is None, _directory_to_make(target)
    try:
        if ws is None:
            ws = _new_clone(target, origin, kind)
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


def _clone_to_resume(target: Path, given: RemoteConfig) -> tuple[Workspace | None, RemoteConfig]:
    """The unfinished clone at ``target`` (None: a new one) and the origin the clone uses: the
    saved one updated by what is ``given``, else ``given``. A directory holding anything else is
    refused."""
    ws = unfinished_clone(target)
    if ws is None:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UsageError(f"{target} exists and is not an empty directory")
        return None, given
    return ws, _resumed_origin(remotes(ws).get("origin"), given)


def _new_clone(target: Path, origin: RemoteConfig, kind: str | None) -> Workspace:
    """The workspace a clone makes at ``target``, marked unfinished before anything else: a clone
    killed at any point after this resumes."""
    (target / CONFIG_DIR).mkdir(parents=True)
    (target / CONFIG_DIR / CLONE_MARKER).touch()
    ws = Workspace.init(target, kind=kind or "local")
    add_remote(ws, origin)
    return ws


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
    incoming = incoming_dir(ws)
    return incoming.is_dir() and any(
        p.is_file() and not p.name.endswith(".token") and p.stat().st_size > 0 for p in incoming.rglob("*")
    )


def _undo_clone(target: Path, made: Path | None) -> None:
    """Remove what a clone that got nothing made: the directory it created, or (in a directory
    that was empty before) the workspace it made there. Best effort: the error that got us here
    is the one to report, and an unfinished clone left behind still resumes."""
    with contextlib.suppress(OSError):
        shutil.rmtree(made if made is not None else target / CONFIG_DIR)
