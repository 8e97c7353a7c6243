"""Quarantine: objects received from a peer, each verified against its id as it arrives, kept on
disk until the refs that need them move.

Nothing in quarantine is visible in a repository: a transfer cut at any byte leaves only complete,
verified objects here (partial ones are ``.part`` files, removed once their writer is gone), and running
the same command again skips what already arrived, because both sides count quarantined objects as
present. Moving refs imports the needed objects into the repository file in the same crash-safe
transaction, then the quarantine is cleared.

Layout: ``<dir>/<id>.<kind>``; arrays as ``.npy`` (numpy's format, read back slice by slice),
text as UTF-8, trees and commits as their msgpack bytes. Everything received waits under one
directory, :func:`incoming_dir` (``.dcsync/incoming``): a fetch uses ``<incoming>/<det>/``, a whole
file ``<incoming>/<det>.h5.part``, and a server gives each push session its own,
``<incoming>/<det>/<session>/`` (:class:`Sessions`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import numpy as np

from dcsync.errors import AccessDenied, CorruptObject, LockError, ProtocolError, StorageFull
from dcsync.model.fields import COUNT_MAX, MAX_NDIM
from dcsync.model.hashing import (
    ARRAY_DTYPES,
    ID_HEX_LEN,
    ObjectId,
    dtype_string,
    hash_bytes,
    hasher,
    is_object_id,
)
from dcsync.model.objects import Commit, Payload, Tree, decode
from dcsync.rawio import FULL_ERRNOS
from dcsync.store.base import ObjectKind, ObjectStore, verify_payload
from dcsync.store.claims import PayloadFacts
from dcsync.store.locking import FileLock, break_lock, lock_status
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

_KINDS: tuple[ObjectKind, ...] = ("array", "text", "tree", "commit")
_SUFFIX = {"array": ".npy", "text": ".text", "tree": ".tree", "commit": ".commit"}
MAX_BODY = 64 * 1024 * 1024  # trees, commits and text are decoded in memory: keep them bounded
_DTYPES = ARRAY_DTYPES  # the array dtypes a header may announce, by their exact wire string


def incoming_dir(ws: Workspace) -> Path:
    """Where what a workspace receives waits until refs that need it move (``.dcsync/incoming``)."""
    return ws.root / CONFIG_DIR / "incoming"


def _is_count(value: Any) -> TypeGuard[int]:
    """A size or a dimension: a whole number that fits an int64 (what numpy and the OS take)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= COUNT_MAX


class Header:
    """An incoming object's announced shape, checked before a byte of it is accepted."""

    def __init__(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise ProtocolError("object header must be a map")
        oid, kind, size = value.get("id"), value.get("k"), value.get("n")
        if not is_object_id(oid) or kind not in _KINDS or not _is_count(size):
            raise ProtocolError(f"malformed object header {str(value)[:200]}")
        self.oid = ObjectId(str(oid))
        self.kind: ObjectKind = kind
        self.size = size
        self.dtype = np.dtype("u1")
        self.shape: tuple[int, ...] = ()
        if kind == "array":
            dtype, shape = value.get("d"), value.get("s")
            if not isinstance(dtype, str) or dtype not in _DTYPES:
                raise ProtocolError(f"object {oid}: unsupported dtype {str(dtype)[:40]!r}")
            if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_count(x) for x in shape):
                raise ProtocolError(f"object {oid}: bad shape {str(shape)[:80]}")
            self.dtype = _DTYPES[dtype]
            self.shape = tuple(shape)
            if int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize != size:
                raise ProtocolError(f"object {oid}: {size} bytes do not fit {self.dtype} {self.shape}")
        elif size > MAX_BODY:
            raise ProtocolError(f"object {oid}: a {kind} of {size} bytes is over the limit")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.oid, "k": self.kind, "n": self.size}
        if self.kind == "array":
            out["d"] = dtype_string(self.dtype)
            out["s"] = list(self.shape)
        return out


@contextlib.contextmanager
def _writing(receiver: Receiver) -> Iterator[None]:
    """A full disk (or file-size limit) while receiving is :class:`StorageFull`, the part removed."""
    try:
        yield
    except OSError as exc:
        receiver.abort()
        if exc.errno not in FULL_ERRNOS:
            raise
        raise StorageFull(
            f"no space left receiving object {receiver.header.oid} into {receiver.q.dir}: "
            f"nothing was stored ({exc.strerror})"
        ) from exc


