"""Write a :class:`~dcsync.legacy.dcs.DcsStore` as a DCS file, in the layout psana's ``PSCalib``
writes (:mod:`dcsync.legacy.dcs`), so that psana's DCS reader and :func:`~dcsync.legacy.dcsread.read_dcs`
read it back.

A description psana could not read back as given is refused with :class:`~dcsync.errors.UsageError`
before anything is written: a ctype psana does not know (its ``DCStore.load`` fails on one), two
ranges of one ctype with the same rounded key (psana merges them), a version numbered below 1 or
above 9999 (psana's newest is the last ``v%04d`` name, which stops following the number at 10000),
two history records with one ``'%.6f'`` name, a string ending in NUL (a fixed-length string drops
it), empty geometry text (no ``S0`` type), an integer parameter outside int64, non-finite times.
The file is written to a temporary name beside ``path`` and renamed into place, so a failure leaves
no half-written DCS file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import numpy as np

from dcsync.errors import UsageError
from dcsync.legacy.dcs import (
    PSANA_DCS_CTYPES,
    DcsCtype,
    DcsMeta,
    DcsRange,
    DcsStore,
    DcsVersion,
    ParValue,
    version_group_name,
)
from dcsync.legacy.textarray import file_error


def write_dcs(path: Path, store: DcsStore) -> None:
    """Write ``store`` to ``path`` (replacing it); see the module docstring for what is refused."""
    path = Path(path)
    check_writable(store)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as root:
            _write_store(root, store)
        os.replace(tmp, path)
    except OSError as exc:
        raise file_error(path, exc, "writing") from exc
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(store: DcsStore) -> None:
    """Raise :class:`UsageError` naming the first part of ``store`` that has no DCS form."""
    det = store.detector
    for what, value in (("dettype", det.dettype), ("detid", det.detid), ("detname", det.detname),
                        ("predecessor", det.predecessor), ("successor", det.successor)):  # fmt: skip
        _check_text(f"/{what}", value)
    _check_time("/tscfile", det.tscfile)
    _check_meta("/", store.meta)
    names = [c.name for c in store.ctypes]
    if len(set(names)) != len(names):
        raise UsageError("DCS: a ctype appears twice")
    for ctype in store.ctypes:
        where = f"/{ctype.name}"
        if ctype.name not in PSANA_DCS_CTYPES:
            known = ", ".join(PSANA_DCS_CTYPES)
            raise UsageError(f"DCS: {where}: psana's DCS reader knows only the ctypes {known}")
        _check_text(f"{where}/ctype", ctype.stored_name)
        _check_meta(where, ctype.meta)
        keys: dict[str, str] = {}
        groups: set[str] = set()
        for rng in ctype.ranges:
            _check_range(where, rng)
            if rng.key in keys or rng.name in groups or rng.name.startswith("_") or "/" in rng.name:
                raise UsageError(
                    f"DCS: {where}/{rng.name}: psana would merge it with another range of key {rng.key}, "
                    "or its group name is taken or invalid"
                )
            keys[rng.key] = rng.name
            groups.add(rng.name)


def _check_range(where: str, rng: DcsRange) -> None:
    where = f"{where}/{rng.name}"
    _check_time(f"{where}/begin", rng.begin)
    _check_time(f"{where}/end", rng.end)
    _check_meta(where, rng.meta)
    numbers = [v.number for v in rng.versions]
    if len(set(numbers)) != len(numbers):
        raise UsageError(f"DCS: {where}: two versions share a number")
    if not -(2**63) <= rng.versdef < 2**63:
        raise UsageError(f"DCS: {where}/versdef: outside int64")
    for version in rng.versions:
        vwhere = f"{where}/{version_group_name(version.number)}"
        if not 1 <= version.number <= 9999:
            raise UsageError(f"DCS: {vwhere}: version numbers run from 1 to 9999 in DCS")
        _check_time(f"{vwhere}/tsprod", version.tsprod)
        _check_meta(vwhere, version.meta)
        if isinstance(version.data, str):
            if not version.data:
                raise UsageError(f"DCS: {vwhere}/data: empty text has no DCS form")
        elif isinstance(version.data, np.ndarray) and version.data.dtype.kind not in "biufc":
            raise UsageError(f"DCS: {vwhere}/data: dtype {version.data.dtype} has no DCS form")


def _check_text(where: str, value: str | None) -> None:
    if value is not None and value.endswith("\x00"):
        raise UsageError(f"DCS: {where}: text ending in NUL has no DCS form")


def _check_time(where: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise UsageError(f"DCS: {where}: {value} is not a finite time")


def _check_meta(where: str, meta: DcsMeta) -> None:
    keys = [k for k, _ in meta.pars]
    if len(set(keys)) != len(keys):
        raise UsageError(f"DCS: {where}/_parameters: a key appears twice")
    for key, value in meta.pars:
        if not key or "/" in key or key == ".":
            raise UsageError(f"DCS: {where}/_parameters: invalid key {key!r}")
        if isinstance(value, str):
            _check_text(f"{where}/_parameters/{key}", value)
        elif isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise UsageError(f"DCS: {where}/_parameters/{key}: outside int64")
    names = [f"{r.time:.6f}" for r in meta.history]
    if len(set(names)) != len(names):
        raise UsageError(f"DCS: {where}/_history: two records have one '%.6f' time")
    for record in meta.history:
        _check_time(f"{where}/_history", record.time)
        _check_text(f"{where}/_history/{record.time:.6f}", record.text)


# -- writing: DCUtils.save_object_as_dset's encodings ---------------------------------------------


def _text(group: h5py.Group, name: str, value: str | None) -> None:
    if value is None:
        return  # psana leaves a None out
    raw = value.encode("utf-8")
    group.create_dataset(name, data=np.array([raw], dtype=f"S{max(len(raw), 1)}"))


def _float(group: h5py.Group, name: str, value: float | None) -> None:
    if value is not None:
        group.create_dataset(name, data=np.array([value], dtype=np.float64))


def _par(group: h5py.Group, name: str, value: ParValue) -> None:
    if isinstance(value, str):
        _text(group, name, value)
    elif isinstance(value, int):  # bool is an int: psana stores it as one too
        group.create_dataset(name, data=np.array([value], dtype=np.int64))
    else:
        _float(group, name, value)


def _write_meta(group: h5py.Group, meta: DcsMeta) -> None:
    if meta.pars:
        pars = group.create_group("_parameters")
        for key, value in meta.pars:
            _par(pars, key, value)
    if meta.history:
        hist = group.create_group("_history")
        for record in meta.history:
            _text(hist, f"{record.time:.6f}", record.text)


def _write_store(root: h5py.File, store: DcsStore) -> None:
    det = store.detector
    _text(root, "dettype", det.dettype)
    _text(root, "detname", det.detname)
    _text(root, "detid", det.detid)
    _float(root, "tscfile", det.tscfile)
    _text(root, "predecessor", det.predecessor)
    _text(root, "successor", det.successor)
    for ctype in store.ctypes:
        _write_ctype(root.create_group(ctype.name), ctype)
    _write_meta(root, store.meta)


def _write_ctype(group: h5py.Group, ctype: DcsCtype) -> None:
    _text(group, "ctype", ctype.stored_name)
    for rng in ctype.ranges:
        rgroup = group.create_group(rng.name)
        _float(rgroup, "begin", rng.begin)
        if rng.end is None:
            _text(rgroup, "end", "end")
        else:
            _float(rgroup, "end", rng.end)
        _text(rgroup, "range", rng.name)
        rgroup.create_dataset("versdef", data=np.array([rng.versdef], dtype=np.int64))
        for version in rng.versions:
            _write_version(rgroup.create_group(version_group_name(version.number)), version)
        _write_meta(rgroup, rng.meta)
    _write_meta(group, ctype.meta)


def _write_version(group: h5py.Group, version: DcsVersion) -> None:
    group.create_dataset("version", data=np.array([version.number], dtype=np.int64))
    _float(group, "tsprod", version.tsprod)
    if isinstance(version.data, str):
        raw = version.data.encode("utf-8")
        group.create_dataset("data", data=np.array([raw], dtype=f"S{len(raw)}"))
    elif version.data is not None:
        group.create_dataset("data", data=version.data)
    _write_meta(group, version.meta)
