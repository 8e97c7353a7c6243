"""The sync protocol: frames, the preamble, the hello, requests and errors (docs/protocol.md).

Everything crosses as frames: a 4-byte big-endian length, then that many bytes of msgpack (encoded
by :mod:`dcsync.model.wire`). Lengths are checked strictly against a cap before anything is allocated.
Framing reads and writes through plain callables (``read(n)``, ``write(b)``), never sockets.

A session: the server first writes the :data:`PREAMBLE` line, so text that a login script prints
on stdout is recognised and reported instead of misparsed. The client then sends ``hello`` with its
protocol range, hash algorithm and capabilities; the newer side judges compatibility. Then
requests, one at a time::

    request   {"i": n, "m": method, "a": {named arguments}}
    result    {"i": n, "r": value}
    error     {"i": n, "e": {"code": wire code, "message": text}}
    stream    {"i": n, "s": item}        (items of a streamed result or upload, before "r"/"end")
    upload    {"i": n, "end": true}      (ends a client stream)

Errors are rebuilt on the client as the same exception classes (by wire code, errors.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from dcsync.errors import (
    ConnectionLost,
    CorruptObject,
    DcsyncError,
    IncompatiblePeer,
    ProtocolError,
    RemoteError,
    UsageError,
    by_wire_code,
)
from dcsync.model import wire
from dcsync.model.hashing import ALGORITHM
from dcsync.model.limits import ITEM, Decoding

PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
PREAMBLE = b"DCSYNC-SERVE/1\n"
CAPABILITIES = ("atomic", "filter", "resume", "whole-file")
MAX_BANNER = 64 * 1024
KINDS = ("commit", "tree", "array", "text")

Read = Callable[[int], bytes]
Write = Callable[[bytes], None]


def _env_bytes(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a whole number of bytes") from None
    if value < 1:
        raise UsageError(f"{name}={text!r} must be positive")
    return value


def frame_limit() -> int:
    """The largest frame either side accepts (``DCSYNC_MAX_FRAME``, default 16 MiB)."""
    return _env_bytes("DCSYNC_MAX_FRAME", 16 * 1024 * 1024)


def chunk_size() -> int:
    """Payload bytes per stream frame (``DCSYNC_CHUNK``, default 1 MiB): bounds memory per frame."""
    return max(1, min(_env_bytes("DCSYNC_CHUNK", 1024 * 1024), frame_limit() // 2))


def read_exact(read: Read, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = read(n - got)
        if not part:
            raise ConnectionLost(f"connection closed after {got} of {n} bytes")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def write_frame(write: Write, value: Any, *, limit: int | None = None) -> None:
    body = wire.pack(value)
    cap = frame_limit() if limit is None else limit
    if len(body) > cap:
        raise ProtocolError(f"refusing to send a frame of {len(body)} bytes (limit {cap})")
    if len(body) < 65536:
        write(len(body).to_bytes(4, "big") + body)
    else:  # two writes rather than a copy of a bulk frame
        write(len(body).to_bytes(4, "big"))
        write(body)


def bytes_frame_head(rid: int, size: int) -> bytes:
    """The length and msgpack prefix of the frame ``{"i": rid, "s": {"c": <size bytes>}}``, for a
    sender that follows it with the bytes themselves from a file (``sendfile``), never building the
    frame in memory. The receiver sees exactly what :func:`write_frame` would have sent."""
    if size > frame_limit() // 2:
        raise ProtocolError(f"refusing to send a chunk of {size} bytes (limit {frame_limit() // 2})")
    prefix = wire.pack({"i": rid, "s": {"c": b""}})[: -len(wire.bin_header(0))] + wire.bin_header(size)
    return (len(prefix) + size).to_bytes(4, "big") + prefix


def read_frame(read: Read, *, limit: int | None = None, decoding: Decoding = ITEM) -> Any:
    """One frame, decoded within the limits of the message type the reader expects next
    (:mod:`dcsync.model.limits`): its size is checked before the body is read, its structure before it
    is decoded."""
    cap = frame_limit() if limit is None else limit
    if decoding.frame is not None:
        cap = min(cap, decoding.frame)
    size = int.from_bytes(read_exact(read, 4), "big")
    if size > cap:
        raise ProtocolError(
            f"peer sent a frame of {size} bytes, over the limit of {cap} for a {decoding.name}"
        )
    body = read_exact(read, size)
    try:
        return wire.unpack(body, limit=cap, what="frame", decoding=decoding)
    except CorruptObject as exc:
        raise ProtocolError(f"peer sent a malformed frame: {exc}") from exc


START_HINT = (
    "\n(the remote runs 'dcsync serve': it needs dcsync on its PATH for non-interactive logins, "
    "or the command named with --remote-dcsync, e.g. --remote-dcsync '/opt/venv/bin/dcsync')"
)


def read_preamble(read: Read, *, peer: str, stderr: Callable[[], str] = lambda: "") -> None:
    """Skip to the server's preamble line; anything before it is a banner, reported as such."""
    seen = bytearray()
    while True:
        byte = read(1)
        if not byte:
            # Channels hold the peer's whole stderr by the time they report the end of stream.
            detail = stderr().strip()
            if not seen and detail:
                raise RemoteError(f"{peer}: the remote dcsync did not start: {detail[-2000:]}{START_HINT}")
            raise ConnectionLost(
                f"{peer}: connection closed before the dcsync server answered"
                + (f" (it said: {detail[-2000:]})" if detail else " (it said nothing on stderr)")
                + ("" if seen else START_HINT)
            )
        seen += byte
        if seen.endswith(PREAMBLE):
            banner = bytes(seen[: -len(PREAMBLE)])
            if banner:
                text = banner.decode("utf-8", "replace").strip()
                raise ProtocolError(
                    f"{peer}: the remote printed text on stdout before dcsync started (a login "
                    f"banner or .bashrc output?); make it quiet for non-interactive shells: {text[:500]!r}"
                )
            return
        if len(seen) > MAX_BANNER:
            raise ProtocolError(f"{peer}: not a dcsync server (no preamble in the first {MAX_BANNER} bytes)")


