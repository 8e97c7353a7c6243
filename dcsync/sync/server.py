"""``dcsync serve --stdio``: one workspace served to one client over a byte stream.

Methods (an allowlist; named arguments only, checked by :class:`~dcsync.sync.protocol.ArgSpec`):

- ``hello``: protocol range, hash algorithm, capabilities, who the client says it is;
- ``heads``: the HEAD of every detector in scope, in one round trip;
- ``negotiate``: for each wanted head, the objects the client may lack (minus what the heads it
  already has imply, and minus payloads its partial-clone filter excludes);
- ``get_objects``: those objects, streamed in bounded chunks;
- ``get_files``: whole repository files, for detectors the client lacks (:mod:`dcsync.sync.wholefile`);
- ``have``: which of a batch of objects this side already has (stored, or in this session's
  quarantine);
- ``put_objects``: a stream of objects into this session's quarantine, each verified as it arrives;
- ``update_refs``: move HEADs by compare-and-swap, fast-forward only, importing the quarantined
  objects in the same crash-safe commit; ``atomic`` makes a batch all-or-nothing across files.

Which right each method needs is declared in :data:`RIGHTS` and checked before the method runs.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import select
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from dcsync.errors import (
    AccessDenied,
    AlreadyExists,
    ConnectionLost,
    DcsyncError,
    DetectorNotFound,
    NotFastForward,
    ProtocolError,
    RefConflict,
    RemoteError,
    StorageFull,
    UsageError,
)
from dcsync.model.hashing import ObjectId, is_object_id
from dcsync.model.identity import current_host
from dcsync.model.limits import HELLO, ITEM, REQUEST
from dcsync.model.names import check_detname
from dcsync.rawio import pread_into, sendfile_all, write_all
from dcsync.repo.graph import is_ancestor
from dcsync.repo.reach import objects_for, transfer_header, walk_missing
from dcsync.repo.repository import Repository
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.journal import AtomicGroup
from dcsync.store.locking import FileLock
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord
from dcsync.sync.protocol import (
    INT64_MAX,
    INT64_MIN,
    PREAMBLE,
    ArgSpec,
    Read,
    Write,
    bytes_frame_head,
    chunk_size,
    error_to_wire,
    hello_args,
    negotiate_version,
    read_frame,
    whole_number,
    write_frame,
)
from dcsync.sync.quarantine import Header, Quarantine, Sessions
from dcsync.sync.wholefile import FileRange, file_frames
from dcsync.transport.local import widen_pipe
from dcsync.version import __version__
from dcsync.workspace.acl import Identity, current_identity
from dcsync.workspace.policy import Incoming
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

SPECS: dict[str, ArgSpec] = {
    "hello": ArgSpec(
        protocol=(int, True),
        min_protocol=(int, True),
        hash=(str, True),
        capabilities=(list, True),
        software=(str, False),
        user=(str, False),
        host=(str, False),
    ),
    "heads": ArgSpec(detectors=(list, False)),
    "negotiate": ArgSpec(wants=(list, True)),
    "get_objects": ArgSpec(items=(list, True)),
    "get_files": ArgSpec(items=(list, True)),
    "have": ArgSpec(items=(list, True)),
    "put_objects": ArgSpec(detector=(str, True)),
    "update_refs": ArgSpec(updates=(list, True), atomic=(bool, False), message=(str, False)),
}


SendFile = Callable[[int, int, int], int]  # (file descriptor, offset, count) -> bytes sent


# -- who may call what ------------------------------------------------------------------------------


def _put_targets(args: dict[str, Any]) -> list[str]:
    return [_det(args["detector"])]


def _update_targets(args: dict[str, Any]) -> list[str]:
    updates = args["updates"]
    if not all(isinstance(update, dict) for update in updates):
        raise ProtocolError("each update is a map")
    return [_det(update.get("detector")) for update in updates]


class Right(NamedTuple):
    """What a method needs of the caller. ``write`` methods name the detectors they change
    (``targets``); the caller must be allowed to write each, on a server that is not read-only,
    before the method runs at all: before it creates a directory, takes a lock, runs a hook or
    writes a byte. ``read`` methods are judged per detector as they open it (:meth:`Server._repo`)."""

    permission: Literal["none", "read", "write"]
    targets: Callable[[dict[str, Any]], list[str]] | None = None


# Checked by Server.serve() before every call; a method missing here cannot be called at all.
RIGHTS: dict[str, Right] = {
    "hello": Right("none"),
    "heads": Right("read"),
    "negotiate": Right("read"),
    "get_objects": Right("read"),
    "get_files": Right("read"),
    "have": Right("read"),
    "put_objects": Right("write", _put_targets),
    "update_refs": Right("write", _update_targets),
}


def _oid(value: Any) -> ObjectId:
    if not is_object_id(value):
        raise ProtocolError(f"not an object id: {str(value)[:80]!r}")
    return ObjectId(str(value))


def _det(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError("detector names are strings")
    return check_detname(value)


_FILTER_KEYS: dict[str, type] = {"ctypes": list, "since": int, "payloads": bool, "history": bool}
_WANT_KEYS = frozenset({"detector", "want", "have", "filter"})


def _filter(value: Any) -> dict[str, Any]:
    """A partial-clone filter, checked: known keys only, each of its type (nil means absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("filter must be a map")
    out: dict[str, Any] = {}
    for key, item in value.items():
        expected = _FILTER_KEYS.get(key) if isinstance(key, str) else None
        if expected is None:
            raise ProtocolError(f"unknown filter key {str(key)[:60]!r}")
        if item is None:
            continue
        if not isinstance(item, expected) or (expected is not bool and isinstance(item, bool)):
            raise ProtocolError(f"filter key {key!r} has the wrong type")
        if key == "since":
            whole_number(item, "filter key 'since'", INT64_MIN, INT64_MAX)
        if isinstance(item, list) and not all(isinstance(c, str) for c in item):
            raise ProtocolError("filter key 'ctypes' is a list of names")
        out[key] = item
    return out


class Server:
    """Serves one workspace; ``read_only`` refuses every write."""

    def __init__(
        self,
        root: Path,
        *,
        read_only: bool = False,
        identity: Identity | None = None,
        sendfile: SendFile | None = None,
    ) -> None:
        self.ws = Workspace(root)
        # Copies file bytes to the client's stream in the kernel (run_stdio has a descriptor to
        # give it); without it, whole files are read and written through Python.
        self.sendfile = sendfile
        self.read_only = read_only
        # Decisions rest on the OS identity this process runs as (the SSH login), never on what
        # the client says about itself; ``identity`` is for embedding and for tests.
        self.who = identity or current_identity()
        self.policy = self.ws.policy()
        self.client: dict[str, Any] = {}
        self._repos: dict[str, Repository] = {}
        # This session's own quarantines: concurrent pushes never share one.
        self.quarantines = Sessions(self.ws.root / CONFIG_DIR / "incoming")

    # -- session -----------------------------------------------------------------------------------
    def serve(self, read: Read, write: Write) -> None:
        """Run one session until the client hangs up."""
        try:
            self._serve(read, write)
        finally:
            self.quarantines.end()  # what a cut push left waits for the next one to adopt

    def _serve(self, read: Read, write: Write) -> None:
        write(PREAMBLE)
        greeted = False
        while True:
            upload = False
            try:
                request = read_frame(read, decoding=REQUEST if greeted else HELLO)
            except DcsyncError as exc:
                if "closed after 0 of 4" in exc.message:
                    return  # the client hung up between requests: a normal end
                with contextlib.suppress(DcsyncError, OSError):
                    write_frame(write, {"i": 0, "e": error_to_wire(exc)})
                return  # the stream may be out of step: stop
            rid = request.get("i") if isinstance(request, dict) else None
            if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= INT64_MAX:
                rid = None  # answered as 0 (an id out of range cannot be echoed as the peer meant it)
            try:
                if (
                    not isinstance(request, dict)
                    or not isinstance(rid, int)
                    or not isinstance(request.get("m"), str)
                ):
                    raise ProtocolError("a request is a map with an integer 'i' and a method name 'm'")
                method = request["m"]
                upload = method == "put_objects"
                spec, right = SPECS.get(method), RIGHTS.get(method)
                if spec is None or right is None:
                    raise ProtocolError(f"unknown method {method[:60]!r}")
                if not greeted and method != "hello":
                    raise ProtocolError("the first request must be hello")
                args = spec.check(method, request.get("a", {}))
                self._authorize(right, args)
                result = getattr(self, f"do_{method}")(rid, read, write, **args)
                greeted = True
                write_frame(write, {"i": rid, "r": result})
            except DcsyncError as exc:
                write_frame(write, {"i": rid if isinstance(rid, int) else 0, "e": error_to_wire(exc)})
                if isinstance(exc, ProtocolError) or upload:
                    return  # the stream may be out of step (a refused upload's items are still coming)
            except (OSError, RuntimeError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
                # Not ours to explain in detail (a library or the OS failed): say so to the client,
                # keep the traceback on stderr for the admin, and end the session cleanly.
                traceback.print_exc(file=sys.stderr)
                failure: DcsyncError = (
                    StorageFull(f"the server ran out of space: {exc}")
                    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
                    else RemoteError(f"the server failed: {type(exc).__name__}: {exc}")
                )
                with contextlib.suppress(DcsyncError, OSError):
                    write_frame(write, {"i": rid if isinstance(rid, int) else 0, "e": error_to_wire(failure)})
                return

    def close(self) -> None:
        self.quarantines.end()
        for repo in self._repos.values():
            repo.close()

    # -- helpers -----------------------------------------------------------------------------------
    def _repo(self, det: str) -> Repository:
        if det not in self._repos:
            path = self.ws.detector_path(_det(det))
            if not path.is_file():
                raise DetectorNotFound(f"no detector {det} in {self.ws.root}")
            self.policy.check_read(self.who, det)
            self._repos[det] = Repository.open(path)
        return self._repos[det]

    def _may_write(self, det: str) -> bool:
        return not self.read_only and self.policy.acl().may_write(self.who, det)

    def _who(self) -> str:
        """The client as it said it was (user@host): for logs and messages, never for decisions."""
        return f"{self.client.get('user') or '?'}@{self.client.get('host') or '?'}"

    def _peer(self) -> str:
        return f"the client {self._who()}"

    def _authorize(self, right: Right, args: dict[str, Any]) -> None:
        """Refuse a call the caller has no right to, before it runs (see :data:`RIGHTS`)."""
        if right.permission != "write":
            return
        if self.read_only:
            raise AccessDenied(f"{self.ws.root} is served read-only")
        acl = self.policy.acl()
        for det in right.targets(args) if right.targets else []:
            if not acl.may_write(self.who, det):
                acl.require(self.who, "add", det)  # raises, naming user, detector and location

    # -- methods -----------------------------------------------------------------------------------
    def do_hello(self, rid: int, read: Read, write: Write, **args: Any) -> dict[str, Any]:
        negotiate_version(args, peer_name="the client", self_name="the server")
        self.client = {
            "user": args.get("user", ""),
            "host": args.get("host", ""),
            "software": args.get("software", ""),
        }
        # "user" is who this session acts as (the SSH login the ACL judges), so a client can record
        # the identity the server authenticated rather than its own local name.
        out = hello_args(f"dcsync {__version__}", self.who.user, current_host())
        out["kind"] = self.ws.kind
        out["read_only"] = self.read_only
        return out

    def do_heads(
        self, rid: int, read: Read, write: Write, detectors: list[Any] | None = None
    ) -> dict[str, Any]:
        globs = [str(g) for g in detectors] if detectors else ["*"]
        heads: dict[str, str | None] = {}
        acl = self.policy.acl()
        for det in self.ws.detectors():
            if any(fnmatch.fnmatchcase(det, g) for g in globs) and acl.allows(self.who, "read", det):
                heads[det] = self._repo(det).head()
        return {"kind": self.ws.kind, "heads": heads}

    def do_negotiate(self, rid: int, read: Read, write: Write, wants: list[Any]) -> dict[str, Any]:
        out: dict[str, list[list[Any]]] = {}
        for want in wants:
            if not isinstance(want, dict):
                raise ProtocolError("each want is a map")
            unknown = [str(key)[:60] for key in want if key not in _WANT_KEYS]
            if unknown:
                raise ProtocolError(f"negotiate: unknown key(s) {sorted(unknown)[:10]} in a want")
            det = _det(want.get("detector"))
            store = self._repo(det).store
            haves = want.get("have")
            if haves is not None and not isinstance(haves, list):
                raise ProtocolError("'have' is a list of commit ids")
            have = [_oid(h) for h in haves or [] if store.has(_oid(h))]
            flt = _filter(want.get("filter"))
            found = objects_for(store, _oid(want.get("want")), have, flt, peer=self._peer())
            out[det] = [[oid, kind, size] for oid, kind, size in found]
        return {"objects": out}

    def do_get_objects(self, rid: int, read: Read, write: Write, items: list[Any]) -> dict[str, Any]:
        chunk = chunk_size()
        count = 0
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise ProtocolError("items are [detector, id] pairs")
            store = self._repo(_det(item[0])).store
            for frame in _object_frames(store, _oid(item[1]), chunk):
                write_frame(write, {"i": rid, "s": frame})
            count += 1
        return {"count": count}

    def do_get_files(self, rid: int, read: Read, write: Write, items: list[Any]) -> dict[str, Any]:
        from dcsync.workspace.config import is_partial_clone  # only whole-file transfers need the remotes

        requests: list[tuple[str, int, str | None]] = []
        for item in items:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not (item[2] is None or isinstance(item[2], str))
            ):
                raise ProtocolError("items are [detector, offset, token or nil] triples")
            whole_number(item[1], "a get_files offset")
            det = _det(item[0])
            self._repo(det)  # exists, and the caller may read it
            requests.append((det, item[1], item[2]))
        # A partial clone's file lacks payloads it was never sent: it goes object by object.
        partial = is_partial_clone(self.ws)
        total = 0 if partial else sum(self.ws.detector_path(det).stat().st_size for det, _, _ in requests)
        write_frame(write, {"i": rid, "s": {"total": total}})
        chunk = chunk_size()
        for det, offset, token in requests:
            if partial:
                frames: Iterator[dict[str, Any] | FileRange] = iter(
                    [{"f": det, "skip": "the server is a partial clone"}]
                )
            else:
                frames = file_frames(self.ws.detector_path(det), det, offset, token, chunk)
            for frame in frames:
                if isinstance(frame, FileRange):
                    self._send_range(write, rid, frame)
                else:
                    write_frame(write, {"i": rid, "s": frame})
        return {"count": len(requests)}

    def _send_range(self, write: Write, rid: int, part: FileRange) -> None:
        write(bytes_frame_head(rid, part.length))  # the frame promises exactly part.length bytes
        sent = self.sendfile(part.fd, part.offset, part.length) if self.sendfile else 0
        if sent < part.length:  # no sendfile here, or it stopped short
            # A file cut short under us: zeros keep the stream in step; the trailer says not ok.
            rest = bytearray(part.length - sent)
            pread_into(part.fd, memoryview(rest), part.offset + sent)
            write(bytes(rest))

    def do_have(self, rid: int, read: Read, write: Write, items: list[Any]) -> dict[str, Any]:
        answers = []
        quarantines: dict[str, Quarantine] = {}
        for item in items:
            if not isinstance(item, list) or len(item) != 2:
                raise ProtocolError("items are [detector, id] pairs")
            det, oid = _det(item[0]), _oid(item[1])
            path = self.ws.detector_path(det)
            stored = path.is_file() and self._repo(det).store.has(oid)
            if det not in quarantines:
                # This session's own quarantine: asking creates no directory, and only a caller
                # who may write the detector takes over what an ended push left (to resume it).
                quarantines[det] = self.quarantines.get(det, adopt=self._may_write(det))
            answers.append(stored or quarantines[det].has(oid))
        return {"have": answers}

    def do_put_objects(self, rid: int, read: Read, write: Write, detector: str) -> dict[str, Any]:
        quarantine = self.quarantines.get(_det(detector), create=True, adopt=True)
        received = 0
        receiver = None
        try:
            while True:
                frame = read_frame(read, decoding=ITEM)
                if not isinstance(frame, dict) or frame.get("i") != rid:
                    raise ProtocolError("unexpected frame inside put_objects")
                if frame.get("end"):
                    break
                item = frame.get("s")
                if not isinstance(item, dict):
                    raise ProtocolError("put_objects items are maps")
                if "h" in item:
                    if receiver is not None:
                        raise ProtocolError("a new object began before the last one ended")
                    receiver = quarantine.receive(Header(item["h"]))
                elif "c" in item and receiver is not None and isinstance(item["c"], bytes):
                    receiver.write(item["c"])
                else:
                    raise ProtocolError("put_objects items are a header 'h' or a chunk 'c'")
                if receiver is not None and receiver.complete:
                    receiver.finish()
                    receiver = None
                    received += 1
        finally:
            if receiver is not None:
                receiver.abort()
        return {"received": received}

    def do_update_refs(
        self,
        rid: int,
        read: Read,
        write: Write,
        updates: list[Any],
        atomic: bool = False,
        message: str = "",
    ) -> dict[str, Any]:
        parsed = []
        for update in updates:
            if not isinstance(update, dict):
                raise ProtocolError("each update is a map")
            old = update.get("old")
            parsed.append(
                (_det(update.get("detector")), None if old is None else _oid(old), _oid(update.get("new")))
            )
        if len({det for det, _, _ in parsed}) != len(parsed):  # atomic: the group holds its first lock
            raise ProtocolError("update_refs names a detector more than once")
        unmoved = {det: self._unmoved(det, old) for det, old, new in parsed if old == new}
        moves = [(det, old, new) for det, old, new in parsed if det not in unmoved]
        results: list[dict[str, Any]] = []
        landed: list[Incoming] = []
        if atomic:
            for conflict in unmoved.values():
                if conflict is not None:
                    raise conflict
            with AtomicGroup(self.ws.root / CONFIG_DIR / "atomic") if moves else _no_group() as group:
                for det, old, new in moves:
                    landed.append(self._move_head(det, old, new, message, group))
            results = [{"detector": det, "ok": True} for det, _, _ in parsed]
        else:
            for det, old, new in parsed:
                try:
                    if det in unmoved:
                        conflict = unmoved[det]
                        if conflict is not None:
                            raise conflict
                        results.append({"detector": det, "ok": True})
                        continue
                    landed.append(self._move_head(det, old, new, message, None))
                    results.append({"detector": det, "ok": True})
                except DcsyncError as exc:
                    results.append({"detector": det, "ok": False, "error": error_to_wire(exc)})
        notes = []
        for incoming in landed:  # after the commit point: post-receive reacts, it cannot refuse
            store = HDF5Store(self.ws.detector_path(incoming.detname))
            try:
                incoming.store = store
                notes.extend(self.policy.after(incoming))
            finally:
                store.close()
        for det, _, _ in moves:
            if all(r["ok"] for r in results if r["detector"] == det):
                self.quarantines.clear(det)
        return {"results": results, "notes": notes}

    def _unmoved(self, det: str, head: ObjectId | None) -> DcsyncError | None:
        """A no-op update (old = new): answered from HEAD as it is, with no lock taken, no hook run
        and nothing written (a log record for it would only be noise anyone could add). Returns
        the error to report for this detector (a conflict if HEAD is elsewhere), or None."""
        path = self.ws.detector_path(det)
        if not path.is_file():
            return DetectorNotFound(f"no detector {det} in {self.ws.root}")
        try:
            store = HDF5Store(path)
            try:
                current = store.head()
            finally:
                store.close()
        except DcsyncError as exc:
            return exc
        if current != head:
            return RefConflict(f"{det}: the remote HEAD is {current} (you expected {head}); pull first")
        return None

    def _move_head(
        self, det: str, old: ObjectId | None, new: ObjectId, message: str, group: AtomicGroup | None
    ) -> Incoming:
        path = self.ws.detector_path(det)
        quarantine = self.quarantines.get(det)
        who, peer = self._who(), self._peer()
        created = False
        needed: list[ObjectId] | None = None
        if old is None and not path.is_file():
            # A new detector: check everything arrived before creating its file, so a refused
            # push leaves nothing behind.
            needed = _received(MemoryStore(), quarantine, new, peer=peer, detector=det)
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(AlreadyExists):  # a concurrent push was first: the CAS decides
                HDF5Store.create(path).close()
                created = True
        if not path.is_file():
            raise DetectorNotFound(f"no detector {det} in {self.ws.root}")
        cached = self._repos.pop(det, None)
        if cached is not None:
            cached.close()
        if needed is None:
            # Walking and checking what arrived needs no lock: done on the committed file first,
            # so the lock covers only the commit. A reader sees committed states only, and
            # committed objects stay, so what it found stays found; the CAS under the lock catches
            # a HEAD that moved meanwhile, and importing skips objects that landed meanwhile.
            reader = HDF5Store(path)
            try:
                needed = _received(reader, quarantine, new, peer=peer, detector=det)
            finally:
                reader.close()
        store = HDF5Store(path)
        try:
            with store.writing(group):
                current = store.head()
                if current != old:
                    raise RefConflict(
                        f"{det}: the remote HEAD moved to {current} (you expected {old}); pull first"
                    )
                quarantine.import_into(store, needed)
                if old is not None and not is_ancestor(store, old, new):
                    raise NotFastForward(f"{det}: not a fast-forward of the remote HEAD; pull first")
                incoming = Incoming(
                    det,
                    store,
                    old,
                    new,
                    "push",
                    self.who,
                    str(self.client.get("host", "")),
                    who,
                    quarantine.payload_path,
                )
                self.policy.check(incoming, phase="pre-receive")
                store.set_ref(
                    HEAD,
                    old,
                    new,
                    LogRecord(
                        HEAD,
                        old,
                        new,
                        "push received",
                        message or f"push by {self.who.user}",
                        # The record's user and served_as are the identity this session was
                        # authenticated as (the SSH login the ACL judged): facts. What the client
                        # said about itself in hello is kept, labelled as its claim.
                        user=self.who.user,
                        extra={
                            "served_as": self.who.user,
                            "claimed_user": self.client.get("user", ""),
                            "claimed_host": self.client.get("host", ""),
                            "promoted_from": [
                                c["meta"]["promote"] for c in incoming.commits() if "promote" in c["meta"]
                            ],
                        },
                    ),
                )
        except BaseException:
            if created:  # refused (ACL, hook, conflict): the file we made for it must not stay
                _remove_if_empty(store)
            raise
        finally:
            store.close()
        return incoming


@contextlib.contextmanager
def _no_group() -> Iterator[None]:
    """An atomic batch with nothing to move (all no-ops) takes no lock."""
    yield None


def _received(
    store: HDF5Store | MemoryStore, arrived: Quarantine, new: ObjectId, *, peer: str, detector: str
) -> list[ObjectId]:
    """The objects ``new`` needs that ``store`` lacks, each checked by the walk (:func:`walk_missing`)
    to have arrived, to be of the kind its reference promises, to keep the validity rules and, for
    trees, to be within the size limits (dcsync.model.limits)."""
    return [oid for oid, _, _ in walk_missing(store, arrived, new, peer=peer, detector=detector)]


def _remove_if_empty(store: HDF5Store) -> None:
    """Delete a repository file that never got a commit (made for a push that was refused)."""
    with contextlib.suppress(DcsyncError, OSError), FileLock(store.path).held(timeout=5):
        store.close()
        fresh = HDF5Store(store.path)
        try:
            empty = fresh.head() is None
        finally:
            fresh.close()
        if empty:
            store.path.unlink()


def _object_frames(store: Any, oid: ObjectId, chunk: int) -> Iterator[dict[str, Any]]:
    """One object as a header frame followed by chunk frames of at most ``chunk`` bytes."""
    header, pieces = transfer_header(store, oid, chunk)
    yield {"h": header}
    for piece in pieces:
        for start in range(0, len(piece), chunk):
            yield {"c": piece[start : start + chunk]}


def resolve_root(
    root: Path | None, restrict_to: list[Path], *, original_command: str | None = None
) -> tuple[Path, bool]:
    """The workspace to serve, checked against ``--restrict-to-path``, and whether the client
    asked for read-only.

    As an SSH forced command (``command="dcsync serve --stdio --restrict-to-path P"`` in
    authorized_keys) the client's own command line arrives in ``SSH_ORIGINAL_COMMAND``; only its
    ``--root`` and ``--read-only`` are taken from it, and the root must resolve (symlinks and
    ``..`` followed) to P or below.
    """
    asked_read_only = False
    if root is None and original_command:
        try:
            words = shlex.split(original_command)
        except ValueError as exc:
            raise AccessDenied(f"cannot parse the requested command: {exc}") from exc
        if "serve" not in words:
            raise AccessDenied("this key may only run 'dcsync serve'")
        for i, word in enumerate(words):
            if word == "--root" and i + 1 < len(words):
                root = Path(words[i + 1])
            elif word.startswith("--root="):
                root = Path(word.split("=", 1)[1])
        asked_read_only = "--read-only" in words
    if root is None:
        root = Path(".")
    text = os.fspath(root)
    if "\0" in text:
        raise AccessDenied("the requested path contains a NUL byte")
    real = Path(os.path.realpath(os.path.expanduser(text)))
    if restrict_to:
        allowed = [Path(os.path.realpath(os.path.expanduser(os.fspath(p)))) for p in restrict_to]
        if not any(real == a or a in real.parents for a in allowed):
            raise AccessDenied(
                f"{text} is outside the paths this server may serve ({', '.join(map(str, allowed))})"
            )
    return real, asked_read_only


DEFAULT_IDLE_TIMEOUT = 600.0  # seconds; docs/admin.md, "Idle sessions"


def idle_timeout_of(ws: Workspace) -> float:
    """``[serve] idle_timeout`` of the served workspace's config.toml (seconds, 0: never)."""
    value = ws.config().get("serve", {}).get("idle_timeout", DEFAULT_IDLE_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10**9:
        raise UsageError(
            f"{ws.config_path}: [serve] idle_timeout must be a number of seconds (0: never), not {value!r}"
        )
    return float(value)


class IdleClock:
    """Ends a session whose client neither sends nor takes what it is sent for ``timeout``
    seconds: without it a client that stopped reading, or never sent, kept its server process
    (and whatever it holds open) alive forever. Only time spent waiting on the client counts, never
    the server's own work (a long commit, a hook)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = False

    def wait(self, fd: int, event: int) -> None:
        if self.timeout <= 0:
            return  # no limit: the blocking call waits as long as it takes
        poller = select.poll()
        poller.register(fd, event)
        # Once expired, the session is ending: a last error frame goes only if it fits right away.
        if not poller.poll(0 if self.expired else int(self.timeout * 1000)):
            self.expired = True
            sys.stderr.write(
                f"dcsync serve: the client was idle for {self.timeout:g} s; ending the session\n"
            )
            raise ConnectionLost(f"the client was idle for {self.timeout:g} s (the server's idle timeout)")


def run_stdio(
    root: Path | None,
    *,
    read_only: bool = False,
    restrict_to: list[Path] | None = None,
    idle_timeout: float | None = None,
    stdin: Any = None,
    stdout: Any = None,
) -> int:
    """Serve on this process's stdin/stdout (binary, unbuffered).

    ``idle_timeout`` (seconds, 0: never) overrides the workspace's ``[serve] idle_timeout``.
    """
    infd = (stdin or sys.stdin).fileno()
    outfd = (stdout or sys.stdout).fileno()
    widen_pipe(outfd)  # sshd or the local client reads bulk transfers from it
    clock = IdleClock(0)

    def read(n: int) -> bytes:
        clock.wait(infd, select.POLLIN)
        return os.read(infd, n)

    def writable(fd: int) -> None:
        clock.wait(fd, select.POLLOUT)

    def sendfile(fd: int, offset: int, count: int) -> int:
        """Bytes of a file to our output in the kernel; returns how many went (0: unsupported)."""
        return sendfile_all(outfd, fd, offset, count, wait=writable)

    def write(data: bytes) -> None:
        write_all(outfd, data, wait=writable)

    try:
        real, asked_read_only = resolve_root(
            root, restrict_to or [], original_command=os.environ.get("SSH_ORIGINAL_COMMAND")
        )
        server = Server(real, read_only=read_only or asked_read_only, sendfile=sendfile)
        clock.timeout = idle_timeout if idle_timeout is not None else idle_timeout_of(server.ws)
    except DcsyncError as exc:
        write(PREAMBLE)
        write_frame(write, {"i": 0, "e": error_to_wire(exc)})
        return exc.exit_code
    if clock.timeout > 0:
        os.set_blocking(outfd, False)  # a write must not wait for a client that stopped reading
    try:
        server.serve(read, write)
    except (BrokenPipeError, ConnectionError):
        return 0
    finally:
        server.close()
    return 0
