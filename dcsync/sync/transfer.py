"""Objects in flight, written once for both ends of a transfer.

An object crosses the wire as stream items: a header ``{"h": {...}}`` (id, kind, size; dtype and
shape for arrays: :class:`~dcsync.sync.quarantine.Header`), then its bytes in chunks
``{"c": bytes}`` of at most :func:`~dcsync.sync.protocol.chunk_size` each.

- :class:`ObjectSender` turns a store and object ids into those items (the server answering
  ``get_objects``, the client uploading with ``put_objects``);
- :class:`ObjectReceiver` takes them in, one object at a time, into receivers a *sink* makes (a
  quarantine's, which hashes every byte and keeps only objects that match their ids), refusing
  items out of place, and aborting a half-received object whatever stops the transfer;
- :class:`Meter` counts the bytes for a progress callback on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from dcsync.errors import ProtocolError
from dcsync.model.fields import BadField, mapping, object_id
from dcsync.model.hashing import ObjectId
from dcsync.repo.reach import transfer_header
from dcsync.store.base import ObjectStore
from dcsync.store.refs import LogRecord, remote_ref
from dcsync.sync.protocol import chunk_size
from dcsync.sync.quarantine import Header, Quarantine, incoming_dir
from dcsync.workspace.config import RemoteConfig
from dcsync.workspace.workspace import Workspace

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): bytes for transfers."""

Item = dict[str, Any]
"""One stream item on the wire: an object's header ``{"h": ...}`` or a chunk of its bytes ``{"c": ...}``."""


@dataclass(frozen=True)
class ObjectStart:
    """A stream item that begins an object: its header, checked (:class:`Header`)."""

    header: Header


@dataclass(frozen=True)
class Chunk:
    """A stream item carrying the next bytes of the object (or file) in flight."""

    data: bytes


def object_item(value: Any) -> ObjectStart | Chunk:
    """One item of an object stream, as it came off the wire: ``{"h": header}`` or ``{"c": bytes}``,
    nothing else; a field that breaks its rule is a :class:`~dcsync.model.fields.BadField`."""
    w = mapping(value, "a stream item")
    if len(w) == 1 and "c" in w:
        if not isinstance(w["c"], bytes):
            raise BadField(f"a chunk must be bytes, not {type(w['c']).__name__}")
        return Chunk(w["c"])
    if len(w) == 1 and "h" in w:
        object_id(
            mapping(w["h"], "a header").get("id"), "the id of a header"
        )  # named; Header checks the rest
        return ObjectStart(Header(w["h"]))
    keys = sorted(str(k)[:20] for k in w)
    raise BadField(f"a stream item must be a header 'h' or a chunk 'c', not one with {keys[:5]}")


def no_progress(phase: str, done: int, total: int) -> None:
    """The progress callback of a caller that shows none."""


@dataclass
class Meter:
    """Bytes moved so far of ``total``, reported to ``progress`` as ``phase`` after each chunk."""

    total: int = 0
    progress: Progress = no_progress
    phase: str = "receiving"
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        self.progress(self.phase, self.done, self.total)


class ObjectSender:
    """The objects of one store as stream items (a header, then chunks), read in bounded pieces so
    that memory stays at a chunk whatever the object's size."""

    def __init__(self, store: ObjectStore, meter: Meter | None = None) -> None:
        self.store = store
        self.meter = meter
        self.chunk = chunk_size()

    def items(self, oids: Iterable[ObjectId]) -> Iterator[Item]:
        for oid in oids:
            header, pieces = transfer_header(self.store, oid, self.chunk)
            yield {"h": header}
            for piece in pieces:
                for start in range(0, len(piece), self.chunk):
                    part = piece[start : start + self.chunk]
                    if self.meter is not None:
                        self.meter.add(len(part))
                    yield {"c": part}


