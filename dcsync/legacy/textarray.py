"""Psana-style text n-d arrays (``.data``/``.txt``): read users' files exactly, write files psana reads.

Layout::

    # TITLE anything             <- comments: '#' in column 0; blank lines are ignored
    # SHAPE (704,768)            <- metadata: '# KEY value' comments before the first data line;
    # DATATYPE uint64               SHAPE/DATATYPE take precedence over DIM:i/DTYPE
    # DTYPE uint64
    # NDIM 2
    # DIM:0 704
    # DIM:1 768
    0 0 1 0 ... (768 values)     <- C order, last dimension as the columns; a 1-D array is one line

Without metadata the array is as laid out (1-D for one line, else 2-D) and float32, so plain
``numpy.savetxt`` output reads too. Integers are parsed exactly (never through float), and every
problem raises :class:`InputError` naming the file, the line and what is wrong.
"""

from __future__ import annotations

import re
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dcsync.errors import DcsyncError, InputError, StorageFull
from dcsync.rawio import FULL_ERRNOS

# Older C++ writers put C type names in DTYPE; "float" and "int" mean C's, not numpy's float64/int64.
_C_NAMES: dict[str, str] = {
    "float": "float32", "double": "float64", "short": "int16", "unsigned short": "uint16",
    "unsigned": "uint32", "unsigned int": "uint32", "uint": "uint32", "int": "int32", "long": "int64",
    "long long": "int64", "unsigned long": "uint64", "unsigned long long": "uint64", "size_t": "uint64",
    "unsigned char": "uint8", "int8_t": "int8", "int16_t": "int16", "int32_t": "int32",
    "int64_t": "int64", "uint8_t": "uint8", "uint16_t": "uint16", "uint32_t": "uint32",
    "uint64_t": "uint64", "bool": "bool",
}  # fmt: skip
_RESERVED = {"SHAPE", "DATATYPE", "DTYPE", "NDIM"}
_EXTRA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-]*$")
_INT_TOKEN = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_FORMAT = {2: "%.5g", 4: "%.9g"}  # shortest widths that round-trip; float64 uses repr()


def file_error(path: Path, exc: OSError, doing: str) -> DcsyncError:
    """Translate an OSError on a user's file into one clear line naming the file."""
    if exc.errno in FULL_ERRNOS:
        return StorageFull(f"{path}: no space left while {doing} ({exc.strerror})")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{path}: is a directory, not a file")
    if isinstance(exc, PermissionError):
        return InputError(f"{path}: permission denied while {doing}")
    return InputError(f"{path}: cannot {doing.removesuffix('ing')} ({exc.strerror or exc})")


