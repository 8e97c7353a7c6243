"""Content ids: xxh3-128 over a canonical encoding of an object, never over HDF5 file bytes.

Canonical encoding (what is hashed, in order)::

    b"dcsync1\\0" kind b"\\0" dtype b"\\0" shape b"\\0" body

``kind`` is ``array``, ``text``, ``tree`` or ``commit``; ``dtype`` is numpy's little-endian type
string (``<f4``, ``|u1``, ``|b1``) for arrays and empty otherwise; ``shape`` is the decimal sizes
joined by ``,`` (empty for 0-d and non-arrays); ``body`` is the C-order little-endian bytes of an
array, the UTF-8 bytes of text, or the msgpack bytes of a tree or commit.

The algorithm name is data (``ALGORITHM``), recorded in every file and in the protocol handshake.
xxh3 guards against accidents, not attackers: no access decision may rest on an id.
"""

from __future__ import annotations

from typing import NewType

import numpy as np
import xxhash

from dcsync.errors import InputError

ALGORITHM = "xxh3-128"
ObjectId = NewType("ObjectId", str)
"""32 lower-case hex digits."""

ID_HEX_LEN = 32
_MAGIC = b"dcsync1\0"


def _header(kind: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    return b"".join(
        (_MAGIC, kind.encode(), b"\0", dtype.encode(), b"\0", ",".join(map(str, shape)).encode(), b"\0")
    )


def canonical_array(arr: np.ndarray) -> np.ndarray:
    """The array as hashed and stored: C-contiguous, little-endian, a supported dtype.

    Copies only when it must (non-contiguous or big-endian input).
    """
    if arr.dtype.kind not in "biufc":
        raise InputError(f"unsupported array dtype {arr.dtype}: only numeric and bool arrays are constants")
    if arr.dtype.itemsize > (16 if arr.dtype.kind == "c" else 8):
        # long double: padding bytes and a platform-dependent layout would make ids unstable
        raise InputError(f"unsupported array dtype {arr.dtype}: use float64 or complex128")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def dtype_string(dtype: np.dtype) -> str:
    """Numpy's type string with the byte order made explicit little-endian where it matters."""
    s = dtype.str
    return "<" + s[1:] if s[0] == "=" else s


# The dtypes an array payload may have (what canonical_array lets through), by their exact type
# string ("<f4", "|b1"): a peer's string is looked up here, never parsed by numpy (np.dtype
# accepts a small language, and raises SyntaxError on some input).
ARRAY_DTYPES = {
    dtype_string(dt): dt
    for dt in (
        np.dtype(code).newbyteorder("<")
        for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]
        if np.dtype(code).itemsize <= (16 if np.dtype(code).kind == "c" else 8)  # no long double
    )
}


def hasher(kind: str, dtype: str = "", shape: tuple[int, ...] = ()) -> xxhash.xxh3_128:
    """A streaming hasher already fed the header: update it with the body in order."""
    return xxhash.xxh3_128(_header(kind, dtype, shape))


def hash_array(arr: np.ndarray) -> ObjectId:
    """Id of an array payload; ``arr`` must already be canonical (see :func:`canonical_array`)."""
    h = xxhash.xxh3_128(_header("array", dtype_string(arr.dtype), arr.shape))
    # reshape(-1) also turns a 0-d array into a 1-element view; no copy for contiguous input.
    h.update(arr.reshape(-1).view(np.uint8).data)
    return ObjectId(h.hexdigest())


def hash_text(text: str) -> ObjectId:
    return hash_bytes("text", text.encode("utf-8"))


def hash_bytes(kind: str, body: bytes) -> ObjectId:
    h = xxhash.xxh3_128(_header(kind, "", ()))
    h.update(body)
    return ObjectId(h.hexdigest())


def is_object_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == ID_HEX_LEN and all(c in "0123456789abcdef" for c in value)
