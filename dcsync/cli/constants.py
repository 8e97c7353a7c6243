"""``dcsync add|get|default|rm``: write and read constants.

The rules live in :mod:`dcsync.repo.repository`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from dcsync.cli.context import state
from dcsync.cli.output import (
    JsonOpt,
    constant_json,
    emit_json,
    finite,
    key_values,
    parse_pairs,
    range_json,
    say,
    shape_text,
)
from dcsync.errors import InvalidTime, ObjectNotFound, UsageError, VersionNotFound
from dcsync.legacy.inputs import check_output_suffix, load_constant, save_constant
from dcsync.model.names import RangeKey, check_ctype, check_known_ctype
from dcsync.model.objects import Payload, RangeTree, VersionEntry
from dcsync.model.times import format_time, parse_time
from dcsync.repo.diff import value_stats
from dcsync.repo.repository import Constant, Repository
from dcsync.repo.transaction import Transaction
from dcsync.repo.trees import Located
from dcsync.store.refs import remote_ref

app = typer.Typer()

Det = Annotated[str, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")]
Ctype = Annotated[str, typer.Argument(help="Calibration type (pedestals, pixel_status, geometry, ...).")]
RangeOpt = Annotated[
    str | None,
    typer.Option("--range", "-r", help="Range key or unique prefix (e.g. 1700000000-end).", metavar="RANGE"),
]


@app.command()
def add(
    ctx: typer.Context,
    det: Det,
    ctype: Ctype,
    file: Annotated[
        Path, typer.Argument(help=".npy, single-array .npz, psana text array, or geometry text.")
    ],
    begin: Annotated[
        str, typer.Option("--begin", "-b", help="Start of validity (ISO 8601, unix s, now).", metavar="TIME")
    ],
    end: Annotated[
        str | None, typer.Option("--end", "-e", help="End of validity (default: open).", metavar="TIME")
    ] = None,
    par: Annotated[
        list[str] | None,
        typer.Option("--par", "-p", help="KEY=VALUE parameter (repeatable).", metavar="KEY=VALUE"),
    ] = None,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="Commit message.", metavar="MESSAGE")
    ] = None,
    no_default: Annotated[
        bool, typer.Option("--no-default", help="Do not pin the new version as its range's default.")
    ] = False,
    new_ctype: Annotated[
        bool,
        typer.Option(
            "--new-ctype", help="Start CTYPE in this detector even though psana does not know the name."
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Add a constant from FILE as a new version valid over [begin, end).

    Prints how it differs from the version it stands in for (dtype, shape, NaN/Inf, values).
    """
    t0 = parse_time(begin)
    t1 = None if end is None else parse_time(end)
    if t1 is not None and t1 <= t0:
        raise InvalidTime(f"--end {end} ({format_time(t1)}) is not after --begin {begin} ({format_time(t0)})")
    check_ctype(ctype)
    pars = parse_pairs(par or [])
    with state(ctx).repository(det) as repo:
        detname = repo.detname
        check_known_ctype(ctype, repo.ctypes(), detname, new_ctype=new_ctype)  # before reading FILE
        value = load_constant(file, ctype)
        replaced = repo.replaced_by_add(ctype, begin_ns=t0, end_ns=t1)
        with repo.transaction(message or "", command="add") as tx:
            loc = tx.add(
                ctype,
                value,
                begin_ns=t0,
                end_ns=t1,
                pars=pars,
                make_default=not no_default,
                new_ctype=new_ctype,
            )
        compared = None if replaced is None else _compare(repo, replaced, loc.entry, value)
    doc = {
        **constant_json(detname, ctype, loc.range, loc.tree, loc.version, loc.entry),
        "commit": tx.commit_id,
        "file": str(file),
        "compared_with": compared,
    }
    if json:
        emit_json(doc)
        return
    pinned = "pinned as default" if loc.tree.default == loc.version else "not the default"
    say(f"added {detname} {ctype} range {loc.range} [{format_time(t0)}, {format_time(t1)})")
    say(f"  version {loc.version} ({pinned}), object {loc.entry.obj}, {doc['dtype']} {shape_text(loc.entry)}")
    if compared is not None:
        say(_comparison_line(compared))


def _compare(repo: Repository, old: Located, new: VersionEntry, value: Payload) -> dict[str, Any]:
    """How a new constant differs from the version it stands in for: one pass over the two arrays,
    nothing else read. A partial clone may lack the old payload: then only what the tree records
    (dtype and shape) is compared."""
    where = {"version": old.version, "range": old.range, "object": old.entry.obj}
    try:
        previous = repo.store.read_payload(old.entry.obj)
    except ObjectNotFound:
        return {
            **where,
            "fetched": False,
            "dtype_old": old.entry.dtype or "text",
            "dtype_new": new.dtype or "text",
            "shape_old": old.entry.shape,
            "shape_new": new.shape,
            "comparable": False,
            **dict.fromkeys(("max_abs_diff", "mean_diff", "changed_elements", "changed_lines")),
            **dict.fromkeys(("nonfinite_old", "nonfinite_new")),
        }
    stats = value_stats(previous, value)
    if isinstance(stats["mean_diff"], complex):  # JSON has no complex numbers
        stats["mean_diff"] = None
    return {**where, "fetched": True, **stats}


