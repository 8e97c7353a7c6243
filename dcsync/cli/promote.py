"""``dcsync promote``: copy good constants from one location to another, with provenance."""

from __future__ import annotations

from typing import Annotated

import typer

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, emit_json, say, short
from dcsync.cli.sync import RemoteDcsyncOpt, SshOpt
from dcsync.sync.promote import promote as run_promote

app = typer.Typer()


@app.command()
def promote(
    ctx: typer.Context,
    detectors: Annotated[list[str], typer.Argument(help="Detector names to promote.", metavar="DET")],
    source: Annotated[
        str, typer.Option("--from", help="Source location: workspace dir, remote or URL.", metavar="REMOTE")
    ],
    target: Annotated[
        str, typer.Option("--to", help="Target location: workspace dir, remote or URL.", metavar="REMOTE")
    ],
    ctype: Annotated[
        list[str] | None, typer.Option("--ctype", help="Only these ctypes (repeatable).", metavar="CTYPE")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="A version key prefix to promote.", metavar="VERSION")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Promote the versions lookups return at T (default: now).", metavar="TIME"),
    ] = None,
    message: Annotated[
        str, typer.Option("-m", "--message", help="The target commit's message.", metavar="MESSAGE")
    ] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print what would change.")] = False,
    remote_dcsync: RemoteDcsyncOpt = None,
    ssh: SshOpt = None,
    json: JsonOpt = False,
) -> None:
    """Copy chosen versions (ranges, parameters, provenance) through the target's ACL and hooks.

    Running it again changes nothing.
    """
    st = state(ctx)
    here = st.workspace_if_any()  # its remotes name sources and targets; paths and URLs need none
    names = [st.detname(d) if here is not None else d for d in detectors]
    report = run_promote(
        names,
        source,
        target,
        ctypes=ctype,
        version=version,
        at=at,
        message=message,
        dry_run=dry_run,
        here=here,
        remote_dcsync=remote_dcsync,
        ssh_command=ssh,
    )
    if json:
        emit_json(report.to_json())
        return
    for p in report.picks:
        verb = ("would promote" if dry_run else "promoted") if p.action == "promote" else p.action
        say(f"{p.detector} {p.ctype} {p.range} {p.label} ({short(p.obj)}): {verb}")
    for det, cid in report.commits.items():
        say(f"{det}: commit {short(cid)} in {target}, promoted as {report.promoted_by}")
    if not report.picks:
        say("nothing to promote")
