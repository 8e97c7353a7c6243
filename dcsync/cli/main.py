"""The ``dcsync`` app: global options, the command groups, and the one place errors become exit codes.

Exit codes come from :data:`dcsync.errors.EXIT_CODES`: a :class:`~dcsync.errors.DcsyncError` prints
``dcsync: error: <message>`` on stderr and exits with its ``exit_code``; Ctrl-C exits 130; anything
else is a bug and says so (the traceback only with ``DCSYNC_DEBUG=1``). Command-line mistakes that
typer catches itself (unknown option, missing argument) exit 2, like our own usage errors. A command
run with ``--json`` also prints the error as a JSON document on stdout (``output.error_json``).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dcsync.cli.commands import LazyCommands
from dcsync.cli.context import State
from dcsync.cli.output import error_json, json_mode
from dcsync.cli.usage import readable, readable_params
from dcsync.errors import DcsyncError
from dcsync.interrupts import INTERRUPT_EXIT, say_interrupted, unwind_on_interrupt
from dcsync.version import __version__

# typer (>= 0.26 vendors click) signals exits and usage errors with exceptions that must pass through.
_CLICK_EXCEPTION: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_CONTROL: tuple[type[BaseException], ...] = (typer.Exit, typer.Abort, _CLICK_EXCEPTION)
BUG_EXIT = 1
_ARGV = "dcsync.argv"  # ctx.meta key: the command line as given (ctx.meta is shared by subcommands)


def _debug() -> bool:
    return os.environ.get("DCSYNC_DEBUG", "") not in ("", "0")


def _error(text: str) -> None:
    typer.echo(f"dcsync: error: {text}", err=True)


def exit_code_for(exc: BaseException, *, json: bool = False) -> int:
    """Report ``exc`` on stderr (and as a JSON document on stdout with ``json``); return its exit code."""
    if isinstance(exc, KeyboardInterrupt):
        say_interrupted()
        if json:
            error_json("interrupted", INTERRUPT_EXIT, "interrupted")
        return INTERRUPT_EXIT
    if _debug():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, DcsyncError):
        _error(exc.message)
        if json:
            error_json(exc.wire_code, exc.exit_code, exc.message, exc.details)
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):  # `dcsync log | head`: the reader left, nothing to say
        return BUG_EXIT
    if isinstance(exc, OSError) and (exc.filename or exc.strerror):
        # A system error the API did not translate (permissions on a workspace directory...).
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        if json:
            error_json("system", 1, f"{exc.strerror or exc}{where}", {"errno": exc.errno})
        return 1
    _error(f"unexpected {type(exc).__name__}: {exc}")
    typer.echo(
        "dcsync: this is a bug; please report it with the command line"
        + ("" if _debug() else " and the output of the same command with DCSYNC_DEBUG=1"),
        err=True,
    )
    if json:
        error_json("bug", BUG_EXIT, f"unexpected {type(exc).__name__}: {exc}")
    return BUG_EXIT


def _asked_for_json(exc: BaseException, argv: list[str]) -> bool:
    """Whether a command line that typer refused (so ``--json`` was never parsed) had ``--json``."""
    command = getattr(getattr(exc, "ctx", None), "command", None)
    if command is None or not any("--json" in p.opts for p in command.params):
        return False
    return "--json" in (argv[: argv.index("--")] if "--" in argv else argv)


class DcsyncGroup(TyperGroup):
    """The root group: every command runs inside :meth:`invoke`, so errors map the same way for the
    installed executable and for in-process runners; commands come out of :meth:`get_command` with
    readable ``--help`` (:mod:`dcsync.cli.usage`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = list(args)
        return list(super().parse_args(ctx, args))

    def get_params(self, ctx: Any) -> list[Any]:
        return readable_params(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        return None if command is None else readable(command, ctx)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands)  # a command line builds only what it runs

    def invoke(self, ctx: Any) -> Any:
        unwind_on_interrupt(True)  # before, Ctrl-C just ends the process: nothing to undo yet
        with json_mode() as mode:
            try:
                return super().invoke(ctx)
            except _CLICK_EXCEPTION as exc:  # typer reports it (exit 2); --json also wants it on stdout
                if mode.requested or _asked_for_json(exc, ctx.meta.get(_ARGV, [])):
                    message = str(getattr(exc, "format_message", exc.__str__)())
                    error_json("usage", int(getattr(exc, "exit_code", 2)), message)
                raise
            except _CONTROL:
                raise
            except (Exception, KeyboardInterrupt) as exc:
                raise typer.Exit(exit_code_for(exc, json=mode.requested)) from exc
            finally:
                unwind_on_interrupt(False)


app = typer.Typer(
    cls=DcsyncGroup,
    name="dcsync",
    help="A git-like versioned store for detector calibration constants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold credentials (SSH)
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dcsync {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "-C",
            "--directory",
            help="Workspace directory (default: search upwards from the current directory).",
            metavar="PATH",
        ),
    ] = None,
    lock_timeout: Annotated[
        float,
        typer.Option(
            "--lock-timeout",
            envvar="DCSYNC_LOCK_TIMEOUT",
            min=0.0,
            help="Seconds to wait for another writer's lock before giving up.",
            metavar="SECONDS",
        ),
    ] = 30.0,
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """A git-like versioned store for detector calibration constants."""
    ctx.obj = State(directory=directory, lock_timeout=lock_timeout)


def run() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="dcsync")
    except KeyboardInterrupt:  # outside a command (while parsing): still the conventional code
        say_interrupted()
        sys.exit(INTERRUPT_EXIT)
    except Exception as exc:  # typer rethrows what escapes; invoke() already caught command errors
        sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    run()
