"""psana's run finder: which file of a calib-directory ctype folder serves a run.

The rule is ``PSCalib.CalibFileFinder.selectCalibFile`` (the Python one, which psana uses today),
written from its behaviour, not copied:

* only names ending exactly in ``.data`` count, ``<begin>-<end>.data`` with ``begin`` ASCII digits
  whose value is at most 9999 (leading zeros are allowed: ``0005-end.data`` is 5) and ``end`` such a
  number or the word ``end`` (which counts as 9999); every other name is skipped, with a reason
  (:class:`Skipped`). psana's Python finder does not skip all of them: on a numeric begin with a bad
  end, or a number above 9999, it raises instead, and ``Skipped.breaks_psana`` marks those;
* a run above 9999 is looked up as 9999 (psana's names cannot say more);
* among the files with ``begin <= run <= end`` the largest ``begin`` wins; on equal begins the
  smaller ``end``; two names of the very same range (``5-10.data``, ``05-10.data``) are a tie psana
  breaks by directory-listing order, and :func:`select_calib_file` does the same with the order given.

:func:`select_run_range` is the rule over parsed ranges alone, for any caller (the repository's run
lookup): there an open end is unbounded, because dcsync itself has no 9999 limit; only the folder
functions here apply psana's limit, where psana does. (psana's older C++ finder differs: no 9999
limit and no clamping; dcsync follows the Python one.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dcsync.errors import UsageError

RUN_MAX = 9999  # psana's largest run in a file name; "end" means this, and later runs look it up
DATA_SUFFIX = ".data"
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, order=True)
class RunRange:
    """Runs ``first`` to ``last`` of one experiment, both included; ``last`` None is open (``end``)."""

    first: int
    last: int | None

    def __post_init__(self) -> None:
        if self.first < 0 or (self.last is not None and self.last < self.first):
            raise UsageError(f"invalid run range {self.first}-{self.last}: need 0 <= first <= last")

    def __str__(self) -> str:
        return f"{self.first}-{'end' if self.last is None else self.last}"

    def contains(self, run: int) -> bool:
        return self.first <= run and (self.last is None or run <= self.last)


@dataclass(frozen=True)
class Skipped:
    """Why psana does not consider a name. ``breaks_psana``: psana's Python finder does not skip
    this name quietly but raises (a ``'%d' % str`` in its warning), so every lookup in the folder
    fails there; an importer should say so louder than for an ordinary stray file."""

    reason: str
    breaks_psana: bool = False


def _number(text: str) -> int | None:
    """A psana run number: ASCII digits of value at most :data:`RUN_MAX` (``str.isdigit`` would also
    take ``'²'``, on which psana's own ``int()`` then crashes; dcsync skips such names)."""
    if not text or not set(text) <= _DIGITS:
        return None
    value = int(text)
    return value if value <= RUN_MAX else None


def parse_data_name(name: str) -> RunRange | Skipped:
    """The run range a file name in a ctype folder stands for, or why psana skips the name."""
    if name == "HISTORY":
        return Skipped("the folder's history file")
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or "." + suffix != DATA_SUFFIX:
        return Skipped("not a .data file")
    fields = stem.split("-")
    if len(fields) != 2:
        return Skipped(
            "not <begin>-<end>.data (" + ("no dash" if len(fields) == 1 else "more than one dash") + ")"
        )
    begin, end = fields
    first = _number(begin)
    if first is None:
        return Skipped(
            f"begin {begin!r} is not a run number of at most {RUN_MAX}",
            breaks_psana=bool(begin) and set(begin) <= _DIGITS,  # digits, too large: psana raises
        )
    last = None if end == "end" else _number(end)
    if last is None and end != "end":
        return Skipped(
            f"end {end!r} is neither 'end' nor a run number of at most {RUN_MAX}", breaks_psana=True
        )
    if last is not None and last < first:
        return Skipped(f"end {last} is before begin {first}: no run falls in it")
    return RunRange(first, last)


def data_name(runs: RunRange) -> str:
    """The file name psana's ``makeCalibFileName`` gives a range (``137-end.data``)."""
    if runs.first > RUN_MAX or (runs.last is not None and runs.last > RUN_MAX):
        raise UsageError(f"run range {runs} has no psana file name: psana's runs end at {RUN_MAX}")
    return f"{runs}{DATA_SUFFIX}"


def check_run(run: int) -> int:
    """A run number a caller asks for: an int, not negative (a caller's mistake, not a lookup miss)."""
    if isinstance(run, bool) or not isinstance(run, int) or run < 0:
        raise UsageError(f"invalid run number {run!r}: a run is a non-negative integer")
    return run


def select_run_range(ranges: Sequence[tuple[int, int | None]], run: int) -> int | None:
    """The index in ``ranges`` of the ``(first, last)`` range that serves ``run``, or None.

    Among the ranges containing the run, the largest first wins, then the smallest last (None is
    open, so larger than any number); ranges that are exactly equal go to the later index, as psana's
    stable sort and backward search do. No run limit applies here.
    """
    check_run(run)
    best: int | None = None
    best_key: tuple[int, float] = (-1, 0.0)
    for i, (first, last) in enumerate(ranges):
        if first <= run and (last is None or run <= last):
            key = (first, -(float("inf") if last is None else last))
            if best is None or key >= best_key:
                best, best_key = i, key
    return best


def select_calib_file(names: Iterable[str], run: int) -> str | None:
    """The name psana's ``selectCalibFile`` picks among a ctype folder's file names for ``run``."""
    candidates: list[tuple[str, RunRange]] = []
    for name in names:
        parsed = parse_data_name(name)
        if isinstance(parsed, RunRange):
            candidates.append((name, parsed))
    lookup = min(check_run(run), RUN_MAX)
    psana_ranges = [(r.first, RUN_MAX if r.last is None else r.last) for _, r in candidates]
    index = select_run_range(psana_ranges, lookup)
    return None if index is None else candidates[index][0]


__all__ = [
    "DATA_SUFFIX",
    "RUN_MAX",
    "RunRange",
    "Skipped",
    "check_run",
    "data_name",
    "parse_data_name",
    "select_calib_file",
    "select_run_range",
]
