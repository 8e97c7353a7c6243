"""Moving objects into a workspace: progress callbacks, quarantine per detector, and the stream of
objects a client sends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from dcsync.errors import (
    ProtocolError,
)
from dcsync.model.hashing import ObjectId
from dcsync.repo.reach import transfer_header
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.refs import LogRecord, remote_ref
from dcsync.sync.client import Connection
from dcsync.sync.protocol import chunk_size
from dcsync.sync.quarantine import Header, Quarantine
from dcsync.sync.replies import ObjectStart
from dcsync.workspace.config import (
    RemoteConfig,
)
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total): bytes for transfers."""


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


# -- receiving objects ---------------------------------------------------------------------------------
def _quarantine(ws: Workspace, det: str) -> Quarantine:
    return Quarantine(ws.root / CONFIG_DIR / "incoming" / det)


def receive_objects(
    conn: Connection,
    items: list[tuple[str, ObjectId, int]],
    sink: Callable[[str, Header], Any],
    progress: Progress,
) -> None:
    """Stream ``items`` (detector, id, size) from the peer into receivers made by ``sink``."""
    if not items:
        return
    total = sum(size for _, _, size in items)
    done = 0
    index = -1
    receiver = None
    try:
        for item in conn.get_objects([(det, oid) for det, oid, _ in items]):
            if isinstance(item, ObjectStart):
                index += 1
                header = item.header
                if index >= len(items) or header.oid != items[index][1]:
                    raise ProtocolError(f"{conn.peer} sent object {header.oid} out of order")
                receiver = sink(items[index][0], header)
            elif receiver is not None:
                receiver.write(item.data)
                done += len(item.data)
                progress("receiving", done, total)
            else:
                raise ProtocolError(f"{conn.peer} sent object bytes before an object header")
            if receiver is not None and receiver.complete:
                receiver.finish()
                receiver = None
    finally:
        if receiver is not None:
            receiver.abort()
    if index + 1 != len(items):
        raise ProtocolError(f"{conn.peer} sent {index + 1} of {len(items)} objects")


def _track(store: HDF5Store | ObjectStore, spec: RemoteConfig, new: ObjectId, command: str) -> None:
    """Move ``remotes/<name>`` to ``new``, a commit the remote is known to have, unless it is there."""
    ref = remote_ref(spec.name)
    if store.refs().get(ref) == new:
        return
    with store.writing():
        old = store.refs().get(ref)
        store.set_ref(ref, old, new, LogRecord(ref, old, new, command, f"{command} to {spec.url}"))


def _object_items(
    repo: Repository, oids: list[ObjectId], start: int, total: int, progress: Progress
) -> Iterator[dict[str, Any]]:
    """The upload items of ``oids``; progress counts on from ``start`` bytes of ``total``."""
    chunk = chunk_size()
    sent = start
    for oid in oids:
        header, pieces = transfer_header(repo.store, oid, chunk)
        yield {"h": header}
        for piece in pieces:
            for begin in range(0, len(piece), chunk):
                part = piece[begin : begin + chunk]
                sent += len(part)
                progress("sending", sent, total)
                yield {"c": part}
