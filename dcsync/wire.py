"""The one module that imports msgpack: fixed options, size-limited unpacking of remote data, and
library errors turned into ours.

Everything dcsync encodes (trees, commits, log records, protocol frames) goes through
:func:`pack`/:func:`unpack`: maps with string keys, ``bin`` for bytes, no ext types, and strict
limits so hostile input cannot make the unpacker allocate without bound.
"""

from __future__ import annotations

from typing import Any

import msgpack

from dcsync.errors import CorruptObject

DEFAULT_LIMIT = 64 * 1024 * 1024


def pack(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True, strict_types=False, datetime=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptObject(f"cannot encode {type(value).__name__}: {exc}") from exc


def bin_header(size: int) -> bytes:
    """msgpack's header of a ``bin`` of ``size`` bytes (what :func:`pack` puts before them)."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def unpack(data: bytes, *, limit: int = DEFAULT_LIMIT, what: str = "data") -> Any:
    """Decode one msgpack value; any malformed input raises :class:`CorruptObject` naming ``what``."""
    if len(data) > limit:
        raise CorruptObject(f"{what} is {len(data)} bytes, over the limit of {limit}")
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(limit, 1),
        max_bin_len=limit,
        max_str_len=limit,
        max_array_len=limit // 2,
        max_map_len=limit // 4,
        max_ext_len=0,
        use_list=True,
    )
    try:
        unpacker.feed(data)
        value = unpacker.unpack()
    except msgpack.OutOfData as exc:
        raise CorruptObject(f"{what} is truncated msgpack") from exc
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError, msgpack.BufferFull) as exc:
        raise CorruptObject(f"{what} is not valid msgpack: {exc}") from exc
    if unpacker.tell() != len(data):
        raise CorruptObject(f"{what} has {len(data) - unpacker.tell()} bytes of trailing garbage")
    return value
