"""psana's DCS files (``<dettype>-<detid>.h5``, the seed design's store) as a neutral description,
and the lookup rule psana applies to them.

Layout, as psana's ``PSCalib`` writes it (``DCStore.save``, ``DCType.save``, ``DCRange.save``,
``DCVersion.save``, ``DCBase.save_base``; values through ``DCUtils.save_object_as_dset``: a str
is a shape-(1,) fixed-length byte string ``S<len>``, an int a shape-(1,) int64, a float a
shape-(1,) float64, an ndarray as itself, ``None`` is not written at all; no HDF5 attributes)::

    /dettype /detid /detname            S   (1,)  (absent when None)
    /tscfile                            f8  (1,)  file creation time, unix seconds (optional)
    /predecessor /successor             S   (1,)  (absent when None, as psana writes them)
    /_parameters/<key>                  S | i8 | f8 (1,)   at every level
    /_history/<'%.6f' % tsec>           S   (1,)           at every level
    /<ctype>/ctype                      S   (1,)  the ctype again
    /<ctype>/<floor(begin)>-<ceil(end)|end>/begin    f8 (1,)  unix seconds
                                           /end      f8 (1,), or S ``end`` when open
                                           /range    S  (1,)  the group name again
                                           /versdef  i8 (1,)  0 = the newest version
                                           /v%04d/version  i8 (1,)
                                                 /tsprod   f8 (1,)  production time (optional)
                                                 /data     the array; geometry text as S<n> (1,)

The reader (:mod:`dcsync.legacy.dcsread`) builds a :class:`DcsStore` from a file; the writer
(:mod:`dcsync.legacy.dcswrite`) writes one back. :func:`pick_range` and :func:`pick_version` are
psana's lookup, exactly (see their docstrings for where psana does it); :func:`seconds_to_ns` turns
a stored float into dcsync's int64 ns the way ``--at`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dcsync.errors import UsageError
from dcsync.model.times import parse_time

ParValue = str | int | float
"""What DCS stores as a parameter and reads back whole: psana's ``_load_pars_dict`` reads
element 0 of each ``_parameters`` dataset, so only shape-(1,) text, integers and floats survive."""

Data = NDArray[Any] | str | None
"""A version's data: an array, geometry text (stored as a fixed-length byte string), or None when
the version group has no ``data`` dataset (psana's version then returns None)."""

PSANA_DCS_CTYPES = (
    "pedestals", "pixel_status", "pixel_rms", "pixel_gain", "pixel_mask", "pixel_bkgd",
    "common_mode", "geometry", "pixel_offset", "status_data", "status_extra",
)  # fmt: skip
"""``PSCalib.GlobalUtils.calib_names``: ``DCStore.add_ctype`` returns None for any other group
name and ``DCStore.load`` then fails on it, so a DCS file psana reads has only these ctypes."""


def range_group_name(begin: float, end: float | None) -> str:
    """The group name psana gives a range (``PSCalib.DCRange.key``): begin rounded down, end up."""
    return f"{math.floor(begin)}-{'end' if end is None else math.ceil(end)}"


def version_group_name(number: int) -> str:
    """``PSCalib.DCVersion.version_int_to_str``."""
    return f"v{number:04d}"


def seconds_to_ns(seconds: float) -> int:
    """A stored float of unix seconds as int64 ns, exactly as ``--at <repr(seconds)>`` converts it
    (:func:`dcsync.model.times.parse_time`: the shortest decimal that reads back as the float,
    times 1e9, rounded half-even). Monotone, so ``begin <= t <= end`` on floats implies the same
    on their ns; a query with the stored float therefore finds the range."""
    return parse_time(float(seconds))


@dataclass(frozen=True)
class DcsRecord:
    """One ``_history`` entry: the group name is ``'%.6f' % time``."""

    time: float
    text: str


@dataclass(frozen=True)
class DcsMeta:
    """``_parameters`` and ``_history`` of one level, in name order (as h5py lists them)."""

    pars: tuple[tuple[str, ParValue], ...] = ()
    history: tuple[DcsRecord, ...] = ()


@dataclass(frozen=True, eq=False)
class DcsVersion:
    """One ``v%04d`` group. Equality compares data by dtype, shape and values (arrays have no
    truth value, so the dataclass default would fail)."""

    number: int
    tsprod: float | None
    data: Data
    meta: DcsMeta = DcsMeta()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DcsVersion):
            return NotImplemented
        if (self.number, self.tsprod, self.meta) != (other.number, other.tsprod, other.meta):
            return False
        return same_data(self.data, other.data)

    __hash__ = None  # type: ignore[assignment]


