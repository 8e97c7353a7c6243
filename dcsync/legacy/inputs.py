"""The one door through which a user's file becomes a constant (and a constant becomes a file).

Which reader, by ctype and then by suffix:

* ctype ``geometry`` -> the file's bytes decoded as UTF-8 (no newline translation, no NUL bytes),
  checked by :func:`dcsync.legacy.geometry.parse_geometry` and returned as ``str``, byte for byte;
* ``.npy`` -> a numeric or bool array; the header is read first, so object (pickled), string,
  datetime and structured dtypes are refused before any data is touched; nothing is ever unpickled;
* ``.npz`` -> only when it holds exactly one array (otherwise which one would be meant?);
* anything else (``.data``, ``.txt``, ``.dat``, ...) -> a psana text array
  (:mod:`dcsync.legacy.textarray`).

Every problem, including a missing file, a directory or a permission error, raises
:class:`InputError` naming the file and saying what is wrong.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from math import prod
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.lib.format as npy_format
from numpy.typing import NDArray

from dcsync.errors import InputError, UsageError
from dcsync.legacy.geometry import parse_geometry
from dcsync.legacy.textarray import file_error, read_text_array, read_text_file, write_text_array

GEOMETRY = "geometry"
SAVE_SUFFIXES = (".npy", ".data", ".txt", ".dat")  # what save_constant writes (get -o)
_NPY_KINDS = "biufc"  # bool, signed, unsigned, float, complex: what the store accepts
_KIND_NAMES = {
    "O": "object dtype",
    "U": "string dtype",
    "S": "bytes dtype",
    "M": "datetime dtype",
    "m": "timedelta dtype",
    "V": "structured/void dtype",
}


def load_constant(path: Path, ctype: str) -> NDArray[Any] | str:
    """Read the value of one constant from a user's file; see the module docstring for the rules."""
    path = Path(path)
    if ctype == GEOMETRY:
        text = read_text_file(path)
        parse_geometry(text, str(path))
        return text
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path)
    if suffix == ".npz":
        return _load_npz(path)
    return read_text_array(path)


def check_output_suffix(path: Path) -> None:
    """Refuse an output name whose suffix says a format dcsync does not write (``out.xyz`` would
    otherwise get a psana text file its reader cannot guess), naming the ones it does."""
    suffix = Path(path).suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        what = f"a {suffix} file" if suffix else "a file without a suffix"
        raise UsageError(
            f"{path}: dcsync does not write {what}; use .npy (arrays), or .data, .txt or .dat "
            "(psana text: arrays and geometry)"
        )


def save_constant(path: Path, value: NDArray[Any] | str) -> None:
    """Write a constant so that :func:`load_constant` reads the same value back.

    Text (geometry) is written as its UTF-8 bytes exactly (``.data``/``.txt``); arrays as ``.npy``
    (never pickled) or as a psana text array (``.data``/``.txt``). Other suffixes are refused.
    """
    path = Path(path)
    check_output_suffix(path)
    suffix = path.suffix.lower()
    if isinstance(value, str):
        if suffix == ".npy":
            raise UsageError(f"{path}: a text constant (geometry) cannot be saved as .npy; use .data or .txt")
        _write(path, value.encode("utf-8"))
    elif suffix == ".npy":
        _check_dtype(value.dtype, str(path))
        try:
            with open(path, "wb") as f:  # np.save(str) would append ".npy" to other names
                np.save(f, value, allow_pickle=False)
        except OSError as exc:
            raise file_error(path, exc, "writing") from exc
    else:
        write_text_array(path, value)


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise file_error(path, exc, "writing") from exc


def _load_npy(path: Path) -> NDArray[Any]:
    try:
        with open(path, "rb") as f:
            return _read_npy(f, os.fstat(f.fileno()).st_size, str(path))
    except OSError as exc:
        raise file_error(path, exc, "reading") from exc


def _load_npz(path: Path) -> NDArray[Any]:
    """An .npz is accepted only with exactly one array: with more, which one is the constant?"""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            if len(members) != 1:
                names = ", ".join(info.filename.removesuffix(".npy") for info in members) or "none"
                raise InputError(
                    f"{path}: an .npz must hold exactly one array to be a constant, this one holds "
                    f"{len(members)} ({names}); save the array you mean as .npy"
                )
            info = members[0]
            with zf.open(info) as f:
                return _read_npy(f, info.file_size, f"{path} (array {info.filename.removesuffix('.npy')!r})")
    except OSError as exc:
        raise file_error(path, exc, "reading") from exc
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable .npz (zip) file ({exc})") from exc


def _read_npy(f: IO[bytes], size: int, source: str) -> NDArray[Any]:
    """Read the header, judge the dtype and size, and only then the data (with pickles disallowed)."""
    try:
        version = npy_format.read_magic(f)
    except ValueError as exc:
        raise InputError(f"{source}: not a .npy file (no NPY magic: a pickle, or another format?)") from exc
    if version not in ((1, 0), (2, 0)):  # 3.0 only adds UTF-8 field names: structured, refused anyway
        raise InputError(f"{source}: .npy format version {version} is not supported (1.0 and 2.0 are)")
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    try:
        shape, _, dtype = read_header(f)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise InputError(f"{source}: corrupt .npy header ({exc})") from exc
    _check_dtype(dtype, source)
    if any(n < 0 for n in shape):
        raise InputError(f"{source}: corrupt .npy header (negative size in shape {tuple(shape)})")
    expected = prod(shape) * dtype.itemsize
    if size - f.tell() < expected:
        raise InputError(
            f"{source}: truncated .npy file: the header promises {expected} data bytes "
            f"(shape {tuple(shape)}, {dtype}) but only {max(size - f.tell(), 0)} follow"
        )
    f.seek(0)
    try:
        arr: NDArray[Any] = npy_format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise InputError(f"{source}: corrupt .npy file ({exc})") from exc
    if arr.dtype.byteorder == ">" or not arr.flags.c_contiguous:
        arr = arr.astype(arr.dtype.newbyteorder("="), order="C")  # native, C order, as the store keeps
    return arr


def _check_dtype(dtype: np.dtype[Any], source: str) -> None:
    if dtype.kind not in _NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        what = _KIND_NAMES.get(dtype.kind, "dtype")
        why = " (it holds pickled Python objects, and dcsync never unpickles)" if dtype.hasobject else ""
        raise InputError(
            f"{source}: {what} {dtype.str!r} is refused{why}: a constant must be a numeric or bool array"
        )
