"""The ``dcsync`` program's entry point: what runs before anything is imported, so it stays small.

Importing is most of a short command's life (typer, rich, numpy, h5py), so three things are settled
here with nothing but ``os``, ``signal`` and ``sys``:

- **Ctrl-C.** From the first line of :func:`run` on, SIGINT means ``dcsync: interrupted`` on
  stderr and exit status 130, whenever it comes. While modules are imported or a command works, it
  raises :class:`KeyboardInterrupt` as usual, so transactions roll back and locks are released on
  the way out (:mod:`dcsync.cli.main` reports it for commands, :func:`run` for everything around
  them); a second Ctrl-C during that unwinding is another :class:`KeyboardInterrupt` that ends
  the cleanup it lands in (the store survives a crash at any instant; see
  :mod:`dcsync.store.journal`). Once the exit status is known, a Ctrl-C during the interpreter's
  teardown exits at once instead of printing "Exception ignored" tracebacks. The only window left
  is the interpreter's own start-up, before any dcsync code runs.
- ``dcsync --version`` answers from :mod:`dcsync.version` without importing the command line.
- ``dcsync serve --stdio`` is started once per sync connection, often over SSH, so it skips the
  command-line framework and parses its few options itself. Every other command goes to
  :mod:`dcsync.cli.main`.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPT_EXIT = 130
"""The shell's status for a program ended by SIGINT (128 + 2)."""
INTERRUPTED = "dcsync: interrupted\n"


def _serve_fast(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="dcsync serve", add_help=False)
    parser.add_argument("--stdio", action="store_true", required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--restrict-to-path", type=Path, action="append", default=[])
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args(argv)
    from dcsync.server import run_stdio

    return run_stdio(args.root, read_only=args.read_only, restrict_to=args.restrict_to_path)


def _dispatch(argv: list[str]) -> int:
    """Run one command line; return its exit status (commands that end by ``sys.exit`` raise)."""
    if argv == ["--version"]:
        from dcsync.version import __version__

        sys.stdout.write(f"dcsync {__version__}\n")
        return 0
    if argv[:1] == ["serve"] and "--stdio" in argv and not {"-h", "--help"} & set(argv):
        status = _serve_fast(argv[1:])
        # The session is over and every file is closed: skip the interpreter's teardown (numpy,
        # h5py: a few tens of ms), which the client would otherwise wait out before it returns.
        _flush()
        os._exit(status)
    from dcsync.cli.main import run as cli

    cli()
    return 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives (None: 0; a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def _say_interrupted() -> None:
    try:
        os.write(2, INTERRUPTED.encode())
    except OSError:  # stderr is gone: the status still says it
        pass


def _exit_now(signum: int, frame: object) -> None:
    """SIGINT once the outcome is known: the teardown is not worth finishing."""
    _say_interrupted()
    os._exit(INTERRUPT_EXIT)


def _exit_quietly(signum: int, frame: object) -> None:
    """SIGINT once an interruption has been reported: the same outcome, without saying it twice."""
    os._exit(INTERRUPT_EXIT)


def run() -> None:
    """Console-script entry point (``dcsync = dcsync.entry:run``); exits with the command's status."""
    # SIGINT keeps the handler the interpreter chose: KeyboardInterrupt, or ignored when the parent
    # ignored it (nohup, a background job of a script), which must stay so.
    try:
        status = _dispatch(sys.argv[1:])
    except KeyboardInterrupt:  # while importing, or anywhere a command's own handler does not reach
        _say_interrupted()
        status = INTERRUPT_EXIT
    except SystemExit as exc:  # how the command line ends
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(f"{exc.code}\n")
        status = _exit_status(exc.code)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _exit_quietly if status == INTERRUPT_EXIT else _exit_now)
    _flush()
    sys.exit(status)
