"""``dcsync serve|remote|clone|fetch|pull|push|status|diff``: moving constants between workspaces."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from dcsync import sync
from dcsync.cli.context import state
from dcsync.cli.output import console, emit_json, say, short
from dcsync.server import run_stdio
from dcsync.times import parse_time

app = typer.Typer()
remote_app = typer.Typer(no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of text.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RemoteArg = Annotated[str, typer.Argument(help="Remote name, URL or path.")]
DetOpt = Annotated[
    list[str] | None,
    typer.Option("--detector", "-d", help="Only detectors matching this glob (repeatable).", metavar="GLOB"),
]
RemoteDcsyncOpt = Annotated[
    str | None,
    typer.Option("--remote-dcsync", help="The dcsync command on the remote (like git's --upload-pack)."),
]
SshOpt = Annotated[
    str | None,
    typer.Option(
        "--ssh", envvar="DCSYNC_SSH", help="Use this ssh command instead of paramiko (e.g. 'ssh -K')."
    ),
]


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[sync.Progress]:
    """A transfer progress bar on stderr when it is a terminal; silent otherwise."""
    if quiet or not sys.stderr.isatty():
        yield lambda phase, done, total: None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console(stderr=True),
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
        typer.Option("--root", help="The workspace to serve (default: from SSH_ORIGINAL_COMMAND, or .)."),
    ] = None,
    restrict_to_path: Annotated[
        list[Path] | None,
        typer.Option(
            "--restrict-to-path",
            help="Serve only workspaces at or below this path (repeatable; for SSH forced commands).",
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse every write.")] = False,
) -> None:
    """Serve a workspace to one dcsync client (run by clone/fetch/pull/push over SSH or pipes)."""
    if not stdio:
        raise typer.BadParameter("only --stdio is supported", param_hint="--stdio")
    raise typer.Exit(run_stdio(root, read_only=read_only, restrict_to=restrict_to_path))


@remote_app.command("add")
def remote_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A short name, e.g. origin or central.")],
    url: Annotated[str, typer.Argument(help="ssh://[user@]host[:port]/path, host:path, or a local path.")],
    remote_dcsync: RemoteDcsyncOpt = None,
    ssh: SshOpt = None,
) -> None:
    """Remember a remote workspace under a name."""
    sync.add_remote(state(ctx).workspace(), sync.RemoteConfig(name, url, remote_dcsync, ssh))
    say(f"added remote {name} -> {url}")


@remote_app.command("rm")
def remote_rm(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Forget a remote."""
    sync.remove_remote(state(ctx).workspace(), name)
    say(f"removed remote {name}")


@remote_app.command("ls")
def remote_ls(ctx: typer.Context, json: JsonOpt = False) -> None:
    """List the remotes."""
    known = sync.remotes(state(ctx).workspace())
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
    ctype: Annotated[list[str] | None, typer.Option("--ctype", help="Only these ctypes' payloads.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only payloads valid at or after T.")] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="Location kind of the new workspace: local (default), experiment or repository."
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
            since=parse_time(since) if since else None,
            kind=kind,
            remote_dcsync=remote_dcsync,
            ssh_command=ssh,
            progress=progress,
        )
    if json:
        emit_json({"workspace": str(ws.root), "resumed": resumed, **report.to_json()})
        return
    f = report.fetch
    say(
        f"{'resumed the clone: ' if resumed else ''}cloned {len(f.updated)} detector(s) into {ws.root}: "
        f"{f.bytes} bytes ({f.files} whole file(s), {f.objects} object(s))"
    )


@app.command()
def fetch(
    ctx: typer.Context,
    remote: RemoteArg = "origin",
    detector: DetOpt = None,
    quiet: QuietOpt = False,
    json: JsonOpt = False,
) -> None:
    """Download a remote's new commits into remotes/<name>; HEAD does not move."""
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
    message: Annotated[str, typer.Option("-m", "--message", help="Recorded in the remote's log.")] = "",
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
        say(f"{r.detector}: {short(r.head)} {where}" + ("" if r.remote_head else " (not on the remote)"))


@app.command()
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Old side: workspace dir, remote, URL or .h5 file.")],
    b: Annotated[str, typer.Argument(help="New side: workspace dir, remote, URL or .h5 file.")],
    detectors: Annotated[list[str] | None, typer.Argument(help="Only these detectors (globs).")] = None,
    ctype: Annotated[list[str] | None, typer.Option("--ctype", help="Only these ctypes.")] = None,
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
    summary = sync.summarize(report.changes)
    if stat:
        say(" ".join(f"{k} {n}" for k, n in summary.items() if n) or "no differences")
        return
    for i, c in enumerate(report.changes):
        where = " ".join(x for x in (c.detname, c.ctype, c.range, c.version) if x)
        old = getattr(c.old, "obj", c.old)
        new = getattr(c.new, "obj", c.new)
        say(
            f"{c.kind:8} {where}: {short(old) if isinstance(old, str) else old} -> "
            f"{short(new) if isinstance(new, str) else new}"
        )
        if i in report.values:
            v = report.values[i]
            say("         " + ", ".join(f"{k}={val}" for k, val in v.items()))
    if not report.changes:
        say("no differences")
