"""``dcsync verify``: re-hash objects and check references and the view; exit 5 on any problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from dcsync.cli.context import State, looks_like_path, state
from dcsync.cli.output import JsonOpt, console, emit_json, say
from dcsync.errors import DcsyncError, DetectorNotFound, RepositoryError
from dcsync.repo.verify import VerifyReport
from dcsync.store.hdf5 import HDF5Store
from dcsync.workspace.verify import verify_path

app = typer.Typer()

_DAMAGE = (OSError, KeyError, RuntimeError, ValueError, TypeError)
PROGRESS_MIN_OBJECTS = 200  # below this a check is instant and a bar is only noise


def _targets(st: State, dets: list[str]) -> list[Path]:
    """The files to check: checked-out detectors and fetched copies waiting for a pull."""
    if dets:
        return [_target(st, d) for d in dets]
    ws = st.workspace()
    return [ws.detector_path(name) for name in ws.detectors()] + [f.path for f in ws.fetched_detectors()]


def _target(st: State, det: str) -> Path:
    try:
        return st.resolve(det)
    except DetectorNotFound:
        fetched = st.workspace().fetched(det) if not looks_like_path(det) else None
        if fetched is None:
            raise
        return fetched.path


def _count(path: Path) -> int:
    try:
        store = HDF5Store(path)
    except DcsyncError:
        return 0
    try:
        return sum(1 for _ in store.object_ids())
    except (DcsyncError, OSError, KeyError, RuntimeError, ValueError):
        return 0
    finally:
        store.close()


def _verify(path: Path, tick: Callable[[int], None] | None = None) -> VerifyReport:
    try:
        return verify_path(path, tick)
    except DcsyncError as exc:  # e.g. a file from a newer dcsync: a problem of this file only
        return VerifyReport(str(path), problems=[exc.message])
    except _DAMAGE as exc:  # h5py on a damaged file; verify_path does not translate every case yet
        return VerifyReport(str(path), problems=[f"verify stopped: {type(exc).__name__}: {exc}"])


@app.command()
def verify(
    ctx: typer.Context,
    dets: Annotated[
        list[str] | None,
        typer.Argument(help="Detectors (names, aliases or .h5 paths); default: all.", metavar="DET"),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Check repositories: every object's hash, every reference, and the HDF5 view of HEAD."""
    paths = _targets(state(ctx), dets or [])
    err = console(stderr=True)
    reports: list[VerifyReport] = []
    total = sum(_count(p) for p in paths) if err.is_terminal else 0
    if total >= PROGRESS_MIN_OBJECTS:
        # here, not at the top: rich.progress is ~10 ms of every `dcsync --help`
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("verify", total=total)
            for path in paths:
                reports.append(_verify(path, lambda n: progress.advance(task, n)))
    else:
        reports = [_verify(p) for p in paths]
    bad = [r for r in reports if not r.ok]
    if json:
        emit_json({"ok": not bad, "repositories": [r.to_json() for r in reports]})
    else:
        for r in reports:
            if r.ok:
                waiting = "" if r.checked_out else "; fetched, not checked out"
                say(f"ok      {r.where} ({r.objects} objects, {r.commits} commits{waiting})")
            else:
                say(f"FAILED  {r.where}")
                for problem in r.problems:
                    say(f"        {problem}")
        if not reports:
            say("nothing to verify: no detectors in the workspace")
    if bad:
        raise RepositoryError(
            f"{len(bad)} of {len(reports)} repositories have problems: " + ", ".join(r.where for r in bad)
        )
