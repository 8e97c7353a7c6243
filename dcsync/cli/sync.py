"""``dcsync serve|remote|clone|fetch|pull|push|status|diff``: moving constants between workspaces."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from dcsync import sync
from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, console, dtype_name, emit_json, pars_text, say, shape_text, short
from dcsync.model.objects import VersionEntry
from dcsync.model.times import format_time
from dcsync.repo.diff import Change, summarize
from dcsync.sync.serving import run_stdio
from dcsync.workspace import config

app = typer.Typer()
remote_app = typer.Typer(no_args_is_help=True)

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RemoteArg = Annotated[str, typer.Argument(help="Remote name, URL or path.")]
DetOpt = Annotated[
    list[str] | None,
    typer.Option("--detector", "-d", help="Only detectors matching this glob (repeatable).", metavar="GLOB"),
]
RemoteDcsyncOpt = Annotated[
    str | None,
    typer.Option(
        "--remote-dcsync",
        help="The dcsync command on the remote (like git's --upload-pack).",
        metavar="COMMAND",
    ),
]
SshOpt = Annotated[
    str | None,
    typer.Option(
        "--ssh",
        envvar="DCSYNC_SSH",
        help="Use this ssh command instead of paramiko (e.g. 'ssh -K').",
        metavar="COMMAND",
    ),
]


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[sync.Progress]:
    """A transfer progress bar on stderr when it is a terminal (rich's test: ``TTY_COMPATIBLE=1``
    forces it); silent otherwise.

    Our consoles print with markup off (names are text), so the phase is a :class:`TextColumn` with
    a style, never a ``[style]`` tag in a format string, which would print literally.
    """
    err = console(stderr=True)
    if quiet or not err.is_terminal:
        yield lambda phase, done, total: None
        return
    # here, not at the top: rich.progress is ~10 ms of every `dcsync --help`
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


@app.command()
def serve(
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Serve on stdin/stdout (how clients run it).")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="The workspace to serve (default: from SSH_ORIGINAL_COMMAND, or .).", metavar="DIR"
        ),
    ] = None,
    restrict_to_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--restrict-to-path",
            help="Serve only workspaces at or below this path (repeatable; for SSH forced commands).",
            metavar="DIR",
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every write.")] = False,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            "--idle-timeout",
            help="End the session when the client neither sends nor reads for this many seconds "
            "(0: never; default: [serve] idle_timeout of the workspace's config.toml, else 600).",
            metavar="SECONDS",
            min=0,
        ),
    ] = None,
) -> None:
    """Serve a workspace to one dcsync client (run by clone/fetch/pull/push over SSH or pipes)."""
    if not stdio:
        raise typer.BadParameter("only --stdio is supported", param_hint="--stdio")
    raise typer.Exit(
        run_stdio(root, read_only=read_only, restrict_to=restrict_to_path, idle_timeout=idle_timeout)
    )


@remote_app.command("add")
def remote_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A short name, e.g. origin or central.")],
    url: Annotated[str, typer.Argument(help="ssh://[user@]host[:port]/path, host:path, or a local path.")],
    remote_dcsync: RemoteDcsyncOpt = None,
    ssh: SshOpt = None,
) -> None:
    """Remember a remote workspace under a name."""
    config.add_remote(state(ctx).workspace(), config.RemoteConfig(name, url, remote_dcsync, ssh))
    say(f"added remote {name} -> {url}")


@remote_app.command("rm")
def remote_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Forget a remote."""
    config.remove_remote(state(ctx).workspace(), name)
    say(f"removed remote {name}")


