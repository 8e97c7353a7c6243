"""``dcsync alias add|rm|ls``: human names (``Camera1``, ``XppGon.0:Epix100a.1``) for detectors."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, console, emit_json, say

app = typer.Typer(no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="The new name.")],
    det: Annotated[str, typer.Argument(help="Detector name (or another alias).", metavar="DET")],
    json: JsonOpt = False,
) -> None:
    """Make ALIAS name detector DET."""
    st = state(ctx)
    made = st.workspace().add_alias(alias, st.detname(det))
    if json:
        emit_json({"alias": made.alias, "detector": made.detname, "file": str(made.file)})
    else:
        say(f"alias {made.alias} -> {made.detname}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    alias: Annotated[str, typer.Argument(help="The alias to remove.")],
    json: JsonOpt = False,
) -> None:
    """Remove an alias (the detector stays)."""
    gone = state(ctx).workspace().remove_alias(alias)
    if json:
        emit_json({"alias": gone.alias, "detector": gone.detname, "file": str(gone.file)})
    else:
        say(f"removed alias {gone.alias} (was {gone.detname})")


@app.command("ls")
def ls(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List aliases."""
    aliases = sorted(state(ctx).workspace().aliases().values(), key=lambda a: a.alias)
    if json:
        emit_json(
            {"aliases": [{"alias": a.alias, "detector": a.detname, "file": str(a.file)} for a in aliases]}
        )
        return
    table = Table()
    table.add_column("alias", no_wrap=True)
    table.add_column("detector", no_wrap=True)
    for a in aliases:
        table.add_row(a.alias, a.detname)
    console().print(table)