class Receiving(Protocol):
    """One object arriving (:class:`~dcsync.sync.quarantine.Receiver` and in-memory ones):
    ``finish`` checks it against its id and keeps it, ``abort`` drops what came of it."""

    @property
    def complete(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


Sink = Callable[[Header], Receiving]


class ObjectReceiver:
    """Takes stream items into receivers that ``sink`` makes, one object at a time.

    Use as a context manager: leaving it, by an error or a cut stream, aborts the object under
    way (its partial bytes go; the objects finished before it stay). ``received`` counts the
    objects finished; :meth:`end` refuses a stream that stopped inside an object.
    """

    def __init__(self, sink: Sink, *, peer: str, meter: Meter | None = None) -> None:
        self.sink = sink
        self.peer = peer
        self.meter = meter
        self.received = 0
        self._current: Receiving | None = None

    def __enter__(self) -> ObjectReceiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._current is not None:
            self._current.abort()
            self._current = None

    def feed(self, item: ObjectStart | Chunk) -> None:
        """One stream item, decoded by :func:`object_item`."""
        if isinstance(item, ObjectStart):
            self.start(item.header)
        else:
            self.write(item.data)

    def start(self, header: Header) -> None:
        """The next object begins: the previous one must have ended."""
        if self._current is not None:
            raise ProtocolError(f"{self.peer} began object {header.oid} before the last one ended")
        self._current = self.sink(header)
        self._finish_if_complete()  # an empty object is complete at its header

    def write(self, data: bytes) -> None:
        """Bytes of the object under way."""
        if self._current is None:
            raise ProtocolError(f"{self.peer} sent object bytes before an object header")
        self._current.write(data)
        if self.meter is not None:
            self.meter.add(len(data))
        self._finish_if_complete()

    def _finish_if_complete(self) -> None:
        current = self._current
        if current is not None and current.complete:
            self._current = None
            try:
                current.finish()
            except BaseException:
                current.abort()
                raise
            self.received += 1

    def end(self) -> None:
        """The stream ended: an object still under way was cut short."""
        if self._current is not None:
            raise ProtocolError(f"{self.peer} ended the stream inside an object")


# -- the client's side -----------------------------------------------------------------------------------


class ObjectSource(Protocol):
    """What :func:`receive_objects` asks of a connection (:class:`~dcsync.sync.client.Connection`)."""

    peer: str

    def get_objects(self, pairs: Sequence[tuple[str, ObjectId]]) -> Iterator[ObjectStart | Chunk]: ...


def quarantine_of(ws: Workspace, det: str) -> Quarantine:
    """Where a fetch into ``ws`` receives the objects of ``det``."""
    return Quarantine(incoming_dir(ws) / det)


def receive_objects(
    conn: ObjectSource,
    items: list[tuple[str, ObjectId, int]],
    sink: Callable[[str, Header], Receiving],
    progress: Progress,
) -> None:
    """Receive ``items`` (detector, id, size) from the peer, in that order, into receivers made
    by ``sink(detector, header)``."""
    if not items:
        return
    order = iter(items)

    def start(header: Header) -> Receiving:
        det, oid, _ = next(order, ("", None, 0))
        if header.oid != oid:
            raise ProtocolError(f"{conn.peer} sent object {header.oid} out of order")
        return sink(det, header)

    meter = Meter(sum(size for _, _, size in items), progress)
    with ObjectReceiver(start, peer=conn.peer, meter=meter) as receiver:
        for item in conn.get_objects([(det, oid) for det, oid, _ in items]):
            receiver.feed(item)
        receiver.end()
    if receiver.received != len(items):
        raise ProtocolError(f"{conn.peer} sent {receiver.received} of {len(items)} objects")


def track_remote(store: ObjectStore, spec: RemoteConfig, new: ObjectId, command: str) -> None:
    """Move ``remotes/<name>`` to ``new``, a commit the remote is known to have, unless it is there."""
    ref = remote_ref(spec.name)
    if store.refs().get(ref) == new:
        return
    with store.writing():
        old = store.refs().get(ref)
        store.set_ref(ref, old, new, LogRecord(ref, old, new, command, f"{command} to {spec.url}"))
