"""The one module that imports msgpack: fixed options, size-limited unpacking of remote data, and
library errors turned into ours.

Everything dcsync encodes (trees, commits, log records, protocol frames) goes through
:func:`pack`/:func:`unpack`: maps with string keys, ``bin`` for bytes, no ext types, and strict
limits so hostile input cannot make the unpacker allocate without bound.
"""

from __future__ import annotations

from typing import Any

import msgpack

from dcsync.errors import CorruptObject, ProtocolError
from dcsync.model.limits import Decoding

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


def unpack(
    data: bytes, *, limit: int = DEFAULT_LIMIT, what: str = "data", decoding: Decoding | None = None
) -> Any:
    """Decode one msgpack value; any malformed input raises :class:`CorruptObject` naming ``what``.

    With ``decoding`` (a peer's protocol frame), the bytes are first pre-scanned against that
    message type's limits (:func:`prescan`), so nothing is built for a value that would nest too
    deep or decode to more Python objects than its budget.
    """
    if len(data) > limit:
        raise CorruptObject(f"{what} is {len(data)} bytes, over the limit of {limit}")
    max_str = max_bin = limit
    if decoding is not None:
        prescan(data, decoding, what=what)
        max_str = limit if decoding.max_str is None else decoding.max_str
        max_bin = limit if decoding.max_bin is None else decoding.max_bin
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(limit, 1),
        max_bin_len=max_bin,
        max_str_len=max_str,
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


# What decoding costs, from above, in bytes of Python objects (CPython 3.11, 64-bit, allocator
# rounding included): a list of n items 64 + 8n; a map of n pairs 192 + 48n; a str of k UTF-8
# bytes 64 + k if ASCII, else 96 + 4k; a bin of k bytes 48 + k; an int outside the interpreter's
# cache 48; a float 32; nil, booleans and small non-negative ints nothing (shared singletons).
_LIST, _MAP, _STR, _BIN, _FIXED, _EXT = range(6)
# For each first byte: (shape, bytes of the length or value after it, cost of the value itself)
_LEAD: list[tuple[int, int, int]] = [(_FIXED, 0, 0)] * 0x80  # positive fixint: cached
_LEAD += [(_MAP, 0, 0)] * 0x10 + [(_LIST, 0, 0)] * 0x10 + [(_STR, 0, 0)] * 0x20  # fixmap, fixarray, fixstr
_LEAD += [
    (_FIXED, 0, 0),  # c0 nil
    (_EXT, 0, 0),  # c1 never used
    (_FIXED, 0, 0),  # c2 false
    (_FIXED, 0, 0),  # c3 true
    (_BIN, 1, 0), (_BIN, 2, 0), (_BIN, 4, 0),  # c4-c6 bin 8/16/32
    (_EXT, 1, 0), (_EXT, 2, 0), (_EXT, 4, 0),  # c7-c9 ext 8/16/32
    (_FIXED, 4, 32), (_FIXED, 8, 32),  # ca cb float 32/64
    (_FIXED, 1, 0), (_FIXED, 2, 48), (_FIXED, 4, 48), (_FIXED, 8, 48),  # cc-cf uint 8/16/32/64
    (_FIXED, 1, 48), (_FIXED, 2, 48), (_FIXED, 4, 48), (_FIXED, 8, 48),  # d0-d3 int 8/16/32/64
    (_EXT, 1, 0), (_EXT, 2, 0), (_EXT, 4, 0), (_EXT, 8, 0), (_EXT, 16, 0),  # d4-d8 fixext
    (_STR, 1, 0), (_STR, 2, 0), (_STR, 4, 0),  # d9-db str 8/16/32
    (_LIST, 2, 0), (_LIST, 4, 0),  # dc dd array 16/32
    (_MAP, 2, 0), (_MAP, 4, 0),  # de df map 16/32
]  # fmt: skip
_LEAD += [(_FIXED, 0, 48)] * 0x20  # negative fixint: -32..-6 are not cached


def prescan(data: bytes, decoding: Decoding, *, what: str = "frame") -> None:
    """Walk the structure of one msgpack value without building it, and refuse (with
    :class:`ProtocolError` naming the limit) one that breaks ``decoding``'s limits: nesting, the
    length of a str or bin, or the estimated cost of its Python objects.

    msgpack-python can bound each array's length but neither the nesting nor the total: a frame
    of nested or sibling empty containers costs 64 to 192 bytes of memory per byte of frame. The
    walk skips over str and bin bodies, so its own cost is one step per element, and it stops at
    the first breach: at most ``budget / 48`` steps whatever the frame holds.
    """
    size = len(data)
    budget = decoding.budget(size)
    max_str = size if decoding.max_str is None else decoding.max_str
    max_bin = size if decoding.max_bin is None else decoding.max_bin
    pos = cost = 0
    left = 1  # values still to read at the current level
    stack: list[int] = []  # the levels above: values still to read at each
    lead = _LEAD
    while True:
        if not left:
            if not stack:
                break
            left = stack.pop()
            continue
        left -= 1
        if pos >= size:
            raise CorruptObject(f"{what} is truncated msgpack")
        byte = data[pos]
        shape, extra, value_cost = lead[byte]
        if shape == _FIXED:
            pos += 1 + extra
            cost += value_cost
            if cost > budget:
                break
            continue
        if shape == _EXT:  # never in dcsync's profile (and 0xc1 is not msgpack at all)
            raise CorruptObject(f"{what} is not valid msgpack: byte 0x{byte:02x} at {pos} (no ext types)")
        if extra:
            length = int.from_bytes(data[pos + 1 : pos + 1 + extra], "big")
        else:
            length = byte & (0x1F if shape == _STR else 0x0F)
        pos += 1 + extra
        if shape in (_STR, _BIN):
            cap = max_str if shape == _STR else max_bin
            if length > cap:
                kind = "str" if shape == _STR else "bin"
                raise ProtocolError(
                    f"{what}: a {kind} of {length} bytes is over the limit of {cap} for a {decoding.name}"
                )
            if shape == _BIN:
                cost += 48 + length
            elif data[pos : pos + length].isascii():
                cost += 64 + length
            else:
                cost += 96 + 4 * length
            pos += length
        else:
            count = length * 2 if shape == _MAP else length
            cost += 192 + 48 * length if shape == _MAP else 64 + 8 * length
            if count > size - pos:  # every value takes at least a byte
                raise CorruptObject(f"{what} is truncated msgpack")
            if len(stack) >= decoding.depth:
                raise ProtocolError(
                    f"{what}: nested deeper than {decoding.depth} levels, the limit for a {decoding.name}"
                )
            if count:
                stack.append(left)
                left = count
        if cost > budget:
            break
    if cost > budget:
        raise ProtocolError(
            f"{what}: decoding would take over {budget} bytes of memory, the limit for a "
            f"{decoding.name} of {size} bytes"
        )
    if pos > size:
        raise CorruptObject(f"{what} is truncated msgpack")
    if pos != size:
        raise CorruptObject(f"{what} has {size - pos} bytes of trailing garbage")
