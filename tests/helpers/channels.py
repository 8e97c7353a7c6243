"""Channel wrappers for the sync tests: each wraps a real channel (a ``dcsync serve`` subprocess,
SSH, or in-process) and forwards every byte, observing or breaking the stream on the way.

- :class:`RecordingChannel` counts bytes and decodes the client's frames, so a test can tell how
  many requests a command made and which objects it asked for or sent;
- :class:`CuttingChannel` breaks the connection after N bytes in one direction, as a dropped
  network link does at an arbitrary byte;
- :class:`CorruptingChannel` flips one byte inside the payload of one object chunk frame, in the
  download (server to client) or upload (client to server) direction;
- :func:`in_process` connects to a :class:`~dcsync.sync.server.Server` running in a thread.

Import as ``from helpers.channels import ...`` (tests/ is on sys.path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from dcsync.errors import ConnectionLost
from dcsync.model import wire
from dcsync.sync.client import Connection
from dcsync.sync.protocol import PREAMBLE
from dcsync.sync.server import Server
from dcsync.testing.channel import ForwardingChannel
from dcsync.transport.base import Channel
from dcsync.transport.local import InProcessChannel, ServeFunction

Direction = Literal["read", "write"]


class FrameParser:
    """Splits a byte stream into protocol frames (4-byte big-endian length, then msgpack)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "big")
            if len(self._buffer) < 4 + size:
                break
            frames.append(wire.unpack(bytes(self._buffer[4 : 4 + size])))
            del self._buffer[: 4 + size]
        return frames


def frame_bytes(value: Any) -> bytes:
    body = wire.pack(value)
    return len(body).to_bytes(4, "big") + body


class RecordingChannel(ForwardingChannel):
    """Counts bytes both ways and decodes what the client sends."""

    def __init__(self, inner: Channel) -> None:
        super().__init__(inner)
        self.bytes_read = 0
        self.bytes_written = 0
        self.frames: list[Any] = []
        self._parser = FrameParser()

    def read(self, n: int) -> bytes:
        data = self.inner.read(n)
        self.bytes_read += len(data)
        return data

    def write(self, data: bytes) -> None:
        self.bytes_written += len(data)
        self.frames.extend(self._parser.feed(data))
        self.inner.write(data)

    @property
    def methods(self) -> list[str]:
        """The requests sent, in order (``hello``, ``heads``, ...)."""
        return [f["m"] for f in self.frames if isinstance(f, dict) and "m" in f]

    @property
    def requested(self) -> list[str]:
        """Object ids asked for with ``get_objects``."""
        out = []
        for f in self.frames:
            if isinstance(f, dict) and f.get("m") == "get_objects":
                out.extend(str(oid) for _, oid in f["a"]["items"])
        return out

    @property
    def files_requested(self) -> list[list[Any]]:
        """[detector, offset, token] items asked for with ``get_files`` (whole-file transfers)."""
        out = []
        for f in self.frames:
            if isinstance(f, dict) and f.get("m") == "get_files":
                out.extend(f["a"]["items"])
        return out

    @property
    def uploaded(self) -> list[str]:
        """Object ids sent with ``put_objects``."""
        return [
            str(f["s"]["h"]["id"])
            for f in self.frames
            if isinstance(f, dict) and isinstance(f.get("s"), dict) and "h" in f["s"]
        ]


class CuttingChannel(ForwardingChannel):
    """Forwards ``limit`` bytes in ``direction``, then drops the connection (closes the inner one).

    Reads after the cut see end of stream; writes raise :class:`ConnectionLost`, as a broken pipe.
    """

    def __init__(self, inner: Channel, limit: int, direction: Direction) -> None:
        super().__init__(inner)
        self.limit = limit
        self.direction = direction
        self.count = 0
        self.cut = False

    def _drop(self) -> None:
        if not self.cut:
            self.cut = True
            self.inner.close()

    def read(self, n: int) -> bytes:
        if self.cut:
            return b""
        if self.direction == "read":
            left = self.limit - self.count
            if left <= 0:
                self._drop()
                return b""
            n = min(n, left)
        data = self.inner.read(n)
        self.count += len(data) if self.direction == "read" else 0
        return data

    def write(self, data: bytes) -> None:
        if self.cut:
            raise ConnectionLost(f"{self.describe()}: the connection was cut")
        if self.direction == "write":
            left = self.limit - self.count
            if len(data) > left:
                if left > 0:
                    self.inner.write(data[:left])
                self.count = self.limit
                self._drop()
                raise ConnectionLost(f"{self.describe()}: the connection was cut after {self.limit} bytes")
            self.count += len(data)
        self.inner.write(data)

    def close(self) -> None:
        if not self.cut:
            self.inner.close()


