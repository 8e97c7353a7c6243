"""Time: int64 nanoseconds since the epoch, UTC, inside; ISO 8601, unix seconds or ``now`` outside.

Accepted input (:data:`TimeLike`, the same at the command line and at every API entry point):
``now``; an ISO 8601 date or date-time (with a zone; a naive time is UTC; ``Z`` allowed); a
:class:`datetime.datetime` or :class:`datetime.date` (naive means UTC); unix seconds as int or float
(``1700000000``, ``1700000000.25``). Nanoseconds are never guessed from a number's size: an API
takes them only through a parameter named for them (``begin_ns=``, ``at_ns=``), checked by
:func:`time_arg`. Printed form: ISO 8601 UTC with a ``Z`` and as many fractional digits as needed
(none, 3, 6 or 9).
"""

from __future__ import annotations

import datetime as _dt
import numbers
import re
import time as _time
from decimal import Decimal, InvalidOperation

from dcsync.errors import InvalidTime, UsageError

NS = 1_000_000_000
# Times are int64 ns; 2**63 - 1 is left out because the view spells an open end with it, so a
# time a local commit stores is one every reader accepts (dcsync/model/fields.py uses these too).
TIME_MIN, TIME_MAX = -(2**63), 2**63 - 2
_UTC = _dt.UTC
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_FRACTION = re.compile(r"\.(\d+)")

TimeLike = str | int | float | _dt.datetime | _dt.date
"""A time as users write it: ISO 8601 text, ``"now"``, a datetime or date, or unix seconds."""


def now_ns() -> int:
    return _time.time_ns()


def parse_time(text: TimeLike) -> int:
    """Parse a user-supplied time into int64 ns UTC; raise :class:`InvalidTime` naming the input."""
    if isinstance(text, bool):
        raise InvalidTime(f"invalid time {text!r}")
    if isinstance(text, _dt.datetime | _dt.date):
        ns = _datetime_to_ns(text)
        _check_range(ns, text)
        return ns
    if isinstance(text, numbers.Integral):  # numpy integers too
        ns = int(text) * NS
        _check_range(ns, text)
        return ns
    if isinstance(text, numbers.Real):
        return _seconds_to_ns(Decimal(repr(float(text))), text)
    if not isinstance(text, str):
        raise InvalidTime(f"invalid time {text!r}: use ISO 8601 text, a datetime, unix seconds, or 'now'")
    value = text.strip()
    if value.lower() == "now":
        return now_ns()
    if _NUMBER.match(value):
        return _seconds_to_ns(Decimal(value), text)
    return _parse_iso(value, text)


def time_arg(name: str, value: TimeLike | None, value_ns: int | None) -> int | None:
    """One API time given either as ``name`` (any :data:`TimeLike`, numbers are seconds) or as
    ``name_ns`` (int nanoseconds), in ns; None when neither is given.

    Errors name the parameter and the value. A number that is out of range as seconds is most
    likely nanoseconds passed to the wrong parameter, and the error says where they go.
    """
    if value is not None and value_ns is not None:
        raise UsageError(f"give {name}= or {name}_ns=, not both")
    if value_ns is not None:
        if isinstance(value_ns, bool) or not isinstance(value_ns, numbers.Integral):
            raise InvalidTime(f"{name}_ns={value_ns!r}: nanoseconds must be an int")
        _check_range(int(value_ns), value_ns)
        return int(value_ns)
    if value is None:
        return None
    try:
        return parse_time(value)
    except InvalidTime as exc:
        hint = ""
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and abs(value) >= 2**63 / NS:
            hint = f"; unix seconds are expected here: pass nanoseconds as {name}_ns="
        raise InvalidTime(f"{name}={value!r}: {exc}{hint}") from exc


def _datetime_to_ns(value: _dt.datetime | _dt.date) -> int:
    """Nanoseconds since the epoch (not range-checked: the caller names the input it came from)."""
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000


def _seconds_to_ns(seconds: Decimal, original: object) -> int:
    try:
        ns = int((seconds * NS).to_integral_value())
    except (InvalidOperation, OverflowError, ValueError) as exc:  # NaN, inf
        raise InvalidTime(f"invalid time {original!r}") from exc
    _check_range(ns, original)
    return ns


def _parse_iso(value: str, original: str) -> int:
    # datetime only keeps microseconds: pull out the fraction ourselves to keep nanoseconds.
    frac_ns = 0
    m = _FRACTION.search(value)
    if m and ("T" in value or " " in value or ":" in value):
        digits = m.group(1)
        frac_ns = int((digits + "000000000")[:9])
        value = value[: m.start()] + value[m.end() :]
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidTime(
            f"invalid time {original!r}: use ISO 8601 (2026-11-21T08:00:00Z), unix seconds, or 'now'"
        ) from exc
    ns = _datetime_to_ns(parsed) + frac_ns
    _check_range(ns, original)
    return ns


def _check_range(ns: int, original: object) -> None:
    if not TIME_MIN <= ns <= TIME_MAX:
        raise InvalidTime(f"time {original!r} is out of range")


def format_time(ns: int | None) -> str:
    """ISO 8601 UTC; ``None`` (an open end) prints as ``end``."""
    if ns is None:
        return "end"
    seconds, frac = divmod(ns, NS)
    stamp = (_EPOCH + _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        digits = f"{frac:09d}"
        for width in (3, 6, 9):
            if digits[width:].strip("0") == "":
                digits = digits[:width]
                break
        stamp += "." + digits
    return stamp + "Z"


def format_seconds(ns: int) -> str:
    """Unix seconds, exact: an integer when whole, else a decimal fraction without trailing zeros."""
    sign = "-" if ns < 0 else ""  # divmod floors: -0.5 s would print as "-1.5"
    seconds, frac = divmod(abs(ns), NS)
    if not frac:
        return f"{sign}{seconds}"
    return f"{sign}{seconds}.{frac:09d}".rstrip("0")
