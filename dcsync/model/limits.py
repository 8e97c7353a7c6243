"""The bounds a peer's data must stay within, in one place: what one protocol frame may make the
decoder allocate, per message type, and how large a received tree may be.

A hostile peer chooses its bytes to cost the receiver as much as possible: one 16 MiB frame of
empty msgpack arrays became 1.27 GB of Python lists, and a tree of 20,000 versions kept a
detector locked for seconds. Every limit here is checked *before* the work it bounds (the frame
is pre-scanned before msgpack builds anything, a tree's entries are counted before they are
walked) and a breach is a :class:`~dcsync.errors.ProtocolError` naming the limit
(docs/protocol.md, "Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

# -- trees ---------------------------------------------------------------------------------------
# Far above anything a detector holds (a few dozen ctypes, a few hundred ranges and versions per
# range over a detector's life), far below what makes a receiver slow (docs/format.md).
MAX_CTYPES_PER_ROOT = 1_000
MAX_RANGES_PER_CTYPE = 10_000
MAX_VERSIONS_PER_RANGE = 5_000
# Checked where a peer's tree arrives (:func:`dcsync.model.objects.check_tree_size`), which reads
# them at each call: a benchmark raises them.


# -- frames --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decoding:
    """What decoding one msgpack value of one message type may cost.

    ``cost_per_byte`` and ``cost_extra`` bound the decoded Python objects: a frame of ``n`` bytes
    may build at most ``cost_per_byte * n + cost_extra`` bytes of them, as estimated (from above)
    by :func:`dcsync.model.wire.unpack`'s pre-scan. ``frame`` caps the body itself (``None``: the
    session's frame cap, ``DCSYNC_MAX_FRAME``).
    """

    name: str
    frame: int | None
    depth: int
    max_str: int | None  # None: up to the frame's size
    max_bin: int | None
    cost_per_byte: int
    cost_extra: int

    def budget(self, size: int) -> int:
        return self.cost_per_byte * size + self.cost_extra


# The first request of a session (hello) and the server's answer to it: small, before anyone is
# known to be a dcsync peer at all.
HELLO = Decoding(
    "hello", frame=64 * 1024, depth=4, max_str=4096, max_bin=0, cost_per_byte=8, cost_extra=64 * 1024
)
# The server's answer to hello, read by a client: as small, but an error in its place may carry a
# long message (an access refusal names the paths a server may serve, and the path asked for).
HELLO_ANSWER = Decoding(
    "hello answer",
    frame=1024 * 1024,
    depth=4,
    max_str=256 * 1024,
    max_bin=0,
    cost_per_byte=8,
    cost_extra=64 * 1024,
)
# Requests after hello, and one-result replies: lists can fill a frame legitimately (a `have`
# answer's booleans cost 8 bytes of list per byte, a `negotiate` answer about 7 by the estimate),
# so they get 10 per byte.
REQUEST = Decoding(
    "request", frame=None, depth=8, max_str=None, max_bin=0, cost_per_byte=10, cost_extra=64 * 1024
)
REPLY = Decoding(
    "reply", frame=None, depth=8, max_str=None, max_bin=0, cost_per_byte=10, cost_extra=64 * 1024
)
# Stream items (both ways: put_objects uploads, get_objects and get_files answers) and the result
# or error that ends a stream: one header or one chunk of bytes, which decodes to itself.
ITEM = Decoding(
    "stream item", frame=None, depth=6, max_str=64 * 1024, max_bin=None, cost_per_byte=1, cost_extra=64 * 1024
)