def _dtype_text(dtype: str) -> str:
    return dtype if dtype == "text" else np.dtype(dtype).name


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _comparison_line(c: dict[str, Any]) -> str:
    """One line: what changed from the version this one stands in for."""
    head = f"  compared with version {c['version']} (range {c['range']}):"
    old, new = _dtype_text(c["dtype_old"]), _dtype_text(c["dtype_new"])
    if "text" in (old, new):
        if old != new:
            return f"{head} {'text' if old == 'text' else 'array'} -> {'text' if new == 'text' else 'array'}"
        if c["changed_lines"] is None:
            return f"{head} text; not compared (its payload was not fetched)"
        return f"{head} " + (f"{c['changed_lines']} line(s) changed" if c["changed_lines"] else "same text")
    shape_old, shape_new = _shape_text(c["shape_old"]), _shape_text(c["shape_new"])
    if (old, shape_old) == (new, shape_new):
        parts = [f"{new} {shape_new} as before"]
    else:
        parts = [f"dtype {old} -> {new}" if old != new else f"dtype {new} as before"]
        parts.append(f"shape {shape_old} -> {shape_new}" if shape_old != shape_new else f"shape {shape_new}")
    if not c["fetched"]:
        parts.append("values not compared (its payload was not fetched)")
        return f"{head} " + ", ".join(parts)
    nan_old, nan_new = c["nonfinite_old"], c["nonfinite_new"]
    parts.append(f"NaN/Inf {nan_old} -> {nan_new}" if nan_old != nan_new else f"NaN/Inf {nan_new}")
    if c["comparable"]:
        if c["max_abs_diff"] is not None:
            parts.append(f"max |diff| {c['max_abs_diff']:g}")
        parts.append(f"{c['changed_elements']} of {math.prod(c['shape_new'])} pixels changed")
    return f"{head} " + ", ".join(parts)


def _stats(value: Payload) -> dict[str, Any]:
    if isinstance(value, str):
        return {"lines": len(value.splitlines()), "chars": len(value)}
    arr = np.asarray(value)
    if arr.size == 0 or arr.dtype.kind == "c":
        return {"min": None, "max": None, "mean": None, "nonfinite": 0}
    if arr.dtype.kind in "biu":
        return {
            "min": arr.min().item(),
            "max": arr.max().item(),
            "mean": finite(float(arr.mean())),
            "nonfinite": 0,
        }
    good = np.isfinite(arr)
    vals = arr[good]
    nonfinite = int(arr.size - vals.size)
    if vals.size == 0:
        return {"min": None, "max": None, "mean": None, "nonfinite": nonfinite}
    return {
        "min": float(vals.min()),
        "max": float(vals.max()),
        "mean": finite(float(vals.mean(dtype=np.float64))),
        "nonfinite": nonfinite,
    }


def _summary(c: Constant, tree: RangeTree, requested: bool) -> dict[str, Any]:
    return {
        **constant_json(c.detname, c.ctype, c.range, tree, c.version, c.entry),
        "selection": "requested" if requested else ("pinned" if c.pinned else "latest"),
        "stats": _stats(c.value),
    }


