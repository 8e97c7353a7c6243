"""``dcsync par set``: parameters (``dictpars``) on a detector, a ctype, a range or a version."""

from __future__ import annotations

from typing import Annotated

import typer

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, emit_json, parse_pairs, say
from dcsync.errors import UsageError
from dcsync.model.objects import ParValue

app = typer.Typer(no_args_is_help=True)


@app.command("set")
def set_(
    ctx: typer.Context,
    det: Annotated[str, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")],
    ctype: Annotated[
        str | None,
        typer.Argument(
            help="Calibration type; leave out to set parameters of the detector itself.", metavar="CTYPE"
        ),
    ] = None,
    items: Annotated[
        list[str] | None,
        typer.Argument(
            help="KEY=VALUE items (values: int, float, true/false, else text).", metavar="KEY=VALUE"
        ),
    ] = None,
    range_: Annotated[
        str | None, typer.Option("--range", "-r", help="Range key or unique prefix.", metavar="RANGE")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-V", help="Version key or unique prefix.", metavar="VERSION")
    ] = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", help="Remove KEY (repeatable).", metavar="KEY")
    ] = None,
    new_ctype: Annotated[
        bool,
        typer.Option("--new-ctype", help="Start CTYPE here even though psana does not know the name."),
    ] = False,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="Commit message.", metavar="MESSAGE")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Set (or --unset) parameters; without CTYPE on the detector itself."""
    args = list(items or [])
    if ctype is not None and "=" in ctype:  # no CTYPE given: the first item took its place
        args.insert(0, ctype)
        ctype = None
    if ctype is None and (range_ or version):
        raise UsageError("--range/--version need a CTYPE before the KEY=VALUE items")
    values: dict[str, ParValue | None] = dict(parse_pairs(args))
    values.update({key: None for key in unset or []})
    if not values:
        raise UsageError("nothing to set: give KEY=VALUE items or --unset KEY")
    level = " ".join(x for x in (ctype, range_ and f"range {range_}", version and f"version {version}") if x)
    summary = ", ".join(f"{k}={v}" if v is not None else f"-{k}" for k, v in values.items())
    with state(ctx).repository(det) as repo:
        with repo.transaction(message or f"par {level or 'detector'}: {summary}", command="par") as tx:
            tx.set_pars(values, ctype=ctype, range=range_, version=version, new_ctype=new_ctype)
        detname = repo.detname
    if json:
        emit_json(
            {
                "detector": detname,
                "ctype": ctype,
                "range": range_,
                "version": version,
                "set": {k: v for k, v in values.items() if v is not None},
                "unset": [k for k, v in values.items() if v is None],
                "commit": tx.commit_id,
            }
        )
    else:
        say(f"{detname} {level or '(detector)'}: {summary}" + ("" if tx.commit_id else " (unchanged)"))
