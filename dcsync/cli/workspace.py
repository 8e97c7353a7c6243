"""``dcsync init`` and ``dcsync new``: create a workspace and detector repositories in it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, emit_json, say
from dcsync.model.names import detname_to_create
from dcsync.workspace.workspace import KINDS, Workspace

app = typer.Typer()


@app.command()
def init(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="Directory to make a workspace (default: -C or .).")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help=f"Location kind: {', '.join(KINDS)}.", metavar="KIND")
    ] = "local",
    group: Annotated[
        str | None,
        typer.Option("--group", help="experiment: the Unix group whose members write.", metavar="GROUP"),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Make a directory a dcsync workspace (a calib directory)."""
    target = path or state(ctx).directory or Path(".")
    ws = Workspace.init(target, kind=kind, group=group)
    if json:
        emit_json({"workspace": str(ws.root), "kind": ws.kind})
    else:
        say(f"initialized {ws.kind} workspace in {ws.root}")


@app.command()
def new(
    ctx: typer.Context,
    detname: Annotated[
        str,
        typer.Argument(
            help="DETTYPE-DETID, lower case (e.g. epix100a-3925868555), or its file name DETTYPE-DETID.h5."
        ),
    ],
    predecessor: Annotated[
        str | None,
        typer.Option(
            "--predecessor",
            help="The detector of this workspace this one replaces (name or alias); it must exist.",
            metavar="DET",
        ),
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--alias", help="Also add this alias.", metavar="ALIAS")
    ] = None,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="Message of the first commit.", metavar="MESSAGE")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Create a detector repository in the workspace, at DETTYPE/DETTYPE-DETID.h5."""
    detname = detname_to_create(detname)  # epix-1.h5 names the file of epix-1, not a detector "epix-1.h5"
    ws = state(ctx).workspace()
    with ws.new_detector(detname, predecessor=predecessor or "", alias=alias, message=message) as repo:
        head = repo.head()
        pred = repo.root().predecessor  # an alias resolved to the detector's name
        path = ws.detector_path(detname)
    if json:
        emit_json(
            {
                "detector": detname,
                "path": str(path),
                "alias": alias,
                "predecessor": pred or None,
                "head": head,
            }
        )
    else:
        extra = "".join([f", alias {alias}" if alias else "", f", successor of {pred}" if pred else ""])
        say(f"created {detname} at {path}{extra}")
