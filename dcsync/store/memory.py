"""An in-memory store: the reference implementation of :class:`ObjectStore`, used by tests as the
model the HDF5 store must agree with, and by anything that wants a scratch repository."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from dcsync.errors import ObjectNotFound
from dcsync.model.hashing import ObjectId
from dcsync.model.objects import Payload
from dcsync.store.base import ObjectKind, ObjectStore
from dcsync.store.refs import LogRecord


class MemoryStore(ObjectStore):
    def __init__(self) -> None:
        super().__init__()
        self._payloads: dict[ObjectId, Payload] = {}
        self._bodies: dict[ObjectId, tuple[ObjectKind, bytes]] = {}
        self._refs: dict[str, ObjectId] = {}
        self._log: list[LogRecord] = []
        self._lock = threading.RLock()

    @property
    def where(self) -> str:
        return "memory"

    def has(self, oid: ObjectId) -> bool:
        return oid in self._payloads or oid in self._bodies

    def kind_of(self, oid: ObjectId) -> ObjectKind:
        if oid in self._payloads:
            return "text" if isinstance(self._payloads[oid], str) else "array"
        if oid in self._bodies:
            return self._bodies[oid][0]
        raise ObjectNotFound(f"object {oid} not found in memory")

    def _load_payload(self, oid: ObjectId) -> Payload:
        try:
            value = self._payloads[oid]
        except KeyError:
            raise ObjectNotFound(f"object {oid} not found in memory") from None
        return value if isinstance(value, str) else value.copy()

    def _load_body(self, oid: ObjectId) -> tuple[ObjectKind, bytes]:
        try:
            return self._bodies[oid]
        except KeyError:
            raise ObjectNotFound(f"object {oid} not found in memory") from None

    def object_ids(self) -> Iterator[ObjectId]:
        yield from list(self._payloads)
        yield from list(self._bodies)

    def refs(self) -> dict[str, ObjectId]:
        return dict(self._refs)

    def log(self, last: int | None = None) -> list[LogRecord]:
        return list(self._log if last is None else self._log[-last:] if last > 0 else [])

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._lock:
            saved = (dict(self._payloads), dict(self._bodies), dict(self._refs), list(self._log))
            try:
                yield
            except BaseException:
                self._payloads, self._bodies, self._refs, self._log = saved
                raise

    def _store_payload(self, oid: ObjectId, value: Payload) -> None:
        self._payloads[oid] = value if isinstance(value, str) else np.array(value, copy=True)

    def _store_body(self, oid: ObjectId, kind: ObjectKind, body: bytes) -> None:
        self._bodies[oid] = (kind, bytes(body))

    def _store_ref(self, name: str, new: ObjectId | None, record: LogRecord) -> None:
        if new is None:
            self._refs.pop(name, None)
        else:
            self._refs[name] = new
        self._log.append(copy.copy(record))