def read_text_file(path: Path) -> str:
    """Read a text file byte for byte (no newline translation); NUL bytes or bad UTF-8 are refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise file_error(path, exc, "reading") from exc
    if b"\0" in data:
        raise InputError(f"{path}: contains NUL bytes at offset {data.index(0)}: a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: not UTF-8 text (invalid byte on line {line}, offset {exc.start})") from exc


def text_dtype(name: str, source: str) -> np.dtype[Any]:
    """The dtype a DTYPE/DATATYPE value names: C names first, then numpy names of bool/int/float."""
    key = " ".join(name.split())
    try:
        dt = np.dtype(_C_NAMES.get(key, key))
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.kind not in "biuf" or dt.itemsize > 8 or dt.fields is not None:
        raise InputError(f"{source}: unknown or unsupported dtype {name!r} (use e.g. float32, uint16)")
    return dt.newbyteorder("=")


def read_text_array(path: Path) -> NDArray[Any]:
    """Read a text n-d array file; see the module docstring for the format."""
    return parse_text_array(read_text_file(path), str(path))


def parse_text_array(text: str, source: str) -> NDArray[Any]:
    """Parse the text of an n-d array file; ``source`` names it in error messages."""
    meta: dict[str, tuple[int, str]] = {}
    data: list[str] = []
    linenos: list[int] = []
    for n, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        if line.startswith("#"):
            if not data:
                _add_meta(meta, line, n, source)
        elif line.strip():
            data.append(line)
            linenos.append(n)
    dtype = text_dtype(meta["DATATYPE"][1], source) if "DATATYPE" in meta else None
    if dtype is None and "DTYPE" in meta:
        dtype = text_dtype(meta["DTYPE"][1], source)
    flat = _parse_values(data, linenos, dtype or np.dtype(np.float32), source)
    shape = _shape(meta, source, len(data), flat.size)
    if prod(shape) != flat.size:
        raise InputError(
            f"{source}: header says shape {shape} ({prod(shape)} values) but the file has {flat.size}"
        )
    return flat.reshape(shape)  # not ascontiguousarray: it turns 0-d into 1-d


def _add_meta(meta: dict[str, tuple[int, str]], line: str, n: int, source: str) -> None:
    parts = line[1:].strip().split(None, 1)
    if not parts:
        return
    key, value = parts[0].upper(), (parts[1].strip() if len(parts) > 1 else "")
    if (key in _RESERVED or key.startswith("DIM:")) and key in meta and meta[key][1] != value:
        raise InputError(f"{source}: line {n}: {key} {value!r} contradicts line {meta[key][0]}")
    meta.setdefault(key, (n, value))


def _size(value: str, what: str, source: str, n: int) -> int:
    if not _INT_TOKEN.match(value.strip()) or int(value) < 0:
        raise InputError(f"{source}: line {n}: {what} {value!r} is not a non-negative integer")
    return int(value)


def _shape(meta: dict[str, tuple[int, str]], source: str, rows: int, count: int) -> tuple[int, ...]:
    """The shape from SHAPE, else DIM:i, else NDIM and the layout; NDIM must agree with the sizes."""
    ndim = _size(meta["NDIM"][1], "NDIM", source, meta["NDIM"][0]) if "NDIM" in meta else None
    if "SHAPE" in meta:
        n, value = meta["SHAPE"]
        inner = value.strip().strip("()[]").strip()
        items = [s for s in inner.split(",") if s.strip()] if inner else []
        shape = tuple(_size(s, "SHAPE size", source, n) for s in items)
        what = f"SHAPE {value}"
    elif dims := sorted(
        (_size(k[4:], "DIM index", source, n), k) for k, (n, _) in meta.items() if k[:4] == "DIM:"
    ):
        first = dims[0][0]
        if first not in (0, 1) or [i for i, _ in dims] != list(range(first, first + len(dims))):
            raise InputError(
                f"{source}: DIM keys {', '.join(k for _, k in dims)} are not numbered consecutively"
            )
        shape = tuple(_size(meta[k][1], k, source, meta[k][0]) for _, k in dims)
        what = f"{len(dims)} DIM:i lines"
    elif rows == 0:
        raise InputError(f"{source}: no data lines and no SHAPE or DIM:i header: nothing to read")
    elif ndim is None:
        return (count,) if rows == 1 else (rows, count // rows)
    elif ndim <= 2:
        return ((), (count,), (rows, count // rows))[ndim]
    else:
        raise InputError(f"{source}: NDIM {ndim} but no DIM:i or SHAPE lines give the sizes")
    if ndim is not None and ndim != len(shape):
        raise InputError(f"{source}: NDIM {ndim} disagrees with {what} ({len(shape)} dimensions)")
    return shape


def _parse_values(data: list[str], linenos: list[int], dtype: np.dtype[Any], source: str) -> NDArray[Any]:
    """All values in file order, parsed by numpy's C reader at the target dtype (exact for integers)."""
    if not data:
        return np.empty(0, dtype)
    parse_as = np.dtype(np.uint8) if dtype.kind == "b" else dtype
    try:
        with np.errstate(over="ignore"):  # float overflow is detected below, with the line number
            values = np.loadtxt(data, dtype=parse_as, comments=None, ndmin=2).reshape(-1)
    except ValueError as exc:
        _diagnose(data, linenos, dtype, source)
        raise InputError(f"{source}: cannot parse as {dtype} ({exc})") from exc
    if (dtype.kind == "b" and values.max() > 1) or (dtype.kind == "f" and np.isinf(values).any()):
        _diagnose(data, linenos, dtype, source)  # 2 as bool, or 1e40 as float32: find and name it
    return values.astype(dtype, copy=False)