def hello_args(client: str, user: str, host: str) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "min_protocol": MIN_PROTOCOL_VERSION,
        "hash": ALGORITHM,
        "capabilities": list(CAPABILITIES),
        "software": client,
        "user": user,
        "host": host,
    }


def negotiate_version(peer: Mapping[str, Any], *, peer_name: str, self_name: str = "this side") -> int:
    """The protocol version both sides speak; the newer side's range decides.

    ``self_name`` names this side in the message, which may cross the wire (the server says "the
    server", so the client's user is told which machine to upgrade).
    """
    try:
        their_max, their_min = peer["protocol"], peer["min_protocol"]
        their_hash = peer["hash"]
    except (KeyError, TypeError) as exc:
        raise ProtocolError(f"{peer_name} sent a malformed hello") from exc
    if not isinstance(their_hash, str):
        raise ProtocolError(f"{peer_name} sent a malformed hello")
    try:
        their_max = whole_number(their_max, "protocol", 0, 1 << 31)
        their_min = whole_number(their_min, "min_protocol", 0, 1 << 31)
    except ProtocolError as exc:
        raise ProtocolError(f"{peer_name} sent a malformed hello: {exc.message}") from None
    if their_hash != ALGORITHM:
        raise IncompatiblePeer(
            f"{peer_name} uses the hash algorithm {their_hash[:40]!r}; {self_name} uses {ALGORITHM}"
        )
    chosen: int = min(PROTOCOL_VERSION, their_max)
    if chosen < max(MIN_PROTOCOL_VERSION, their_min):
        older = peer_name if their_max < PROTOCOL_VERSION else self_name
        raise IncompatiblePeer(
            f"{peer_name} speaks protocol {their_min}..{their_max}, {self_name} "
            f"{MIN_PROTOCOL_VERSION}..{PROTOCOL_VERSION}: upgrade dcsync on {older}"
        )
    return chosen


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def whole_number(value: Any, field: str, lo: int = 0, hi: int = INT64_MAX) -> int:
    """A peer's integer, checked before use: an int (not a bool) in ``[lo, hi]``, else a
    :class:`ProtocolError` naming ``field`` (msgpack carries up to 2**64 - 1, more than a file
    offset, a time or a size can be here: unchecked, it surfaced as an OverflowError)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"{field} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{field} is {value}, outside {lo}..{hi}")
    return value


def error_to_wire(exc: DcsyncError) -> dict[str, str]:
    return {"code": exc.wire_code, "message": exc.message}


def error_from_wire(value: Any, *, peer: str) -> DcsyncError:
    """Rebuild a peer's error as the same class; unknown codes become :class:`RemoteError`."""
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return ProtocolError(f"{peer} sent a malformed error")
    cls = by_wire_code().get(str(value.get("code")), RemoteError)
    return cls(value["message"])


class ArgSpec:
    """Named-argument checking for one method: types, required names, nothing unknown."""

    def __init__(self, **fields: tuple[type | tuple[type, ...], bool]) -> None:
        self.fields = fields

    def check(self, method: str, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise ProtocolError(f"{method}: arguments must be a map of names")
        unknown = set(args) - set(self.fields)
        if unknown:
            names = sorted(str(name)[:60] for name in unknown)  # str and bin keys: both are legal msgpack
            raise ProtocolError(f"{method}: unknown argument(s) {names[:10]}")
        for name, (types, required) in self.fields.items():
            value = args.get(name)
            if value is None:  # absent, or nil: the default of an optional argument
                if required:
                    raise ProtocolError(f"{method}: missing argument {name!r}")
                continue
            wrong_bool = isinstance(value, bool) and bool not in _tuple(types)
            if wrong_bool or not isinstance(value, types):
                raise ProtocolError(f"{method}: argument {name!r} has the wrong type")
        return {name: value for name, value in args.items() if value is not None}


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