def _flip_chunk(frame: Any) -> bool:
    """Flip one byte in a chunk frame's payload in place; True if ``frame`` was one."""
    item = frame.get("s") if isinstance(frame, dict) else None
    if isinstance(item, dict) and isinstance(item.get("c"), bytes) and item["c"]:
        data = bytearray(item["c"])
        data[len(data) // 2] ^= 0x40
        item["c"] = bytes(data)
        return True
    return False


class CorruptingChannel(ForwardingChannel):
    """Flips a byte in the ``nth`` object chunk frame going in ``direction``; the rest passes."""

    def __init__(self, inner: Channel, direction: Direction, nth: int = 0) -> None:
        super().__init__(inner)
        self.direction = direction
        self.nth = nth
        self.seen = 0
        self.corrupted = False
        self.corrupted_id: str | None = None  # the object whose chunk was flipped
        self._current: str | None = None
        self._pending = bytearray()
        self._preamble = bytearray()
        self._in_frames = False

    def _maybe_flip(self, frame: Any) -> Any:
        item = frame.get("s") if isinstance(frame, dict) else None
        if isinstance(item, dict) and isinstance(item.get("h"), dict):
            self._current = str(item["h"].get("id"))
        if isinstance(item, dict) and isinstance(item.get("c"), bytes):
            if self.seen == self.nth and not self.corrupted:
                self.corrupted = _flip_chunk(frame)
                self.corrupted_id = self._current
            self.seen += 1
        return frame

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            data = self.inner.read(n - len(out))
            if not data:
                break
            out += data
        return bytes(out)

    def read(self, n: int) -> bytes:
        if self.direction != "read":
            return self.inner.read(n)
        if not self._pending:
            if not self._in_frames:  # the preamble line passes untouched
                data = self.inner.read(1)
                self._preamble += data
                if self._preamble.endswith(PREAMBLE) or not data:
                    self._in_frames = True
                return data
            head = self._read_exact(4)
            if len(head) < 4:
                return head
            body = self._read_exact(int.from_bytes(head, "big"))
            before = self.corrupted
            frame = self._maybe_flip(wire.unpack(body))
            self._pending += frame_bytes(frame) if self.corrupted and not before else head + body
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    def write(self, data: bytes) -> None:
        if self.direction != "write":
            self.inner.write(data)
            return
        self._pending += data
        out = bytearray()
        while len(self._pending) >= 4:
            size = int.from_bytes(self._pending[:4], "big")
            if len(self._pending) < 4 + size:
                break
            raw = bytes(self._pending[: 4 + size])
            del self._pending[: 4 + size]
            before = self.corrupted
            frame = self._maybe_flip(wire.unpack(raw[4:]))
            out += frame_bytes(frame) if self.corrupted and not before else raw
        if out:
            self.inner.write(bytes(out))


def serve_function(root: Path) -> ServeFunction:
    """A ``serve(read, write)`` for :class:`InProcessChannel` that closes its server afterwards."""

    def serve(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        server = Server(root)
        try:
            server.serve(read, write)
        finally:
            server.close()

    return serve


def in_process(root: Path, wrap: Callable[[Channel], Channel] = lambda c: c) -> Connection:
    """A connection to a :class:`Server` for ``root`` in a thread of this process."""
    return Connection(wrap(InProcessChannel(serve_function(root), description=f"in-process {root}")))
