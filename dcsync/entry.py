"""The ``dcsync`` program's entry point: what runs before anything is imported, so it stays small.

Importing is most of a short command's life (typer, pydantic, rich, numpy, h5py), so three things
are settled here with little more than ``os``, ``signal`` and ``sys``:

- **Ctrl-C** means ``dcsync: interrupted`` on stderr and exit status 130, whenever it comes
  (:mod:`dcsync.interrupts` has the handlers and their three phases). The only window left is the
  interpreter's start-up (``site``, ``.pth`` files) and the first lines of the console script's
  ``from dcsync.entry import run``: ``dcsync/__init__.py`` (one small import), and this module and
  :mod:`dcsync.interrupts` up to the handler, which goes in before anything slow is imported.
- ``dcsync --version`` answers from :mod:`dcsync.version` without importing the command line.
- ``dcsync serve --stdio`` is started once per sync connection, often over SSH, so it skips the
  command-line framework and parses its few options itself. Every other command goes to
  :mod:`dcsync.cli.main`.
- Once a command is over, the process ends without the interpreter's teardown (freeing every
  module of numpy, h5py, typer and rich: ~30-50 ms, a fifth of a short command's life), after
  what of the teardown matters: ``atexit`` handlers and flushing stdout and stderr
  (:func:`_end_now`).
"""

from __future__ import annotations

# Only what the interpreter has loaded already (os, sys) or builds in (_signal), so that as the
# console script the first handler is in place before any import that takes time (``signal``
# alone builds enums for milliseconds, long enough for an early Ctrl-C to land in it).
import _signal  # type: ignore[import-not-found]  # (no stubs: the C half of signal)
import os
import sys

from dcsync import interrupts  # (os, sys and _signal only)


def _is_console_script() -> bool:
    """Whether this process is the ``dcsync`` program (not a script or test importing the CLI)."""
    return os.path.basename(sys.argv[0]) == "dcsync" if sys.argv else False


# A SIGINT that the parent ignored (nohup, a background job of a script) stays ignored.
if _is_console_script() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, interrupts.stop_now)

import contextlib  # noqa: E402  (after the handler: see above)


def _serve_fast(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="dcsync serve", add_help=False)
    parser.add_argument("--stdio", action="store_true", required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--restrict-to-path", type=Path, action="append", default=[])
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--idle-timeout", type=float)
    args = parser.parse_args(argv)
    if args.idle_timeout is not None and not 0 <= args.idle_timeout < float("inf"):
        parser.error("--idle-timeout: a number of seconds, 0 or more")
    from dcsync.sync.serving import run_stdio

    interrupts.unwind_on_interrupt(True)  # the session may write and lock from here on
    return run_stdio(
        args.root, read_only=args.read_only, restrict_to=args.restrict_to_path, idle_timeout=args.idle_timeout
    )


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
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing to say there
            stream.flush()


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives (None: 0; a message: printed, 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def _end_now(status: int) -> None:
    """End the process with ``status`` without the interpreter's teardown, if nothing needs it.

    What a normal exit does that matters is done here: ``atexit`` handlers run (h5py's, logging's,
    ``weakref.finalize``'s: temporary directories) and stdout and stderr are flushed. The teardown
    itself only frees memory, unless something is still open, so this returns (for a normal
    exit) while another thread runs (a normal exit waits for it) or an HDF5 file is open (HDF5's
    own exit handler, which ``os._exit`` skips, would flush it).
    """
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    h5f = getattr(sys.modules.get("h5py"), "h5f", None)
    if h5f is not None:  # datatypes do not count: h5py holds some in memory, in no file
        in_files = h5f.OBJ_FILE | h5f.OBJ_GROUP | h5f.OBJ_DATASET | h5f.OBJ_ATTR
        if h5f.get_obj_count(h5f.OBJ_ALL, in_files) > 0:
            return
    import atexit

    atexit._run_exitfuncs()
    _flush()
    os._exit(status)


def run() -> None:
    """Console-script entry point (``dcsync = dcsync.entry:run``); ends the process with the
    command's status, after its ``atexit`` handlers, without the interpreter's teardown (a caller
    that goes on after a command runs :data:`dcsync.cli.main.app` instead)."""
    # A SIGINT that the parent ignored (nohup, a background job of a script) stays ignored; as
    # the console script the handler is in already (at import, above).
    interrupts.take_charge()
    try:
        status = _dispatch(sys.argv[1:])
    except KeyboardInterrupt:  # raised where the command line's own handling does not reach
        status = interrupts.INTERRUPT_EXIT
    except SystemExit as exc:  # how the command line ends
        if exc.code is not None and not isinstance(exc.code, int):
            sys.stderr.write(f"{exc.code}\n")
        status = _exit_status(exc.code)
    interrupts.unwind_on_interrupt(False)
    # typer ends a Ctrl-C while parsing with a bare 130
    if status == interrupts.INTERRUPT_EXIT and not interrupts.already_said():
        interrupts.say_interrupted()
    _flush()
    if status == interrupts.INTERRUPT_EXIT:
        # Unwound already (transactions rolled back, locks released); the teardown would wait for
        # worker threads that may be blocked on a peer the same Ctrl-C stopped.
        os._exit(status)
    if interrupts.in_charge():  # the console script, not a caller that installed its own SIGINT handler
        _end_now(status)
    sys.exit(status)