def same_data(a: Data, b: Data) -> bool:
    """Equal data: text equal, or arrays of one dtype and shape with equal values (NaN = NaN)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        nan = a.dtype.kind in "fc"
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=nan))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    return a == b


@dataclass(frozen=True)
class DcsRange:
    """One range group. ``begin``/``end`` are the stored floats (``end`` None when open); ``name``
    is the group's name, psana's :func:`range_group_name` unless the file said otherwise."""

    begin: float
    end: float | None
    versdef: int
    versions: tuple[DcsVersion, ...]
    meta: DcsMeta = DcsMeta()
    name: str = ""

    def __post_init__(self) -> None:
        for value in (self.begin, self.end):
            if value is not None and not math.isfinite(value):
                raise UsageError(f"DCS range bounds must be finite, not {value}")
        if not self.name:
            object.__setattr__(self, "name", range_group_name(self.begin, self.end))

    @property
    def key(self) -> str:
        """What psana files the range under when it loads it (``DCType.load`` calls ``add_range``
        with the stored values): two ranges with one key would be merged into one."""
        return range_group_name(self.begin, self.end)


@dataclass(frozen=True)
class DcsCtype:
    name: str
    ranges: tuple[DcsRange, ...]
    meta: DcsMeta = DcsMeta()
    stored_name: str | None = None  # the ``ctype`` dataset; psana writes the group name again


@dataclass(frozen=True)
class DcsDetector:
    """The root scalars (None: the dataset is absent, as psana leaves out a None)."""

    dettype: str
    detid: str | None
    detname: str | None
    tscfile: float | None = None
    predecessor: str | None = None
    successor: str | None = None


@dataclass(frozen=True)
class DcsStore:
    """One DCS file."""

    detector: DcsDetector
    ctypes: tuple[DcsCtype, ...]
    meta: DcsMeta = field(default_factory=DcsMeta)

    def ctype(self, name: str) -> DcsCtype | None:
        return next((c for c in self.ctypes if c.name == name), None)


# -- psana's lookup -------------------------------------------------------------------------------


def pick_range(spans: Sequence[tuple[float, float | None]], t: float) -> int | None:
    """The index of the range psana picks for time ``t`` among ``(begin, end)`` spans, or None.

    psana (``PSCalib/src/DCType.py``, ``DCType.range_for_tsec``) sorts the ranges with
    ``DCRange.__cmp__`` (begin ascending; on equal begins the open end first, then the larger end
    first) and returns the first, scanning from the back, for which ``DCRange.tsec_in_range`` holds:
    ``not t < begin`` and (end open or ``not t > end``). So: a range contains t when
    ``begin <= t <= end`` (the end *inclusive*; an open end contains everything after begin);
    among those the latest begin wins, and on equal begins the narrower (smaller end). Works on
    float seconds or on int ns alike (convert both sides with :func:`seconds_to_ns`).
    """
    best: int | None = None
    for i, (begin, end) in enumerate(spans):
        if t < begin or (end is not None and t > end):
            continue
        if best is None or _wins(spans[i], spans[best]):
            best = i
    return best


def _wins(a: tuple[float, float | None], b: tuple[float, float | None]) -> bool:
    if a[0] != b[0]:
        return a[0] > b[0]
    if a[1] is None:
        return False
    return b[1] is None or a[1] < b[1]


def find_range(ctype: DcsCtype, t_ns: int) -> DcsRange | None:
    """The range psana would pick for ``t_ns``, with stored floats converted as ``--at`` does."""
    spans = [(seconds_to_ns(r.begin), None if r.end is None else seconds_to_ns(r.end)) for r in ctype.ranges]
    i = pick_range(spans, t_ns)
    return None if i is None else ctype.ranges[i]


def pick_version(rng: DcsRange) -> DcsVersion | None:
    """The version psana returns for a range by default, or None when it has none.

    psana (``PSCalib/src/DCRange.py``): ``DCRange.version()`` takes ``vnum_def()``, which is the
    pinned ``versdef`` unless that is 0, else ``vnum_last()``: the last key of the dict of
    versions, i.e. the version loaded last. ``DCRange.load`` iterates the range group in h5py's
    order, which is link-name order, and ``set_vnum_def`` ignores (keeps 0 for) a pinned number
    that names no loaded version. So: the pinned version if it exists, else the version whose
    ``v%04d`` name sorts last, which is the largest number while numbers stay below 10000. The
    production time ``tsprod`` plays no part.
    """
    if not rng.versions:
        return None
    if rng.versdef != 0:
        for version in rng.versions:
            if version.number == rng.versdef:
                return version
    return max(rng.versions, key=lambda v: version_group_name(v.number))
