"""Read a DCS file (layout in :mod:`dcsync.legacy.dcs`) into a :class:`~dcsync.legacy.dcs.DcsStore`.

What psana's reader skips, this one skips too and says so (:class:`Skipped`): a version group
without its ``version`` dataset, datasets it does not know. What psana would misread or fail on is
refused with :class:`~dcsync.errors.InputError` naming the file, the HDF5 path and the reason: a
file that is not HDF5 or is truncated, a root without ``dettype``, a range without a float64
``begin`` (psana prints "corrupted structure" and drops such a range; dcsync refuses the file
rather than import it without a range psana's writer meant to be there), a value of the wrong kind,
two ranges psana would merge (their rounded keys agree), a version group not named ``v%04d`` of its
number (psana's "newest" depends on the names), links other than hard links (never followed: an
external link would open another file). No h5py error escapes.

Arrays are read one at a time straight into their own buffer (``read_direct``), so a file's data is
held once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from dcsync.errors import InputError
from dcsync.legacy.dcs import (
    Data,
    DcsCtype,
    DcsDetector,
    DcsMeta,
    DcsRange,
    DcsRecord,
    DcsStore,
    DcsVersion,
    ParValue,
    version_group_name,
)
from dcsync.legacy.textarray import file_error

_META = ("_parameters", "_history")
_ARRAY_KINDS = "biufc"


class Skipped(NamedTuple):
    """Something in the file that was not read: its HDF5 path and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class DcsRead:
    store: DcsStore
    skipped: tuple[Skipped, ...]


