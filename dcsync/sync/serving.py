"""``dcsync serve --stdio``: which workspace to serve (``--restrict-to-path``, an SSH forced
command's ``SSH_ORIGINAL_COMMAND``), how long a client may idle, and one :class:`Server` session
over this process's stdin and stdout (:mod:`dcsync.transport.stdio`)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from dcsync.errors import AccessDenied, DcsyncError, UsageError
from dcsync.sync.protocol import PREAMBLE, error_to_wire, write_frame
from dcsync.sync.server import Server
from dcsync.transport.stdio import StdioStreams
from dcsync.workspace.workspace import Workspace


def resolve_root(
    root: Path | None, restrict_to: list[Path], *, original_command: str | None = None
) -> tuple[Path, bool]:
    """The workspace to serve, checked against ``--restrict-to-path``, and whether the client
    asked for read-only.

    As an SSH forced command (``command="dcsync serve --stdio --restrict-to-path P"`` in
    authorized_keys) the client's own command line arrives in ``SSH_ORIGINAL_COMMAND``; only its
    ``--root`` and ``--read-only`` are taken from it, and the root must resolve (symlinks and
    ``..`` followed) to P or below.
    """
    asked_read_only = False
    if root is None and original_command:
        try:
            words = shlex.split(original_command)
        except ValueError as exc:
            raise AccessDenied(f"cannot parse the requested command: {exc}") from exc
        if "serve" not in words:
            raise AccessDenied("this key may only run 'dcsync serve'")
        for i, word in enumerate(words):
            if word == "--root" and i + 1 < len(words):
                root = Path(words[i + 1])
            elif word.startswith("--root="):
                root = Path(word.split("=", 1)[1])
        asked_read_only = "--read-only" in words
    if root is None:
        root = Path(".")
    text = os.fspath(root)
    if "\0" in text:
        raise AccessDenied("the requested path contains a NUL byte")
    real = Path(os.path.realpath(os.path.expanduser(text)))
    if restrict_to:
        allowed = [Path(os.path.realpath(os.path.expanduser(os.fspath(p)))) for p in restrict_to]
        if not any(real == a or a in real.parents for a in allowed):
            raise AccessDenied(
                f"{text} is outside the paths this server may serve ({', '.join(map(str, allowed))})"
            )
    return real, asked_read_only


DEFAULT_IDLE_TIMEOUT = 600.0  # seconds; docs/admin.md, "Idle sessions"


def idle_timeout_of(ws: Workspace) -> float:
    """``[serve] idle_timeout`` of the served workspace's config.toml (seconds, 0: never)."""
    value = ws.config().get("serve", {}).get("idle_timeout", DEFAULT_IDLE_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10**9:
        raise UsageError(
            f"{ws.config_path}: [serve] idle_timeout must be a number of seconds (0: never), not {value!r}"
        )
    return float(value)


def run_stdio(
    root: Path | None,
    *,
    read_only: bool = False,
    restrict_to: list[Path] | None = None,
    idle_timeout: float | None = None,
    stdin: Any = None,
    stdout: Any = None,
) -> int:
    """Serve on this process's stdin/stdout (binary, unbuffered).

    ``idle_timeout`` (seconds, 0: never) overrides the workspace's ``[serve] idle_timeout``.
    """
    streams = StdioStreams((stdin or sys.stdin).fileno(), (stdout or sys.stdout).fileno())
    try:
        real, asked_read_only = resolve_root(
            root, restrict_to or [], original_command=os.environ.get("SSH_ORIGINAL_COMMAND")
        )
        server = Server(real, read_only=read_only or asked_read_only, sendfile=streams.sendfile)
        timeout = idle_timeout if idle_timeout is not None else idle_timeout_of(server.ws)
    except DcsyncError as exc:
        streams.write(PREAMBLE)
        write_frame(streams.write, {"i": 0, "e": error_to_wire(exc)})
        return exc.exit_code
    streams.limit_idle(timeout)
    try:
        server.serve(streams.read, streams.write)
    except (BrokenPipeError, ConnectionError):
        return 0
    finally:
        server.close()
    return 0
