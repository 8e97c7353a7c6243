"""``dcsync hooks list|install|remove|run``: a workspace's hooks, and the samples shipped with dcsync.

Installing copies a sample from ``dcsync/workspace/hook_samples/`` into ``.dcsync/hooks/<phase>.d/``;
``run`` feeds the hooks the detector's last commit, to try them before a push arrives.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from dcsync.cli.context import state
from dcsync.cli.output import JsonOpt, console, emit_json, say
from dcsync.errors import AlreadyExists, NotFound, RepositoryError, UsageError
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host
from dcsync.repo.guard import PayloadPath
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.workspace import hooks
from dcsync.workspace.acl import current_identity
from dcsync.workspace.policy import Incoming

app = typer.Typer(no_args_is_help=True)

PhaseOpt = Annotated[
    str | None,
    typer.Option("--phase", help=f"One of {', '.join(hooks.PHASES)}.", metavar="PHASE"),
]
NameArg = Annotated[str, typer.Argument(help="Hook name (a sample's name for install).", metavar="NAME")]


def _check_phase(phase: str) -> str:
    if phase not in hooks.PHASES:
        raise UsageError(f"unknown hook phase {phase!r}: choose one of {', '.join(hooks.PHASES)}")
    return phase


def _check_name(name: str) -> str:
    """A hook is a plain file name: nothing may reach outside ``hooks/<phase>.d/``."""
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise UsageError(f"invalid hook name {name!r}: a file name such as 'no-nan-inf'")
    return name


def _sample_bytes(name: str) -> bytes:
    return (resources.files("dcsync.workspace.hook_samples") / name).read_bytes()


def _installed(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every file under ``hooks/`` that names a phase, in the order they run, executable or not."""
    base, known = hooks.hooks_dir(root), hooks.samples()
    out: dict[str, list[dict[str, Any]]] = {}
    for phase in hooks.PHASES:
        folder = base / f"{phase}.d"
        paths = [base / phase, *(sorted(folder.iterdir()) if folder.is_dir() else [])]
        rows, running = [], hooks.programs(root, phase)
        for path in paths:
            if not path.is_file():
                continue
            sample = path.name if path.parent == folder and path.name in known else None
            rows.append(
                {
                    "name": path.name,
                    "path": str(path),
                    "runs": path in running,
                    "sample": sample,
                    "modified": sample is not None and path.read_bytes() != _sample_bytes(sample),
                }
            )
        out[phase] = rows
    return out


@app.command("list")
def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show the sample hooks dcsync ships and the hooks installed in this workspace."""
    root = state(ctx).workspace().root
    installed = _installed(root)
    samples: list[dict[str, Any]] = [
        {
            "name": name,
            "phase": phase,
            "description": text,
            "installed": [p for p, rows in installed.items() if any(r["sample"] == name for r in rows)],
        }
        for name, (phase, text) in sorted(hooks.samples().items())
    ]
    if json:
        emit_json({"hooks_dir": str(hooks.hooks_dir(root)), "samples": samples, "installed": installed})
        return
    table = Table(title="Samples (dcsync hooks install NAME)", title_justify="left")
    for col in ("name", "phase", "installed", "description"):
        table.add_column(col, no_wrap=col != "description")
    for s in samples:
        table.add_row(s["name"], s["phase"], ", ".join(s["installed"]) or "-", s["description"])
    console().print(table)
    table = Table(title=f"Installed in {hooks.hooks_dir(root)}", title_justify="left")
    for col in ("phase", "name", "runs", "note"):
        table.add_column(col, no_wrap=True)
    for phase, rows in installed.items():
        for r in rows:
            note = (
                "not executable: ignored"
                if not r["runs"]
                else ("changed from the sample" if r["modified"] else "")
            )
            table.add_row(phase, r["name"], "yes" if r["runs"] else "no", note)
    console().print(table)


@app.command()
def install(
    ctx: typer.Context,
    name: NameArg,
    phase: PhaseOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an installed hook that was changed.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Install a sample hook for its own phase (or --phase, e.g. pre-commit to check local commits)."""
    root = state(ctx).workspace().root
    known = hooks.samples()
    if _check_name(name) in known:
        target = hooks.hooks_dir(root) / f"{_check_phase(phase or known[name][0])}.d" / name
        if target.is_file() and target.read_bytes() != _sample_bytes(name) and not force:
            raise AlreadyExists(f"{target} exists and differs from the sample {name}; --force replaces it")
    path = hooks.install(root, name, phase=phase)  # an unknown name: NotFound, listing the samples
    target_phase = path.parent.name.removesuffix(".d")
    if json:
        emit_json({"name": name, "phase": target_phase, "path": str(path)})
    else:
        say(f"installed {name} as a {target_phase} hook: {path}")