def _diagnose(data: list[str], linenos: list[int], dtype: np.dtype[Any], source: str) -> None:
    """Slow path, only after a failure: find the first bad line or token and say what is wrong."""
    width = len(data[0].split())
    is_int = dtype.kind in "biu"
    lo, hi = (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)) if dtype.kind in "iu" else (0, 1)
    for line, n in zip(data, linenos, strict=True):
        tokens = line.split()
        if len(tokens) != width:
            raise InputError(
                f"{source}: line {n}: {len(tokens)} values, but the first data line "
                f"(line {linenos[0]}) has {width}: rows must be of equal length"
            )
        for col, tok in enumerate(tokens, 1):
            where = f"{source}: line {n}, column {col}"
            try:
                number = float(tok.replace("_", "x"))  # numpy refuses '1_000', Python would not
            except ValueError:
                raise InputError(f"{where}: {tok!r} is not a number") from None
            if is_int and not _INT_TOKEN.match(tok):
                raise InputError(f"{where}: {tok!r} is not an integer, but the dtype is {dtype}")
            if is_int and not lo <= int(tok) <= hi:
                raise InputError(f"{where}: {tok} does not fit {dtype} ({lo}..{hi})")
            with np.errstate(over="ignore"):
                overflow = not is_int and np.isinf(dtype.type(number)) and not np.isinf(number)
            if overflow:
                raise InputError(f"{where}: {tok} is out of range for {dtype}")


def format_text_array(arr: NDArray[Any], extra: dict[str, str] | None = None, source: str = "array") -> str:
    """The file text for ``arr``: the newer header (which older readers also understand) and data."""
    if arr.dtype.kind not in "biuf" or arr.dtype.itemsize > 8:
        raise InputError(
            f"{source}: dtype {arr.dtype} cannot be written as a text array (bool, int, float only)"
        )
    shape = tuple(arr.shape)
    shape_text = "(" + ",".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    name = arr.dtype.name
    lines = [f"# SHAPE {shape_text}", f"# DATATYPE {name}", f"# DTYPE {name}", f"# NDIM {arr.ndim}"]
    lines += [f"# DIM:{i} {size}" for i, size in enumerate(shape)]
    for key, value in (extra or {}).items():
        if not _EXTRA_KEY.match(key) or key.upper() in _RESERVED or key.upper().startswith("DIM:"):
            raise InputError(f"{source}: header key {key!r} is reserved or not a single word")
        if "\n" in value or "\r" in value:
            raise InputError(f"{source}: header value for {key} must be one line")
        lines.append(f"# {key} {value}".rstrip())
    if arr.size:
        rows = np.ascontiguousarray(arr).reshape(-1, shape[-1] if shape else 1)
        if arr.dtype.kind in "biu":
            ints = rows.astype(np.uint8) if arr.dtype.kind == "b" else rows
            lines += [" ".join(map(str, row)) for row in ints.tolist()]
        elif arr.dtype.itemsize == 8:
            lines += [" ".join(map(repr, row)) for row in rows.tolist()]
        else:
            fmt = _FLOAT_FORMAT[arr.dtype.itemsize]
            lines += [" ".join([fmt % v for v in row]) for row in rows.tolist()]
    return "\n".join(lines) + "\n"


def write_text_array(path: Path, arr: NDArray[Any], extra: dict[str, str] | None = None) -> None:
    """Write ``arr`` to ``path`` as a text array that :func:`read_text_array` reads back exactly."""
    text = format_text_array(arr, extra, str(path))
    try:
        path.write_bytes(text.encode("utf-8"))
    except OSError as exc:
        raise file_error(path, exc, "writing") from exc
