"""The store abstraction: objects, refs and log of one detector repository, behind one interface.

Two real implementations: :class:`~dcsync.store.hdf5.HDF5Store` (the ``.h5`` file) and
:class:`~dcsync.store.memory.MemoryStore` (for tests and as the model the HDF5 store is compared
with). Every read re-checks the object's hash; decoded trees and commits are cached by id, which
is always safe because objects are immutable. Writes happen only inside ``with store.writing():``,
which is one atomic transaction: all of it lands or none of it does.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TypeVar

import numpy as np

from dcsync.errors import CorruptObject, InputError, RefConflict
from dcsync.model.hashing import ALGORITHM, ObjectId, canonical_array, hash_array, hash_bytes, hash_text
from dcsync.model.objects import (
    Commit,
    Obj,
    Payload,
    Tree,
    Via,
    decode,
    encode,
    expect,
    kind_name,
    wrong_kind,
)
from dcsync.store.refs import LogRecord, check_ref

ObjectKind = Literal["array", "text", "tree", "commit"]
T = TypeVar("T")
_CACHE_ENTRIES = 4096
# Decoded trees and commits, shared by every store in the process: an id names one content
# forever, so a hit is always right, and reopening a repository does not decode its trees again.
_DECODED: OrderedDict[ObjectId, Tree | Commit] = OrderedDict()


def verify_payload(oid: ObjectId, value: Payload, where: str) -> Payload:
    actual = hash_text(value) if isinstance(value, str) else hash_array(value)
    if actual != oid:
        raise CorruptObject(f"object {oid} in {where} is corrupt: its content hashes to {actual}")
    return value


class ObjectStore(ABC):
    """Objects, refs and log of one detector repository."""

    hash_algorithm = ALGORITHM

    def __init__(self) -> None:
        self._cache = _DECODED

    @property
    @abstractmethod
    def where(self) -> str:
        """How errors name this store (a path, or 'memory')."""

    # -- lifetime and consistent reads: what code that holds any store may ask of it ------------------
    def close(self) -> None:  # noqa: B027 - optional: most stores hold nothing open
        """Let go of what the store holds open (a file's handles); it may be used again after,
        reopening what it needs. Nothing to do for a store that holds nothing open."""

    def consistent(self, read: Callable[[], T]) -> T:
        """Run ``read``, a series of reads that must see one state of the store; a backend that
        another process may change under it (a file) retries a read torn by a commit. In a store
        only this process changes, every read is consistent."""
        return read()

    # -- low-level reads, implemented per backend (no verification) --------------------------------
    @abstractmethod
    def has(self, oid: ObjectId) -> bool: ...

    @abstractmethod
    def kind_of(self, oid: ObjectId) -> ObjectKind: ...

    @abstractmethod
    def _load_payload(self, oid: ObjectId) -> Payload: ...

    @abstractmethod
    def _load_body(self, oid: ObjectId) -> tuple[ObjectKind, bytes]: ...

    @abstractmethod
    def object_ids(self) -> Iterator[ObjectId]: ...

    @abstractmethod
    def refs(self) -> dict[str, ObjectId]: ...

    @abstractmethod
    def log(self, last: int | None = None) -> list[LogRecord]:
        """The log, oldest first; ``last`` keeps only the newest records."""

    # -- low-level writes (only inside writing()) -----------------------------------------------
    @abstractmethod
    def writing(self) -> contextlib.AbstractContextManager[None]:
        """One atomic transaction: exclusive, and all-or-nothing."""

    @abstractmethod
    def _store_payload(self, oid: ObjectId, value: Payload) -> None: ...

    @abstractmethod
    def _store_body(self, oid: ObjectId, kind: ObjectKind, body: bytes) -> None: ...

    @abstractmethod
    def _store_ref(self, name: str, new: ObjectId | None, record: LogRecord) -> None: ...

    # -- verified, shared logic --------------------------------------------------------------------
    def read_payload(self, oid: ObjectId) -> Payload:
        """A payload, hash-checked; an id of a tree or commit is :class:`CorruptObject` (a version
        entry pointing at one), never its bytes read as an array."""
        if self.kind_of(oid) not in ("array", "text"):
            raise wrong_kind(oid, self.kind_name_of(oid), "payload", where=self.where)
        return verify_payload(oid, self._load_payload(oid), self.where)

    def kind_name_of(self, oid: ObjectId) -> str:
        """What ``oid`` is, as :func:`~dcsync.model.objects.kind_name` says it (a tree's own kind too),
        for the messages that refuse it."""
        kind = self.kind_of(oid)
        return kind_name(self.read_object(oid)) if kind in ("tree", "commit") else kind_name(kind)

    def read_object(self, oid: ObjectId, *, fresh: bool = False) -> Tree | Commit:
        """A tree or commit, hash-checked; ``fresh`` bypasses the cache (``verify`` reads the disk)."""
        cached = None if fresh else self._cache.get(oid)
        if cached is not None:
            self._cache.move_to_end(oid)
            return cached
        kind, body = self._load_body(oid)
        if hash_bytes(kind, body) != oid:
            raise CorruptObject(f"object {oid} in {self.where} is corrupt: its bytes do not match its id")
        obj = decode(kind, body, oid)
        self._cache[oid] = obj
        if len(self._cache) > _CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return obj

    def read_as(
        self, oid: ObjectId, expected: type[Obj], via: Via | None = None, *, peer: str | None = None
    ) -> Obj:
        """A tree or commit of the kind its reference promises (``via`` names the reference), for
        code that relies on that kind: a payload or another kind of tree is :class:`CorruptObject`
        naming both kinds, or :class:`ProtocolError` when ``peer`` sent the reference."""
        if oid not in self._cache:
            kind = self.kind_of(oid)
            if kind not in ("tree", "commit"):
                raise wrong_kind(
                    oid, kind_name(kind), kind_name(expected), where=self.where, via=via, peer=peer
                )
        return expect(self.read_object(oid), expected, oid, where=self.where, via=via, peer=peer)

    def read_commit(self, oid: ObjectId, via: Via | None = None) -> Commit:
        return self.read_as(oid, Commit, via)

    def put_payload(self, value: Payload, *, known_id: ObjectId | None = None) -> ObjectId:
        """Store a payload once; identical content is never stored twice.

        ``known_id`` skips re-hashing a value the caller already hashed in canonical form.
        """
        if known_id is not None:
            if not self.has(known_id):
                self._store_payload(known_id, value)
            return known_id
        if isinstance(value, str):
            if "\0" in value:
                raise InputError("text payloads may not contain NUL characters")
            oid = hash_text(value)
        else:
            value = canonical_array(np.asarray(value))
            oid = hash_array(value)
        if not self.has(oid):
            self._store_payload(oid, value)
        return oid

    def put_array_rows(
        self, oid: ObjectId, dtype: np.dtype, shape: tuple[int, ...], rows: Iterable[np.ndarray]
    ) -> None:
        """Store an array that arrives in consecutive C-order pieces along its first axis (from a
        transfer), checking its id as it goes; memory stays at one piece where the backend can."""
        if self.has(oid):
            return
        arr = np.empty(shape, dtype)
        flat = arr.reshape(-1)
        pos = 0
        for piece in rows:
            flat[pos : pos + piece.size] = piece.reshape(-1)
            pos += piece.size
        if pos != arr.size:
            raise CorruptObject(f"object {oid}: got {pos} of {arr.size} elements")
        self._store_payload(oid, verify_payload(oid, arr, self.where))

    def payload_info(self, oid: ObjectId) -> tuple[np.dtype | None, tuple[int, ...]]:
        """dtype and shape of an array payload (None, () for text), without reading it where the
        backend can."""
        value = self.read_payload(oid)
        if isinstance(value, str):
            return None, ()
        return value.dtype, tuple(value.shape)

    def iter_payload(self, oid: ObjectId, chunk_bytes: int) -> Iterator[np.ndarray | str]:
        """A payload in consecutive pieces along its first axis of about ``chunk_bytes`` each (or
        whole, for text and 0-d arrays), for streaming without holding it all."""
        value = self.read_payload(oid)
        if isinstance(value, str) or value.ndim == 0:
            yield value
            return
        step = max(1, chunk_bytes // max(1, value[0:1].nbytes)) if value.shape[0] else 1
        for start in range(0, max(value.shape[0], 1), step):
            yield value[start : start + step]

    def put_body(self, oid: ObjectId, kind: ObjectKind, body: bytes, *, peer: str | None = None) -> None:
        """Store a tree or commit received as bytes, after checking the bytes against the id and
        the validity rules (a rule broken is the :class:`ProtocolError` of ``peer`` if it sent them)."""
        if kind not in ("tree", "commit") or hash_bytes(kind, body) != oid:
            raise CorruptObject(f"object {oid} ({kind}) does not match its id; nothing was stored")
        decode(kind, body, oid, peer=peer)  # refuse what breaks the rules before it is stored
        if not self.has(oid):
            self._store_body(oid, kind, body)

    def body_of(self, oid: ObjectId) -> tuple[ObjectKind, bytes]:
        """A tree's or commit's canonical bytes, hash-checked (what crosses the wire)."""
        kind, body = self._load_body(oid)
        if hash_bytes(kind, body) != oid:
            raise CorruptObject(f"object {oid} in {self.where} is corrupt: its bytes do not match its id")
        return kind, body

    def put_object(self, obj: Tree | Commit) -> ObjectId:
        kind, body = encode(obj)
        oid = hash_bytes(kind, body)
        if not self.has(oid):
            self._store_body(oid, kind, body)
        self._cache[oid] = obj
        return oid

    def set_ref(self, name: str, expected: ObjectId | None, new: ObjectId | None, record: LogRecord) -> None:
        """Compare-and-swap a ref and log the move; :class:`RefConflict` if it moved meanwhile."""
        check_ref(name)
        current = self.refs().get(name)
        if current != expected:
            raise RefConflict(
                f"{name} in {self.where} moved from {expected or 'nothing'} to {current or 'nothing'} "
                "meanwhile; nothing was changed"
            )
        self._store_ref(name, new, record)

    def head(self) -> ObjectId | None:
        return self.refs().get("HEAD")