class _Bad(Exception):
    """A refusal inside the walk: the HDF5 path and the reason; :func:`read_dcs` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


def read_dcs(path: Path) -> DcsRead:
    """Read one DCS file; see the module docstring for what is skipped and what is refused."""
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        if exc.errno is not None:  # the OS said no (missing, a directory, permissions)
            raise file_error(path, exc, "reading") from exc
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
    except ValueError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        with handle:
            walker = _Walker(path.stat().st_size)
            return DcsRead(walker.store(handle), tuple(walker.skipped))
    except _Bad as exc:
        details = {"file": str(path), "hdf5_path": exc.path, "reason": exc.reason}
        raise InputError(f"{path}: {exc.path}: {exc.reason}", details=details) from exc
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:  # h5py: truncated, corrupt
        raise InputError(f"{path}: unreadable HDF5 ({exc})") from exc
    except MemoryError as exc:
        raise InputError(f"{path}: a dataset too large to read into memory") from exc


class _Walker:
    def __init__(self, file_size: int) -> None:
        self.skipped: list[Skipped] = []
        self.file_size = file_size

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(Skipped(path, reason))

    def children(self, group: h5py.Group) -> tuple[dict[str, h5py.Dataset], dict[str, h5py.Group]]:
        """A group's hard-linked datasets and groups, in name order; anything else is skipped."""
        datasets: dict[str, h5py.Dataset] = {}
        groups: dict[str, h5py.Group] = {}
        for name in group:
            where = _join(group.name, name)
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                self.skip(where, f"a {type(link).__name__}: links are not followed")
                continue
            obj = group[name]
            if isinstance(obj, h5py.Dataset):
                datasets[name] = obj
            elif isinstance(obj, h5py.Group):
                groups[name] = obj
            else:
                self.skip(where, "neither a dataset nor a group")
        return datasets, groups

    def store(self, root: h5py.File) -> DcsStore:
        ds, groups = self.children(root)
        if "dettype" not in ds:
            raise _Bad("/", "not a DCS file: the root has no dettype dataset")
        detector = DcsDetector(
            dettype=_text(ds.pop("dettype")),
            detid=_opt(ds.pop("detid", None), _text),
            detname=_opt(ds.pop("detname", None), _text),
            tscfile=_opt(ds.pop("tscfile", None), _float),
            predecessor=_opt(ds.pop("predecessor", None), _text),
            successor=_opt(ds.pop("successor", None), _text),
        )
        self.unknown(ds)
        meta = self.meta(groups)
        ctypes = tuple(self.ctype(name, group) for name, group in groups.items())
        return DcsStore(detector, ctypes, meta)

    def unknown(self, datasets: dict[str, h5py.Dataset]) -> None:
        for dset in datasets.values():
            self.skip(dset.name, "a dataset DCS does not define (psana ignores it)")

    def meta(self, groups: dict[str, h5py.Group]) -> DcsMeta:
        """Pops ``_parameters`` and ``_history`` out of ``groups``."""
        pars: list[tuple[str, ParValue]] = []
        history: list[DcsRecord] = []
        if "_parameters" in groups:
            ds, sub = self.children(groups.pop("_parameters"))
            self.ignore_groups(sub)
            for key, dset in ds.items():
                value = self.par(dset)
                if value is not None:
                    pars.append((key, value))
        if "_history" in groups:
            ds, sub = self.children(groups.pop("_history"))
            self.ignore_groups(sub)
            for key, dset in ds.items():
                try:
                    when = float(key)
                except ValueError:
                    raise _Bad(dset.name, "a history record must be named by its time in seconds") from None
                if not math.isfinite(when):
                    raise _Bad(dset.name, "a history record must be named by a finite time")
                history.append(DcsRecord(when, _text(dset)))
        return DcsMeta(tuple(pars), tuple(history))

    def ignore_groups(self, groups: dict[str, h5py.Group]) -> None:
        for group in groups.values():
            self.skip(group.name, "a group DCS does not define here (psana ignores it)")

    def par(self, dset: h5py.Dataset) -> ParValue | None:
        if dset.shape != (1,):
            shape = dset.shape
            self.skip(dset.name, f"a parameter of shape {shape}: psana reads back only shape-(1,) values")
            return None
        kind = dset.dtype.kind
        if kind == "S" or h5py.check_string_dtype(dset.dtype) is not None:
            return _text(dset)
        if kind in "iu":
            value = int(dset[0])
            if not -(2**63) <= value < 2**63:
                self.skip(dset.name, "an integer parameter outside int64")
                return None
            return value
        if kind == "f":
            return float(dset[0])
        self.skip(dset.name, f"a parameter of dtype {dset.dtype}: DCS parameters are text, int or float")
        return None

    def ctype(self, name: str, group: h5py.Group) -> DcsCtype:
        ds, groups = self.children(group)
        stored = _opt(ds.pop("ctype", None), _text)
        self.unknown(ds)
        meta = self.meta(groups)
        ranges = tuple(self.range(g) for g in groups.values())
        keys: dict[str, str] = {}
        for rng, g in zip(ranges, groups.values(), strict=True):
            if rng.key in keys:
                raise _Bad(g.name, f"psana would merge this range with {keys[rng.key]} (both key {rng.key})")
            keys[rng.key] = g.name
        return DcsCtype(name, ranges, meta, stored)

    def range(self, group: h5py.Group) -> DcsRange:
        ds, groups = self.children(group)
        if "begin" not in ds:
            raise _Bad(group.name, "a range without its begin dataset")
        begin_ds = ds.pop("begin")
        if begin_ds.dtype != np.dtype("<f8") and begin_ds.dtype != np.dtype(">f8"):
            raise _Bad(begin_ds.name, f"begin must be a float64 of seconds, not {_kind(begin_ds)}")
        begin = _float(begin_ds)
        end_ds = ds.pop("end", None)
        end = None if end_ds is None else _end(end_ds)
        stored_range = _opt(ds.pop("range", None), _text)
        if stored_range is not None and stored_range != _leaf(group.name):
            self.skip(_join(group.name, "range"), f"says {stored_range!r}; the group name is used")
        versdef = _opt(ds.pop("versdef", None), _int) or 0
        self.unknown(ds)
        meta = self.meta(groups)
        versions: list[DcsVersion] = []
        for name, vgroup in groups.items():
            version = self.version(name, vgroup)
            if version is not None:
                versions.append(version)
        return DcsRange(begin, end, versdef, tuple(versions), meta, _leaf(group.name))

    def version(self, name: str, group: h5py.Group) -> DcsVersion | None:
        ds, groups = self.children(group)
        if "version" not in ds:
            self.skip(group.name, "a version group without its version dataset (psana skips it too)")
            return None
        number = _int(ds.pop("version"))
        if name != version_group_name(number):
            raise _Bad(group.name, f"holds version {number}; DCS names it {version_group_name(number)}")
        tsprod = _opt(ds.pop("tsprod", None), _float)
        data_ds = ds.pop("data", None)
        data: Data = None if data_ds is None else _data(data_ds, self.file_size)
        self.unknown(ds)
        meta = self.meta(groups)
        self.ignore_groups(groups)
        return DcsVersion(number, tsprod, data, meta)


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def _leaf(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _opt(dset: h5py.Dataset | None, read: Any) -> Any:
    return None if dset is None else read(dset)


def _kind(dset: h5py.Dataset) -> str:
    if h5py.check_string_dtype(dset.dtype) is not None or dset.dtype.kind == "S":
        return "text"
    return f"dtype {dset.dtype} shape {dset.shape}"


def _one(dset: h5py.Dataset) -> Any:
    if dset.shape != (1,):
        raise _Bad(dset.name, f"expected a shape-(1,) value, found shape {dset.shape}")
    return dset[0]


def _text(dset: h5py.Dataset) -> str:
    if dset.dtype.kind != "S" and h5py.check_string_dtype(dset.dtype) is None:
        raise _Bad(dset.name, f"expected text, found {_kind(dset)}")
    raw = _one(dset)
    try:
        return bytes(raw).decode("utf-8") if not isinstance(raw, str) else raw
    except UnicodeDecodeError:
        raise _Bad(dset.name, "text that is not UTF-8") from None


def _float(dset: h5py.Dataset) -> float:
    if dset.dtype.kind not in "iuf":
        raise _Bad(dset.name, f"expected a number, found {_kind(dset)}")
    value = float(_one(dset))
    if not math.isfinite(value):
        raise _Bad(dset.name, f"expected a finite number, found {value}")
    return value


def _int(dset: h5py.Dataset) -> int:
    if dset.dtype.kind not in "iu":
        raise _Bad(dset.name, f"expected an integer, found {_kind(dset)}")
    return int(_one(dset))


def _end(dset: h5py.Dataset) -> float | None:
    """A range's end: a number, or the text ``end`` (psana's open end)."""
    if dset.dtype.kind == "S" or h5py.check_string_dtype(dset.dtype) is not None:
        if _text(dset) != "end":
            raise _Bad(dset.name, "end must be a number or the text 'end'")
        return None
    return _float(dset)


def _data(dset: h5py.Dataset, file_size: int) -> Data:
    kind = dset.dtype.kind
    if kind == "S":
        # psana takes the raw bytes of the one fixed-length string (DCVersion.load: tostring)
        if dset.shape != (1,):
            raise _Bad(dset.name, f"text data must be one string, found shape {dset.shape}")
        data: bytes = dset[()].tobytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(dset.name, "text data that is not UTF-8") from None
    if kind not in _ARRAY_KINDS or dset.dtype.names is not None or dset.dtype.subdtype is not None:
        raise _Bad(dset.name, f"data must be a numeric array or text, found {_kind(dset)}")
    if dset.id.get_create_plist().get_nfilters() == 0 and dset.size * dset.dtype.itemsize > file_size:
        # unfiltered data is stored as is: more of it than the file holds is a lie or a truncation,
        # refused before a buffer of that size is allocated
        raise _Bad(
            dset.name, f"declares {dset.size * dset.dtype.itemsize} bytes of data in a {file_size}-byte file"
        )
    out = np.empty(dset.shape, dtype=dset.dtype)
    if out.size:
        dset.read_direct(out)
    return out
