"""What Ctrl-C does to a ``dcsync`` process: the SIGINT handlers and the state they share.

Ctrl-C means ``dcsync: interrupted`` on stderr and exit status 130, whenever it comes, in three
phases. Until a command starts its work there is nothing to undo: SIGINT ends the process at once
(:func:`stop_now`). While a command works (between ``unwind_on_interrupt(True)`` and
``unwind_on_interrupt(False)``) it raises :class:`KeyboardInterrupt`, so transactions roll back and
locks are released on the way out; one that lands where Python cannot raise (a weakref callback,
``__del__``) is sent again rather than lost. Once the command is over, SIGINT ends the teardown at
once. The handlers switch only in a process whose program is in charge (:func:`take_charge`, by
:func:`dcsync.entry.run`): in-process callers (tests, embedders) keep whatever handler they have.

:mod:`dcsync.entry` installs :func:`stop_now` before anything slow is imported, and imports this
module before that: so it imports only what the interpreter has loaded already (``os``, ``sys``) or
builds in (``_signal``, the C half of ``signal``, whose enums take milliseconds to build).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # (no stubs: the C half of signal)
import os
import sys

INTERRUPT_EXIT = 130
"""The shell's status for a program ended by SIGINT (128 + 2)."""
INTERRUPTED = "dcsync: interrupted\n"

_said = False  # whether this process has said "interrupted" (it says it at most once unasked)
_in_charge = False  # whether the program (dcsync.entry.run) owns SIGINT, so the handlers may switch


def stop_now(signum: int, frame: object) -> None:
    """SIGINT with nothing to undo (before a command's work, after it): end the process at once."""
    if not _said:
        try:  # noqa: SIM105  (contextlib takes time to import, and this runs before it is)
            os.write(2, INTERRUPTED.encode())  # not sys.stderr: it may be mid-write in this thread
        except OSError:
            pass
    os._exit(INTERRUPT_EXIT)


def say_interrupted() -> None:
    """Say that the command was interrupted (the command line's error handling calls this)."""
    global _said
    _said = True
    try:
        sys.stderr.write(INTERRUPTED)
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr is gone: the status still says it
        pass


def already_said() -> bool:
    """Whether this process has said "interrupted" (so the program's end does not say it twice)."""
    return _said


def take_charge() -> bool:
    """Own SIGINT for the rest of the process, unless the parent ignored it (nohup, a background
    job of a script) or a caller installed its own handler; True if this process does."""
    global _in_charge
    if _signal.getsignal(_signal.SIGINT) not in (_signal.default_int_handler, stop_now):
        return False
    _in_charge = True
    _signal.signal(_signal.SIGINT, stop_now)
    sys.unraisablehook = _redeliver_interrupt
    return True


def in_charge() -> bool:
    """Whether :func:`take_charge` took SIGINT (the console script, not a caller of the CLI)."""
    return _in_charge


def unwind_on_interrupt(unwind: bool) -> None:
    """From now on, SIGINT raises :class:`KeyboardInterrupt` (``unwind``) or ends the process.

    Only switches between the two while the program is in charge (:func:`take_charge`), so
    in-process callers (tests, embedders) keep whatever handler they have.
    """
    if _in_charge and _signal.getsignal(_signal.SIGINT) in (stop_now, _signal.default_int_handler):
        _signal.signal(_signal.SIGINT, _signal.default_int_handler if unwind else stop_now)


def _redeliver_interrupt(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook``: a Ctrl-C that landed in code which cannot raise (a weakref callback,
    ``__del__``) is sent again a moment later, to be raised in the command's own code."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)
        return
    import threading

    # Not from here: a signal sent now would be raised inside this hook and be lost again.
    timer = threading.Timer(0.01, os.kill, (os.getpid(), _signal.SIGINT))
    timer.daemon = True
    timer.start()
