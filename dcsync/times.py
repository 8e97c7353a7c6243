"""Time: int64 nanoseconds since the epoch, UTC, inside; ISO 8601, unix seconds or ``now`` outside.

Accepted input: ``now``; an ISO 8601 date or date-time (with a zone; a naive time is UTC; ``Z``
allowed); unix seconds as int or float (``1700000000``, ``1700000000.25``). Printed form: ISO 8601
UTC with a ``Z`` and as many fractional digits as needed (none, 3, 6 or 9).
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time
from decimal import Decimal, InvalidOperation

from dcsync.errors import InvalidTime

NS = 1_000_000_000
_UTC = _dt.UTC
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_FRACTION = re.compile(r"\.(\d+)")


def now_ns() -> int:
    return _time.time_ns()


def parse_time(text: str | int | float) -> int:
    """Parse a user-supplied time into int64 ns UTC; raise :class:`InvalidTime` naming the input."""
    if isinstance(text, bool):
        raise InvalidTime(f"invalid time {text!r}")
    if isinstance(text, int):
        return text * NS
    if isinstance(text, float):
        return _seconds_to_ns(Decimal(repr(text)), text)
    value = text.strip()
    if value.lower() == "now":
        return now_ns()
    if _NUMBER.match(value):
        return _seconds_to_ns(Decimal(value), text)
    return _parse_iso(value, text)


def _seconds_to_ns(seconds: Decimal, original: object) -> int:
    try:
        ns = int((seconds * NS).to_integral_value())
    except (InvalidOperation, OverflowError) as exc:
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
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_UTC)
    delta = parsed - _EPOCH
    ns = (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000 + frac_ns
    _check_range(ns, original)
    return ns


def _check_range(ns: int, original: object) -> None:
    if not -(2**63) <= ns < 2**63:
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
