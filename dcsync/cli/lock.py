"""``dcsync lock status|break``: who holds a repository's write lock, and removing a dead one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, console, emit_json, say
from dcsync.model.times import format_time
from dcsync.store.locking import FileLock, LockInfo, break_lock, lock_status

app = typer.Typer(no_args_is_help=True)


def _holder(info: LockInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "user": info.user,
        "host": info.host,
        "pid": info.pid,
        "start": format_time(info.start) if info.readable else None,
        "heartbeat": format_time(info.heartbeat),
        "command": info.command,
        "readable": info.readable,
        "description": info.describe(),
    }


@app.command()
def status(
    ctx: typer.Context,
    dets: Annotated[
        list[str] | None,
        typer.Argument(help="Detectors (names, aliases or .h5 paths); default: all.", metavar="DET"),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Show which repositories are locked, by whom, and whether the lock looks stale."""
    st = state(ctx)
    if dets:
        paths = [st.resolve(d) for d in dets]
    else:
        ws = st.workspace()
        paths = [ws.detector_path(name) for name in ws.detectors()]
    rows: list[dict[str, Any]] = []
    for path in paths:
        info = lock_status(path)
        stale = info is not None and info.is_stale(FileLock(path).stale_after)
        rows.append(
            {
                "detector": Path(path).stem,
                "path": str(path),
                "locked": info is not None,
                "stale": stale,
                "holder": _holder(info),
            }
        )
    if json:
        emit_json({"locks": rows})
        return
    table = Table()
    for col in ("detector", "lock", "holder"):
        table.add_column(col, no_wrap=col != "holder")
    for row in rows:
        state_text = "free" if not row["locked"] else ("STALE" if row["stale"] else "held")
        table.add_row(row["detector"], state_text, row["holder"]["description"] if row["holder"] else "")
    console().print(table)


@app.command("break")
def break_(
    ctx: typer.Context,
    det: Annotated[str, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")],
    force: Annotated[
        bool, typer.Option("--force", help="Break even a live lock (only when that process is surely gone).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Remove a stale lock (or, with --force, any lock)."""
    path = state(ctx).resolve(det)
    removed = break_lock(path, force=force)
    if json:
        emit_json(
            {
                "detector": path.stem,
                "path": str(path),
                "broken": removed is not None,
                "holder": _holder(removed),
            }
        )
    elif removed is None:
        say(f"{path.stem}: not locked (nothing to break)")
    else:
        say(f"{path.stem}: broke the lock {removed.describe()}")