class Receiver:
    """One object arriving in pieces: written to a ``.part`` file and hashed on the way."""

    def __init__(self, quarantine: Quarantine, header: Header) -> None:
        self.q = quarantine
        self.header = header
        self.got = 0
        self.final = quarantine.path_of(header.oid, header.kind)
        # pid (for stale detection) and a random tag: concurrent sessions never share a part file
        self.part = self.final.with_name(f".{self.final.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        self._fh: BinaryIO = open(self.part, "wb")  # noqa: SIM115 - closed in finish/abort
        if header.kind == "array":
            with _writing(self):
                np.lib.format.write_array_header_2_0(
                    self._fh,
                    {
                        "descr": np.lib.format.dtype_to_descr(header.dtype),
                        "fortran_order": False,
                        "shape": header.shape,
                    },
                )
            self._digest = hasher("array", dtype_string(header.dtype), header.shape)
        else:
            self._digest = hasher(header.kind)

    def write(self, data: bytes) -> None:
        if self.got + len(data) > self.header.size:
            self.abort()
            raise ProtocolError(f"object {self.header.oid}: more bytes than announced")
        with _writing(self):
            self._fh.write(data)
        self._digest.update(data)
        self.got += len(data)

    @property
    def complete(self) -> bool:
        return self.got == self.header.size

    def finish(self) -> None:
        # No fsync per object: the quarantine is a cache whose every object is hashed again when
        # it is imported, and a damaged one is dropped then (import_into), so after a power loss
        # the worst case is fetching it again. Thousands of small trees made fsync a fifth of a clone.
        with _writing(self):
            self._fh.close()
        if not self.complete or self._digest.hexdigest() != self.header.oid:
            self.part.unlink(missing_ok=True)
            raise CorruptObject(
                f"object {self.header.oid} arrived corrupt (its content does not match its id); "
                "nothing was stored"
            )
        os.replace(self.part, self.final)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        self.part.unlink(missing_ok=True)


def _writer_is_dead(part: Path) -> bool:
    """Whether the process named in a ``.part`` file's name is gone (a live one is still writing)."""
    try:
        pid = int(part.name.split(".")[-3])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return False  # a live receiver of this process (a finished or aborted one removes its part)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def _npy_header(fh: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` file open in ``fh``, leaving it at the data."""
    version = np.lib.format.read_magic(fh)
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read_header(fh)
    return tuple(shape), dtype


class Quarantine:
    def __init__(self, directory: Path, *, create: bool = True) -> None:
        """``create=False`` looks without making the directory (an absent one holds nothing)."""
        self.dir = directory
        if not create and not directory.is_dir():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for part in self.dir.glob(".*.part"):  # left by a receiving process that died
            if _writer_is_dead(part):
                part.unlink(missing_ok=True)

    def path_of(self, oid: ObjectId, kind: ObjectKind) -> Path:
        return self.dir / f"{oid}{_SUFFIX[kind]}"

    def ids(self) -> dict[ObjectId, ObjectKind]:
        out: dict[ObjectId, ObjectKind] = {}
        for kind, suffix in _SUFFIX.items():
            for path in self.dir.glob(f"*{suffix}"):
                name = path.name[: -len(suffix)]
                if len(name) == ID_HEX_LEN and is_object_id(name):
                    out[ObjectId(name)] = kind  # type: ignore[assignment]
        return out

    def payload_path(self, oid: ObjectId) -> Path | None:
        """Where a received payload sits (for hooks that check values), if it is here."""
        for kind in ("array", "text"):
            path = self.path_of(oid, kind)
            if path.exists():
                return path
        return None

    def has(self, oid: ObjectId) -> bool:
        return any(self.path_of(oid, kind).exists() for kind in _KINDS)

    def payload_facts(self, oid: ObjectId) -> PayloadFacts:
        """What a quarantined payload is (for :mod:`dcsync.store.claims`): an array's ``.npy`` header,
        a text's size; no data is read."""
        text = self.path_of(oid, "text")
        if text.exists():
            return PayloadFacts.of_text(text.stat().st_size)
        try:
            with open(self.path_of(oid, "array"), "rb") as fh:
                shape, dtype = _npy_header(fh)
        except (OSError, ValueError) as exc:
            raise CorruptObject(f"quarantined payload {oid} cannot be read: {exc}") from exc
        return PayloadFacts.of_array(dtype, tuple(shape))

    def receive(self, header: Header) -> Receiver:
        return Receiver(self, header)

    def _array_pieces(
        self, path: Path, chunk_bytes: int
    ) -> tuple[np.dtype, tuple[int, ...], Iterator[np.ndarray]]:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the generator
        shape, dtype = _npy_header(fh)

        def pieces() -> Iterator[np.ndarray]:
            with fh:
                if not shape:
                    yield np.fromfile(fh, dtype=dtype, count=1).reshape(())
                    return
                row = int(np.prod(shape[1:], dtype=np.int64))
                step = max(1, chunk_bytes // max(1, row * dtype.itemsize))
                for start in range(0, shape[0], step):
                    rows = min(step, shape[0] - start)
                    yield np.fromfile(fh, dtype=dtype, count=rows * row).reshape((rows, *shape[1:]))

        return dtype, tuple(shape), pieces()

    def import_into(self, store: ObjectStore, oids: list[ObjectId], *, chunk_bytes: int = 8 << 20) -> None:
        """Copy quarantined objects into ``store`` (inside its writing() transaction)."""
        kinds = self.ids()
        for oid in oids:
            if store.has(oid):
                continue
            kind = kinds.get(oid)
            if kind is None:
                raise CorruptObject(f"object {oid} is needed but was never received")
            path = self.path_of(oid, kind)
            try:
                if kind == "array":
                    dtype, shape, pieces = self._array_pieces(path, chunk_bytes)
                    store.put_array_rows(oid, dtype, shape, pieces)  # hash-checked as it is written
                elif kind == "text":
                    text = path.read_bytes().decode("utf-8", "replace")
                    store.put_payload(verify_payload(oid, text, str(path)), known_id=oid)
                else:
                    store.put_body(oid, kind, path.read_bytes())  # hash-checked
            except CorruptObject as exc:
                path.unlink(missing_ok=True)  # fetched again by the next run
                raise CorruptObject(f"{exc.message}; the damaged copy was dropped: run again") from exc

    def read_object(self, oid: ObjectId, *, peer: str | None = None) -> Tree | Commit:
        """A quarantined tree or commit, checked against its id and the validity rules (a rule
        broken is the :class:`ProtocolError` of ``peer``, who sent it)."""
        for kind in ("tree", "commit"):
            path = self.path_of(oid, kind)
            if path.exists():
                body = path.read_bytes()
                if hash_bytes(kind, body) != oid:
                    raise CorruptObject(f"quarantined object {oid} is corrupt")
                return decode(kind, body, oid, peer=peer)
        raise CorruptObject(f"object {oid} is needed but was never received")

    def read_payload(self, oid: ObjectId) -> Payload:
        kinds = self.ids()
        kind = kinds.get(oid)
        if kind == "array":
            return np.load(self.path_of(oid, kind), allow_pickle=False)  # type: ignore[no-any-return]
        if kind == "text":
            return self.path_of(oid, kind).read_bytes().decode("utf-8")
        raise CorruptObject(f"object {oid} is not a quarantined payload")

    def discard(self, oids: list[ObjectId]) -> None:
        for oid in oids:
            for kind in _KINDS:
                self.path_of(oid, kind).unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove this quarantine's files, and its directory once empty. Folders inside are not
        its own: in a workspace that is also served, they are push sessions' quarantines
        (:class:`Sessions`), which a fetch finishing must not take from under them."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(self.dir):
                if not entry.is_dir(follow_symlinks=False):
                    Path(entry.path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.dir.rmdir()


_TOKEN_LEN = 32  # a session's name: 16 random bytes in hex


def _owner(name: str) -> str | None:
    """The session a quarantine directory belongs to (its name begins with the session's token)."""
    token = name[:_TOKEN_LEN]
    if len(token) == _TOKEN_LEN and all(c in "0123456789abcdef" for c in token):
        return token
    return None


class Sessions:
    """The quarantines of one server session: ``<incoming>/<detector>/<session>/``, this session's alone.

    Concurrent pushes to one detector each receive into their own directory, so one push's success
    (which clears its quarantine) never removes what another is still receiving, and the loser of a
    race learns so from the compare-and-swap (a conflict), not from objects vanishing under it.

    While it has a quarantine, the session holds the lock ``<incoming>/<session>.lock``
    (:mod:`dcsync.store.locking`: heartbeat, dead-pid and stale detection, safe on NFS). A quarantine whose
    session ended with objects left (a push cut or refused midway), or died (its lock stale), is
    adopted by the next session allowed to write that detector: its objects move into that session's
    own directory, so the same push run again does not send them again, and the leftover directory
    goes. A live session's quarantine is never touched by another.
    """

    def __init__(self, incoming: Path) -> None:
        self.incoming = incoming
        self.token = os.urandom(_TOKEN_LEN // 2).hex()
        self._lock = FileLock(incoming / self.token, command="dcsync serve: quarantine")
        self._adopted: set[str] = set()
        self._made: set[str] = set()

    def _own(self, det: str) -> Path:
        return self.incoming / det / self.token

    def get(self, det: str, *, create: bool = False, adopt: bool = False) -> Quarantine:
        """This session's quarantine for ``det`` (``det`` already checked as a name).

        ``adopt`` first takes over abandoned quarantines of ``det`` (only for a caller who may write
        it); ``create`` makes the directory, which otherwise exists only if something was adopted.
        """
        if adopt and det not in self._adopted:
            self._adopted.add(det)
            self._adopt(det)
        own = self._own(det)
        if create and not own.is_dir():
            self._hold()
            own.mkdir(parents=True, exist_ok=True)
            self._made.add(det)
        return Quarantine(own, create=False)

    def clear(self, det: str) -> None:
        """Drop this session's quarantine of ``det`` (its objects were imported)."""
        shutil.rmtree(self._own(det), ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.incoming / det).rmdir()  # only if no other session has one there

    def end(self) -> None:
        """Remove this session's empty quarantines and give up the rest for adoption."""
        for det in sorted(self._made):
            with contextlib.suppress(OSError):
                self._own(det).rmdir()  # only if empty: objects left wait for the next push
                (self.incoming / det).rmdir()
        self._made.clear()
        if self._lock.is_held:
            with contextlib.suppress(LockError):  # broken as stale meanwhile: nothing of ours to free
                self._lock.release()

    def _hold(self) -> None:
        """Take this session's lock before it owns any directory (adopters judge by the lock)."""
        if not self._lock.is_held:
            self.incoming.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=5)  # the name is this session's own: only a fluke waits

    def _abandoned(self, token: str) -> bool:
        """Whether the session ``token`` ended or died (its lock released, or stale and now broken)."""
        if token == self.token:
            return False
        path = self.incoming / token
        try:
            if lock_status(path) is None:
                return True
            break_lock(path)
            return lock_status(path) is None
        except (LockError, AccessDenied):
            return False  # alive (its quarantine is its own), or not ours to judge

    def _adopt(self, det: str) -> None:
        folder = self.incoming / det
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            owner = _owner(entry.name)
            if owner is None or not entry.is_dir(follow_symlinks=False) or not self._abandoned(owner):
                continue
            # Claim it with a rename (atomic, on NFS too): of sessions adopting at once, one wins.
            claimed = folder / f"{self.token}-adopting-{os.urandom(4).hex()}"
            try:
                os.rename(entry.path, claimed)
            except FileNotFoundError:
                continue  # another session took it first
            except PermissionError:
                continue  # the file system does not let this user take it: it stays
            own, found = self.get(det, create=True), Quarantine(claimed, create=False)
            for oid, kind in found.ids().items():
                with contextlib.suppress(FileNotFoundError):
                    os.replace(found.path_of(oid, kind), own.path_of(oid, kind))
            shutil.rmtree(claimed, ignore_errors=True)  # partial objects of a writer that is gone
        # Files right in the detector's folder are not a session's: a fetch into this workspace
        # keeps its quarantine there (and servers before per-session quarantines did).