@remote_app.command("ls")
def remote_ls(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List the remotes."""
    known = config.remotes(state(ctx).workspace())
    if json:
        emit_json({name: {"url": r.url, **r.to_toml()} for name, r in known.items()})
        return
    for name, r in known.items():
        say(f"{name}\t{r.url}")


@app.command()
def clone(
    url: Annotated[str, typer.Argument(help="The workspace to copy: ssh://..., host:path or a path.")],
    path: Annotated[Path | None, typer.Argument(help="Where (default: the last part of the URL).")] = None,
    detector: DetOpt = None,
    ctype: Annotated[
        list[str] | None, typer.Option("--ctype", help="Only these ctypes' payloads.", metavar="CTYPE")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only payloads valid at or after T.", metavar="TIME")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Location kind of the new workspace: local (default), experiment or repository.",
            metavar="KIND",
        ),
    ] = None,
    remote_dcsync: RemoteDcsyncOpt = None,
    ssh: SshOpt = None,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Copy a workspace (or part of it: --detector, --ctype, --since) and remember it as origin.

    A clone that fails before anything arrived leaves nothing behind; run the same command again
    (with corrected options: they replace the saved ones) to resume one that was cut short.
    """
    target = path or Path(url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or "calib")
    resumed = sync.unfinished_clone(target) is not None
    with progress_bar(quiet or json) as progress:
        ws, report = sync.clone(
            url,
            target,
            detectors=detector,
            ctypes=ctype,
            since=since or None,
            kind=kind,
            remote_dcsync=remote_dcsync,
            ssh_command=ssh,
            progress=progress,
        )
    if json:
        emit_json({"workspace": str(ws.root), "resumed": resumed, **report.to_json()})
        return
    f = report.fetch
    say_refused(f)
    say(
        f"{'resumed the clone: ' if resumed else ''}cloned {len(f.updated)} detector(s) into {ws.root}: "
        f"{f.bytes} bytes ({f.files} whole file(s), {f.objects} object(s))"
    )


def say_refused(report: sync.FetchReport) -> None:
    """Name each whole file that was refused, and why: it came object by object instead, but a
    server handing out such files deserves a look from its admin."""
    for det, why in sorted(report.refused.items()):
        say(f"{det}: the server's repository file was refused ({why}); it came object by object instead")


@app.command()
def fetch(
    ctx: typer.Context,
    remote: RemoteArg = "origin",
    detector: DetOpt = None,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Download a remote's new commits into remotes/REMOTE; HEAD does not move."""
    with progress_bar(quiet or json) as progress:
        report = sync.fetch(state(ctx).workspace(), remote, detectors=detector, progress=progress)
    if json:
        emit_json(report.to_json())
        return
    for det, (old, new) in report.updated.items():
        say(f"{det}: {short(old)} -> {short(new)}")
    say(f"fetched {report.objects} objects, {report.bytes} bytes")


@app.command()
def pull(
    ctx: typer.Context,
    remote: RemoteArg = "origin",
    detector: DetOpt = None,
    ours: Annotated[bool, typer.Option("--ours", help="Resolve conflicts toward the local side.")] = False,
    theirs: Annotated[bool, typer.Option("--theirs", help="Resolve conflicts toward the remote.")] = False,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Fetch, then fast-forward or merge each detector's HEAD. A conflict changes nothing."""
    if ours and theirs:
        raise typer.BadParameter("choose one of --ours and --theirs")
    prefer: Literal["ours", "theirs"] | None = "ours" if ours else "theirs" if theirs else None
    with progress_bar(quiet or json) as progress:
        report = sync.pull(
            state(ctx).workspace(), remote, detectors=detector, prefer=prefer, progress=progress
        )
    if json:
        emit_json(report.to_json())
        return
    say_refused(report.fetch)
    for det in report.fast_forwarded:
        say(f"{det}: fast-forward")
    for det in report.merged:
        say(
            f"{det}: merged"
            + (f" ({len(report.resolved[det])} conflicts resolved)" if det in report.resolved else "")
        )
    if not report.fast_forwarded and not report.merged:
        say("already up to date")


@app.command()
def push(
    ctx: typer.Context,
    remote: RemoteArg = "origin",
    detector: DetOpt = None,
    atomic: Annotated[bool, typer.Option("--atomic", help="All detectors or none.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would be sent.")] = False,
    message: Annotated[
        str, typer.Option("-m", "--message", help="Recorded in the remote's log.", metavar="MESSAGE")
    ] = "",
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Send local commits to a remote and move its HEADs (fast-forward only; pull first if refused)."""
    with progress_bar(quiet or json) as progress:
        report = sync.push(
            state(ctx).workspace(),
            remote,
            detectors=detector,
            atomic=atomic,
            dry_run=dry_run,
            message=message,
            progress=progress,
        )
    if json:
        emit_json(report.to_json())
    else:
        for det, (old, new) in report.planned.items():
            mark = "would push" if dry_run else "pushed" if det in report.pushed else "FAILED"
            say(
                f"{det}: {short(old)} -> {short(new)} {mark}"
                + (f": {report.failed[det]}" if det in report.failed else "")
            )
        for det, why in report.failed.items():
            if det not in report.planned:
                say(f"{det}: refused: {why}")
        if not report.planned and not report.failed:
            say("everything up to date")
        for note in report.notes:
            say(f"remote: {note}")
    if report.failed:
        raise typer.Exit(7)


@app.command()
def status(ctx: typer.Context, remote: RemoteArg = "origin", json: JsonOpt = False) -> None:
    """Per detector: commits ahead of and behind the remote as last fetched."""
    rows = sync.status(state(ctx).workspace(), remote)
    if json:
        emit_json([r.to_json() for r in rows])
        return
    for r in rows:
        where = "up to date" if not r.ahead and not r.behind else f"ahead {r.ahead}, behind {r.behind}"
        if not r.checked_out:
            where += f" (fetched, not checked out: dcsync pull {remote} --detector {r.detector})"
        say(f"{r.detector}: {short(r.head)} {where}" + ("" if r.remote_head else " (not on the remote)"))


@app.command()
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Old side: workspace dir, remote, URL or .h5 file.")],
    b: Annotated[str, typer.Argument(help="New side: workspace dir, remote, URL or .h5 file.")],
    detectors: Annotated[
        list[str] | None, typer.Argument(help="Only these detectors (globs).", metavar="DET")
    ] = None,
    ctype: Annotated[
        list[str] | None, typer.Option("--ctype", help="Only these ctypes.", metavar="CTYPE")
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Counts only.")] = False,
    values: Annotated[
        bool, typer.Option("--values", help="Compare changed arrays' values (fetches them).")
    ] = False,
    remote_dcsync: RemoteDcsyncOpt = None,
    ssh: SshOpt = None,
    json: JsonOpt = False,
) -> None:
    """What differs between two workspaces: detectors, ctypes, ranges, versions, defaults."""
    st = state(ctx)
    here = st.workspace_if_any()
    report = sync.diff_sources(
        a,
        b,
        here=here,
        detectors=detectors,
        ctypes=ctype,
        values=values,
        remote_dcsync=remote_dcsync,
        ssh_command=ssh,
    )
    if json:
        emit_json(report.to_json())
        return
    summary = summarize(report.changes)
    left_out = report.left_out.describe() if report.left_out is not None else ""
    if stat:
        say(" ".join(f"{k} {n}" for k, n in summary.items() if n) or "no differences")
        if left_out:
            say(left_out)
        return
    for i, c in enumerate(report.changes):
        say(_change_line(c))
        if i in report.values:
            say("         " + _values_text(report.values[i]))
    if not report.changes:
        say("no differences")
    if left_out:
        say(left_out)


def _side(kind: str, value: Any) -> str:
    """One side of a change for people: what a version, default, parameter set or link set is."""
    if value is None:
        return "unpinned" if kind == "default" else "absent"
    if isinstance(value, VersionEntry):
        return f"{short(value.obj)} {dtype_name(value)} {shape_text(value)}"
    if kind == "range":  # bounds: lookups', and the range tree's own where they differ
        text = f"[{format_time(value['begin'])}, {format_time(value['end'])})"
        if "tree_begin" in value:
            text += f" (its tree says [{format_time(value['tree_begin'])}, {format_time(value['tree_end'])}))"
        return text
    if kind == "ctype":
        return f"{value['ranges']} range(s)"
    if kind == "detector":
        return f"{value['dettype']}-{value['detid']} created {format_time(value['created'])}"
    if isinstance(value, dict):  # pars, or links (an empty link is no link)
        shown = {k: v for k, v in value.items() if kind != "links" or v}
        return pars_text(shown) or "none"
    return str(value)


def _change_line(c: Change) -> str:
    where = " ".join(x for x in (c.detname, c.ctype, c.range, c.version) if x)
    if c.kind == "added":
        return f"{c.kind:8} {where}: {_side(c.kind, c.new)}"
    if c.kind == "removed":
        return f"{c.kind:8} {where} (was {_side(c.kind, c.old)})"
    return f"{c.kind:8} {where}: {_side(c.kind, c.old)} -> {_side(c.kind, c.new)}"


def _values_text(stats: dict[str, Any]) -> str:
    """``--values`` statistics; what could not be computed is left out, not printed as None."""
    return ", ".join(f"{k}={v}" for k, v in stats.items() if v is not None)