@app.command()
def remove(ctx: typer.Context, name: NameArg, phase: PhaseOpt = None, json: JsonOpt = False) -> None:
    """Remove an installed hook from hooks/PHASE.d/ (from every phase unless --phase)."""
    root = state(ctx).workspace().root
    _check_name(name)
    phases = [_check_phase(phase)] if phase else list(hooks.PHASES)
    removed = []
    for p in phases:
        path = hooks.hooks_dir(root) / f"{p}.d" / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append({"name": name, "phase": p, "path": str(path)})
    if not removed:
        where = f"{phase}.d" if phase else "<phase>.d for any phase"
        raise NotFound(
            f"no hook {name!r} in {hooks.hooks_dir(root)}/{where} ('dcsync hooks list' shows them)"
        )
    if json:
        emit_json({"removed": removed})
    else:
        for r in removed:
            say(f"removed the {r['phase']} hook {r['path']}")


app.command("rm", hidden=True)(remove)


def _exporter(store: ObjectStore, scratch: Path) -> PayloadPath:
    """Payloads as files for the hooks, written when a hook input asks for one."""

    def path(oid: ObjectId) -> Path:
        value = store.read_payload(oid)
        if isinstance(value, str):
            out = scratch / f"{oid}.text"
            out.write_bytes(value.encode("utf-8"))
        else:
            out = scratch / f"{oid}.npy"
            np.save(out, value, allow_pickle=False)
        return out

    return path


@app.command("run")
def run_(
    ctx: typer.Context,
    phase: Annotated[str, typer.Argument(help=f"One of {', '.join(hooks.PHASES)}.", metavar="PHASE")],
    det: Annotated[str, typer.Argument(help="Detector name, alias, or path to its .h5 file.", metavar="DET")],
    all_: Annotated[
        bool, typer.Option("--all", help="Present the whole history as arriving, not just the last commit.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Run a phase's hooks on DET's last commit as if it were arriving (exit 11 when one rejects it)."""
    st = state(ctx)
    ws = st.workspace()
    _check_phase(phase)
    policy = ws.policy()
    names = [p.name for p in hooks.programs(ws.root, phase)]
    notes: list[str] = []
    with Repository.open(st.resolve(det), lock_timeout=st.lock_timeout) as repo:
        head = repo.head()
        if head is None:
            raise RepositoryError(f"{det} has no commits")
        parents = repo.commit(head).parents
        old = None if all_ or not parents else parents[0]
        if names:
            with tempfile.TemporaryDirectory(prefix="dcsync-hook-") as scratch:
                incoming = Incoming(
                    repo.detname, repo.store, old, head, "hooks run", current_identity(), current_host(),
                    "local", _exporter(repo.store, Path(scratch)),
                )  # fmt: skip
                notes = hooks.run(ws.root, phase, policy.describe(incoming), timeout=policy.hook_timeout)
    if json:
        emit_json({"phase": phase, "detector": det, "old": old, "new": head, "hooks": names, "notes": notes})
        return
    if not names:
        say(f"no {phase} hooks in {hooks.hooks_dir(ws.root)}")
        return
    for note in notes:
        say(note)
    say(f"{phase}: {', '.join(names)} accepted {det} {head[:12]}")