@app.command()
def get(
    ctx: typer.Context,
    det: Det,
    ctype: Ctype,
    at: Annotated[
        str | None, typer.Option("--at", "-t", help="Lookup time (default: now).", metavar="TIME")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", "-V", help="Version key or unique prefix.", metavar="VERSION")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write the value to OUT.npy (arrays), OUT.data or OUT.txt (psana text); others are refused.",
            metavar="OUT",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Show (or with -o, write) the constant valid at a time, or a named version."""
    t = None if at is None else parse_time(at)
    if output is not None:
        check_output_suffix(output)  # before the lookup: a wrong name costs nothing
    with state(ctx).repository(det) as repo:
        c = repo.get(ctype, version=version, at_ns=t)
        _, tree = repo.find_range(ctype, c.range)
    doc = _summary(c, tree, requested=version is not None)
    if output is not None:
        save_constant(output, c.value)
        doc["output"] = str(output)
    if json:
        emit_json(doc)
        return
    if output is not None:
        say(f"wrote {c.detname} {c.ctype} version {c.version} to {output}")
        return
    _print_summary(doc)


def _print_summary(doc: dict[str, Any]) -> None:
    stats = doc["stats"]
    rows = [
        ("detector", doc["detector"]),
        ("ctype", doc["ctype"]),
        ("range", f"{doc['range']}  [{doc['begin']}, {doc['end'] or 'end'})"),
        ("version", f"{doc['version']} ({doc['selection']})"),
        ("object", doc["object"]),
        ("produced", f"{doc['produced']} by {doc['author']}"),
    ]
    if doc["kind"] == "text":
        rows += [("kind", "text"), ("size", f"{doc['nbytes']} bytes, {stats['lines']} lines")]
    else:
        rows += [("dtype", doc["dtype"]), ("shape", "(" + ", ".join(map(str, doc["shape"])) + ")")]
        if stats["min"] is not None:
            rows.append(
                (
                    "min/max/mean",
                    f"{stats['min']:g} / {stats['max']:g} / {stats['mean']:g}"
                    if stats["mean"] is not None
                    else f"{stats['min']:g} / {stats['max']:g} / -",
                )
            )
        if stats["nonfinite"]:
            rows.append(("non-finite", str(stats["nonfinite"])))
    if doc["pars"]:
        rows.append(("pars", " ".join(f"{k}={v}" for k, v in doc["pars"].items())))
    key_values([(key, str(value)) for key, value in rows])


@app.command()
def default(
    ctx: typer.Context,
    det: Det,
    ctype: Ctype,
    version: Annotated[
        str | None,
        typer.Argument(
            help="Version key or unique prefix to pin; REMOTE:PREFIX takes a version of the fetched "
            "remote into HEAD and pins it (e.g. origin:9af3, after a pull stopped on a conflict).",
            metavar="VERSION",
        ),
    ] = None,
    range_: RangeOpt = None,
    unset: Annotated[
        bool,
        typer.Option("--unset", help="Unpin: the most recently produced version counts again."),
    ] = False,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="Commit message.", metavar="MESSAGE")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Pin VERSION as its range's default, or unpin a range with --unset --range R."""
    if unset and version is not None:
        raise UsageError("give either VERSION to pin or --unset, not both")
    if unset and range_ is None:
        raise UsageError("--unset needs --range R: which range to unpin")
    if not unset and version is None:
        raise UsageError("give VERSION to pin, or --unset --range R")
    with state(ctx).repository(det) as repo:
        with repo.transaction(message or "", command="default") as tx:
            if version is None:  # --unset (the checks above)
                rkey = repo.find_range(ctype, range_ or "")[0]
                tx.set_default(ctype, None, range=rkey)
            elif version is not None and ":" in version:  # REMOTE:PREFIX
                remote, _, prefix = version.partition(":")
                if not remote or not prefix:
                    raise UsageError(f"{version!r}: give REMOTE:PREFIX, e.g. origin:9af3")
                rkey = tx.take_version(ctype, prefix, ref=remote_ref(remote), range=range_).range
            else:
                rkey = _pin(repo, tx, ctype, version or "", range_)
        _, tree = repo.find_range(ctype, rkey)
        detname = repo.detname
    doc = {"detector": detname, "ctype": ctype, **range_json(rkey, tree), "commit": tx.commit_id}
    if json:
        emit_json(doc)
        return
    changed = "" if tx.commit_id else " (unchanged)"
    if tree.default is not None:
        say(f"{detname} {ctype} range {rkey}: default is now {tree.default} (pinned){changed}")
    else:
        say(f"{detname} {ctype} range {rkey}: unpinned, latest version {tree.effective()} counts{changed}")


def _pin(repo: Repository, tx: Transaction, ctype: str, version: str, range_: str | None) -> RangeKey:
    """Pin a version of HEAD; one that only a fetched remote has is named in the error, with the
    way to take it (the step a user tries first after a pull stopped on a conflict)."""
    try:
        loc = tx.set_default(ctype, version, range=range_)
    except VersionNotFound as exc:
        found = repo.fetched_version(ctype, version)
        if not found:
            raise
        remote = next(iter(found)).removeprefix("remotes/")
        raise VersionNotFound(
            f"{exc.message}; it is a version of {', '.join(found)} (fetched, not in HEAD): "
            f"take and pin it with 'dcsync default {repo.detname} {ctype} {remote}:{version}'"
        ) from exc
    return loc.range


@app.command()
def rm(
    ctx: typer.Context,
    det: Det,
    ctype: Ctype,
    range_: RangeOpt = None,
    version: Annotated[
        str | None, typer.Option("--version", "-V", help="Version key or unique prefix.", metavar="VERSION")
    ] = None,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Why (required; kept in the history).", metavar="MESSAGE")
    ] = "",
    json: JsonOpt = False,
) -> None:
    """Remove a version, a range, or a whole ctype from HEAD (payloads stay in history)."""
    if not message.strip():
        raise UsageError("dcsync rm needs -m MESSAGE saying why (it is kept in the history)")
    with state(ctx).repository(det) as repo:
        with repo.transaction(message, command="rm") as tx:
            removed = tx.remove(ctype, range=range_, version=version)
        detname = repo.detname
    if json:
        emit_json({"detector": detname, "removed": removed, "commit": tx.commit_id})
    else:
        for what in removed:
            say(f"removed {detname} {what}")
