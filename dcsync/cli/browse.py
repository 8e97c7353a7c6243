"""``dcsync ls|show|log``: look at what a workspace or detector holds and how it got there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dcsync.cli.context import State, looks_like_path, state
from dcsync.cli.output import (
    JsonOpt,
    console,
    emit_json,
    entry_json,
    new_table,
    pars_text,
    range_json,
    say,
    short,
)
from dcsync.errors import DcsyncError, RepositoryError
from dcsync.model.times import format_time
from dcsync.repo.repository import Repository

app = typer.Typer()

OptDet = Annotated[
    str | None, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")
]


def _end(text: str | None) -> str:
    return text or "end"


@app.command("ls")
def ls(
    ctx: typer.Context,
    det: OptDet = None,
    ctype: Annotated[str | None, typer.Argument(help="Calibration type.", metavar="CTYPE")] = None,
    json: JsonOpt = False,
) -> None:
    """List detectors; with DET its ctypes; with DET CTYPE its ranges and versions."""
    st = state(ctx)
    if det is None:
        _ls_workspace(st, json)
        return
    with st.repository(det) as repo:
        if ctype is None:
            _ls_detector(repo, json)
        else:
            _ls_ctype(repo, ctype, json)


def _ls_workspace(st: State, json: bool) -> None:
    ws = st.workspace()
    aliases: dict[str, list[str]] = {}
    for a in ws.aliases().values():
        aliases.setdefault(a.detname, []).append(a.alias)
    rows: list[dict[str, Any]] = []
    failed: list[DcsyncError] = []
    for name in ws.detectors():
        path = ws.detector_path(name)
        row: dict[str, Any] = {"detector": name, "path": str(path), "aliases": sorted(aliases.get(name, []))}
        try:
            with Repository.open(path, lock_timeout=st.lock_timeout) as repo:
                row["ctypes"] = len(repo.ctypes())
        except DcsyncError as exc:  # one damaged file must not hide the others
            row["ctypes"], row["error"] = None, exc.message
            failed.append(exc)
        rows.append(row)
    for row in rows:
        row["checked_out"] = True
    for fetched in ws.fetched_detectors():  # shown as what they are, never as damaged files
        rows.append(
            {
                "detector": fetched.detname,
                "path": str(fetched.path),
                "aliases": sorted(aliases.get(fetched.detname, [])),
                "ctypes": None,
                "checked_out": False,
                "fetched_from": list(fetched.remotes),
                "note": fetched.hint(),
            }
        )
    rows.sort(key=lambda r: r["detector"])
    if json:
        emit_json({"workspace": str(ws.root), "kind": ws.kind, "detectors": rows})
    else:
        table = new_table(title=f"{ws.root} ({ws.kind})", title_justify="left")
        for col in ("detector", "aliases", "ctypes"):
            table.add_column(col, justify="right" if col == "ctypes" else "left", no_wrap=col == "detector")
        for row in rows:
            if not row["checked_out"]:
                count = "fetched, not checked out (dcsync pull)"
            else:
                count = str(row["ctypes"]) if row["ctypes"] is not None else f"error: {row['error']}"
            table.add_row(row["detector"], ", ".join(row["aliases"]), count)
        console().print(table)
    if failed:
        raise RepositoryError(f"{len(failed)} detector file(s) could not be read; first: {failed[0].message}")


def _ls_detector(repo: Repository, json: bool) -> None:
    rows: list[dict[str, Any]] = []
    for ctype in repo.ctypes():
        ranges = repo.ranges(ctype)
        rows.append(
            {
                "ctype": ctype,
                "ranges": len(ranges),
                "versions": sum(len(tree.versions) for _, tree in ranges),
                "first": format_time(ranges[0][1].begin) if ranges else None,
                "last": format_time(ranges[-1][1].begin) if ranges else None,
            }
        )
    if json:
        emit_json({"detector": repo.detname, "path": repo.store.where, "ctypes": rows})
        return
    table = new_table(title=repo.detname, title_justify="left")
    for col in ("ctype", "ranges", "versions", "latest begin"):
        table.add_column(col, justify="left" if col in ("ctype", "latest begin") else "right")
    for row in rows:
        table.add_row(row["ctype"], str(row["ranges"]), str(row["versions"]), row["last"] or "-")
    console().print(table)


def _ls_ctype(repo: Repository, ctype: str, json: bool) -> None:
    ranges = repo.ranges(ctype)
    docs = [
        {**range_json(key, tree), "versions": [entry_json(v, tree.versions[v], tree) for v in tree.ordered()]}
        for key, tree in ranges
    ]
    if json:
        emit_json({"detector": repo.detname, "ctype": ctype, "ranges": docs})
        return
    table = new_table(title=f"{repo.detname} {ctype}", title_justify="left")
    for col in ("range", "begin", "end", "version", "", "produced", "dtype", "shape"):
        table.add_column(col, no_wrap=col in ("range", "version", "begin", "end"))
    for doc in docs:
        for i, v in enumerate(doc["versions"]):
            mark = "*" if v["default"] else ("latest" if v["effective"] else "")
            first = i == 0
            table.add_row(
                doc["range"] if first else "",
                doc["begin"] if first else "",
                _end(doc["end"]) if first else "",
                v["version"],
                mark,
                v["produced"],
                v["dtype"],
                "(" + ", ".join(map(str, v["shape"])) + ")" if v["kind"] == "array" else f"{v['nbytes']} B",
            )
    console().print(table)


@app.command()
def show(
    ctx: typer.Context,
    det: Annotated[str, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")],
    json: JsonOpt = False,
) -> None:
    """The whole tree of a detector: ctypes, ranges, versions (* marks a pinned default)."""
    with state(ctx).repository(det) as repo:
        root = repo.root()
        commit = repo.commit()
        head = repo.head()
        doc: dict[str, Any] = {
            "detector": root.detname,
            "path": repo.store.where,
            "dettype": root.dettype,
            "detid": root.detid,
            "created": format_time(root.created),
            "predecessor": root.predecessor or None,
            "successor": root.successor or None,
            "pars": dict(root.pars),
            "head": head,
            "last_commit": {
                "time": format_time(commit.time),
                "author": commit.author,
                "host": commit.host,
                "message": commit.message,
            },
            "ctypes": {},
        }
        for ctype in repo.ctypes():
            ct = repo.ctype_tree(ctype)
            ranges: dict[str, Any] = {}
            for key, tree in repo.ranges(ctype):
                ranges[key] = {
                    **range_json(key, tree),
                    "versions": {v: entry_json(v, tree.versions[v], tree) for v in tree.ordered()},
                }
            doc["ctypes"][ctype] = {"pars": dict(ct.pars), "ranges": ranges}
    if json:
        emit_json(doc)
        return
    _print_tree(doc)


def _print_tree(doc: dict[str, Any]) -> None:
    from rich.tree import Tree  # only here: see dcsync.cli.output

    links = "".join(
        [
            f"  predecessor {doc['predecessor']}" if doc["predecessor"] else "",
            f"  successor {doc['successor']}" if doc["successor"] else "",
        ]
    )
    top = Tree(f"{doc['detector']}  {doc['path']}{links}")
    if doc["pars"]:
        top.add(f"pars: {pars_text(doc['pars'])}")
    for ctype, ct in doc["ctypes"].items():
        node = top.add(ctype + (f"  pars: {pars_text(ct['pars'])}" if ct["pars"] else ""))
        for key, rng in ct["ranges"].items():
            label = f"{key}  [{rng['begin']}, {_end(rng['end'])})  {rng['selection']}"
            rnode = node.add(label + (f"  pars: {pars_text(rng['pars'])}" if rng["pars"] else ""))
            for vkey, v in rng["versions"].items():
                mark = "*" if v["default"] else ("+" if v["effective"] else " ")
                shape = (
                    "(" + ", ".join(map(str, v["shape"])) + ")"
                    if v["kind"] == "array"
                    else f"{v['nbytes']} B"
                )
                text = f"{mark} {vkey}  {v['dtype']} {shape}  {v['produced']}  {v['author']}"
                rnode.add(text + (f"  pars: {pars_text(v['pars'])}" if v["pars"] else ""))
    out = console()
    out.print(top)
    out.print("* pinned default   + latest (used because the range has no pinned default)")
    last = doc["last_commit"]
    out.print(
        f"HEAD {short(doc['head'])}  {last['time']}  {last['author']}@{last['host']}: {last['message']}"
    )


@app.command()
def log(
    ctx: typer.Context,
    det: OptDet = None,
    number: Annotated[
        int | None, typer.Option("-n", "--max-count", min=1, help="Show the N latest.", metavar="N")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """The log of ref moves, newest first; without DET all detectors merged by time."""
    st = state(ctx)
    entries: list[dict[str, Any]] = []
    failed: list[DcsyncError] = []
    if det is not None:
        fetched = st.workspace().fetched(det) if not looks_like_path(det) else None
        if fetched is not None:  # nothing checked out: no history of HEAD to show yet
            if json:
                emit_json({"entries": [], "checked_out": False, "note": fetched.hint()})
            else:
                say(fetched.hint())
            return
        paths = [st.resolve(det)]
    else:
        ws = st.workspace()
        paths = [ws.detector_path(name) for name in ws.detectors()]
    for path in paths:
        try:
            entries.extend(_log_entries(path, number))
        except DcsyncError as exc:
            if det is not None:
                raise
            failed.append(exc)  # one damaged file must not hide the others' history
    entries.sort(key=lambda e: e["time_ns"], reverse=True)
    if number is not None:
        entries = entries[:number]
    if json:
        emit_json({"entries": entries})
    else:
        _print_log(entries, with_detector=det is None)
    if failed:
        raise RepositoryError(f"{len(failed)} detector file(s) could not be read; first: {failed[0].message}")


def _print_log(entries: list[dict[str, Any]], *, with_detector: bool) -> None:
    table = new_table()
    for col in (
        "time",
        *(["detector"] if with_detector else []),
        "who",
        "command",
        "ref",
        "change",
        "message",
        "provenance",
    ):
        table.add_column(col, no_wrap=col in ("time", "detector", "change"))
    for e in entries:
        table.add_row(
            e["time"],
            *([e["detector"]] if with_detector else []),
            f"{e['user']}@{e['host']}",
            e["command"],
            e["ref"],
            f"{short(e['old'])} → {short(e['new'])}",
            e["message"],
            e["audit"],
        )
    console().print(table)


def _log_entries(path: Path, number: int | None) -> list[dict[str, Any]]:
    with Repository.open(path) as repo:
        name = repo.detname
        return [
            {
                "detector": name,
                "time": format_time(rec.time),
                "time_ns": rec.time,
                "user": rec.user,
                "host": rec.host,
                "command": rec.command,
                "ref": rec.ref,
                "old": rec.old,
                "new": rec.new,
                "message": rec.message,
                "extra": dict(rec.extra),
                "audit": _audit(rec.extra),
            }
            for rec in repo.log(number)
        ]


def _audit(extra: Any) -> str:
    """Who pushed from where, and where promoted constants came from (for the log's last column)."""
    parts = []
    # served_as is who the server authenticated: stated as fact. The client's own user@host is
    # only its claim and says so (records before claimed_* named it pusher and pusher_host).
    claimed = [
        extra.get(k) or extra.get(old)
        for k, old in (("claimed_user", "pusher"), ("claimed_host", "pusher_host"))
    ]
    if extra.get("served_as") or any(claimed):
        text = f"pushed by {extra.get('served_as') or '?'}"
        if any(claimed):
            text += f" (client claimed {claimed[0] or '?'}@{claimed[1] or '?'})"
        parts.append(text)
    promotions = list(extra.get("promoted_from") or [])
    if isinstance(extra.get("promote"), dict):
        promotions.append(extra["promote"])
    for p in promotions:
        parts.append(f"promoted from {p.get('from') or '?'} commit {short(p.get('commit'))}")
    if extra.get("source") and not parts:
        parts.append(f"from {extra['source']}")
    return "; ".join(parts)
