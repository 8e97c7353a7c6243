"""Hooks: programs in ``.dcsync/hooks/`` that judge changes before they land, and react after.

Phases: ``pre-commit`` (local writes), ``pre-receive`` (pushes and promotions arriving at this
location; may reject), ``post-receive`` (after they landed; cannot undo). For a phase, the program
``hooks/<phase>`` and every executable in ``hooks/<phase>.d/`` run in name order, each with the
change description as JSON on stdin (docs/admin.md, "Hook input"), the workspace as working
directory and ``DCSYNC_HOOK=<phase>`` in the environment. A non-zero exit rejects the change: the
hook's output reaches the pusher verbatim. A hook still running after the timeout
(``hooks.timeout`` in config.toml, default 60 s) is killed and counts as a rejection.

A hook whose first line is a Python interpreter line (``#!`` ... ``python``) runs with dcsync's own
interpreter (``sys.executable``), whatever the line names, so it can import numpy and dcsync: a
calib directory's ``/usr/bin/python3`` rarely has them. Wrap the script in a shell hook to use
another interpreter.

Sample hooks ship in the package (``dcsync/workspace/hook_samples/``); ``dcsync hooks install NAME`` copies
one into ``hooks/<phase>.d/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from dcsync.errors import HookRejected, NotFound, UsageError

PHASES = ("pre-commit", "pre-receive", "post-receive")
DEFAULT_TIMEOUT = 60.0
MAX_OUTPUT = 64 * 1024


def hooks_dir(root: Path) -> Path:
    return root / ".dcsync" / "hooks"


def programs(root: Path, phase: str) -> list[Path]:
    """The executables that run for ``phase``, in order."""
    base = hooks_dir(root)
    found = []
    single = base / phase
    if single.is_file() and os.access(single, os.X_OK):
        found.append(single)
    folder = base / f"{phase}.d"
    if folder.is_dir():
        found.extend(p for p in sorted(folder.iterdir()) if p.is_file() and os.access(p, os.X_OK))
    return found


def run(root: Path, phase: str, payload: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Run a phase's hooks; raise :class:`HookRejected` with the first rejecting hook's output.

    Returns the (non-empty) outputs of the hooks that accepted, to show the user.
    """
    if phase not in PHASES:
        raise UsageError(f"unknown hook phase {phase!r}")
    document = json.dumps({"hook": phase, **payload}, sort_keys=True, default=str).encode()
    notes = []
    for program in programs(root, phase):
        code, output = _run_one(program, document, root, phase, timeout)
        if code != 0 and phase != "post-receive":
            raise HookRejected(
                f"{phase} hook {program.name} rejected the change"
                + (f" (exit {code})" if code > 0 else "")
                + (f":\n{output}" if output else "")
            )
        if output:
            notes.append(f"{program.name}: {output}")
    return notes


def _run_one(program: Path, document: bytes, root: Path, phase: str, timeout: float) -> tuple[int, str]:
    env = {**os.environ, "DCSYNC_HOOK": phase, "DCSYNC_WORKSPACE": str(root)}
    argv = [sys.executable, str(program)] if _is_python(program) else [str(program)]
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return 126, f"cannot run {program}: {exc.strerror}"
    try:
        out, _ = proc.communicate(document, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it may have ended just now
            os.killpg(proc.pid, signal.SIGKILL)  # the hook and anything it started
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a descendant left the group and still holds the pipe
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        return -1, f"{program.name} did not finish within {timeout:g} s and was stopped"
    text = out[:MAX_OUTPUT].decode("utf-8", "replace").strip()
    return proc.returncode, text


def _is_python(program: Path) -> bool:
    """Whether the program's interpreter line names Python (``#!/usr/bin/env python3``, ...)."""
    try:
        with program.open("rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def samples() -> dict[str, tuple[str, str]]:
    """Shipped sample hooks: name -> (phase, one-line description)."""
    out = {}
    for entry in resources.files("dcsync.workspace.hook_samples").iterdir():
        if entry.name.startswith(("_", ".")) or not entry.is_file():
            continue
        text = entry.read_text(encoding="utf-8")
        phase = _header_value(text, "phase") or "pre-receive"
        out[entry.name] = (phase, _header_value(text, "description") or "")
    return out


def _header_value(text: str, key: str) -> str | None:
    for line in text.splitlines()[:20]:
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    return None


def install(root: Path, name: str, *, phase: str | None = None) -> Path:
    """Copy a sample hook into ``hooks/<phase>.d/`` and make it executable."""
    known = samples()
    if name not in known:
        raise NotFound(f"no sample hook {name!r}; available: {', '.join(sorted(known))}")
    target_phase = phase or known[name][0]
    if target_phase not in PHASES:
        raise UsageError(f"unknown hook phase {target_phase!r}")
    folder = hooks_dir(root) / f"{target_phase}.d"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    with resources.as_file(resources.files("dcsync.workspace.hook_samples") / name) as source:
        shutil.copyfile(source, target)
    target.chmod(0o755)
    return target
