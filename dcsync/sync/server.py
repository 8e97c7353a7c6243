"""The server side of a session: one workspace served to one client over a byte stream, through
plain ``read``/``write`` callables (``dcsync serve --stdio`` gives it its stdin and stdout:
:mod:`dcsync.sync.serving`).

Methods (an allowlist; named arguments only, each method's arguments and the right it needs are in
:mod:`dcsync.sync.methods`, checked before the method runs):

- ``hello``: protocol range, hash algorithm, capabilities, who the client says it is;
- ``heads``: the HEAD of every detector in scope, in one round trip;
- ``negotiate``: for each wanted head, the objects the client may lack (minus what the heads it
  already has imply, and minus payloads its partial-clone filter excludes);
- ``get_objects``: those objects, streamed in bounded chunks (:class:`~dcsync.sync.transfer.ObjectSender`);
- ``get_files``: whole repository files, for detectors the client lacks (:mod:`dcsync.sync.wholefile`);
- ``have``: which of a batch of objects this side already has (stored, or in this session's
  quarantine);
- ``put_objects``: a stream of objects into this session's quarantine, each verified as it arrives
  (:class:`~dcsync.sync.transfer.ObjectReceiver`);
- ``update_refs``: move HEADs by compare-and-swap, fast-forward only, importing the quarantined
  objects in the same crash-safe commit; ``atomic`` makes a batch all-or-nothing
  (:mod:`dcsync.sync.heads`).

The detectors' stores come from one :class:`~dcsync.sync.stores.DetectorStores` (by default the
workspace's HDF5 files), so the server reaches objects only through the store interface.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dcsync.errors import DcsyncError, ProtocolError, RemoteError, StorageFull
from dcsync.model.fields import BadField
from dcsync.model.identity import current_host
from dcsync.model.limits import HELLO, ITEM, REQUEST
from dcsync.rawio import FULL_ERRNOS, pread_into
from dcsync.repo.reach import objects_for
from dcsync.store.base import ObjectStore
from dcsync.sync.heads import HeadMover, parse_updates
from dcsync.sync.methods import (
    RIGHTS,
    SPECS,
    WANT_KEYS,
    authorize,
    object_id,
    pairs,
    partial_filter,
)
from dcsync.sync.methods import detector as checked_det
from dcsync.sync.protocol import (
    INT64_MAX,
    PREAMBLE,
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
from dcsync.sync.quarantine import Quarantine, Sessions, incoming_dir
from dcsync.sync.stores import DetectorStores, WorkspaceFiles
from dcsync.sync.transfer import Chunk, ObjectReceiver, ObjectSender, ObjectStart, object_item
from dcsync.sync.wholefile import FileRange, file_frames
from dcsync.version import __version__
from dcsync.workspace.acl import Identity, current_identity
from dcsync.workspace.config import is_partial_clone
from dcsync.workspace.workspace import Workspace

__all__ = ["RIGHTS", "SPECS", "SendFile", "Server"]

SendFile = Callable[[int, int, int], int]  # (file descriptor, offset, count) -> bytes sent


class Server:
    """Serves one workspace; ``read_only`` refuses every write.

    ``stores`` are the detectors' stores (default: the workspace's HDF5 files); the workspace
    still supplies the ACL, hooks, configuration and the quarantines of pushes in progress.
    """

    def __init__(
        self,
        root: Path,
        *,
        read_only: bool = False,
        identity: Identity | None = None,
        sendfile: SendFile | None = None,
        stores: DetectorStores | None = None,
    ) -> None:
        self.ws = Workspace(root)
        self.stores = stores if stores is not None else WorkspaceFiles(self.ws)
        # Copies file bytes to the client's stream in the kernel (run_stdio has a descriptor to
        # give it); without it, whole files are read and written through Python.
        self.sendfile = sendfile
        self.read_only = read_only
        # Decisions rest on the OS identity this process runs as (the SSH login), never on what
        # the client says about itself; ``identity`` is for embedding and for tests.
        self.who = identity or current_identity()
        self.policy = self.ws.policy()
        self.client: dict[str, Any] = {}  # what hello said; shared with self.heads, so updated in place
        self._open: dict[str, ObjectStore] = {}
        self._greeted = False  # a hello succeeded in this session
        # This session's own quarantines: concurrent pushes never share one.
        self.quarantines = Sessions(incoming_dir(self.ws))
        self.heads = HeadMover(self.stores, self.quarantines, self.policy, self.who, self.client)

    # -- session -----------------------------------------------------------------------------------
    def serve(self, read: Read, write: Write) -> None:
        """Run one session until the client hangs up."""
        try:
            self._serve(read, write)
        finally:
            self.quarantines.end()  # what a cut push left waits for the next one to adopt

    def _serve(self, read: Read, write: Write) -> None:
        write(PREAMBLE)
        self._greeted = False
        while True:
            try:
                request = read_frame(read, decoding=REQUEST if self._greeted else HELLO)
            except DcsyncError as exc:
                if "closed after 0 of 4" in exc.message:
                    return  # the client hung up between requests: a normal end
                with contextlib.suppress(DcsyncError, OSError):
                    write_frame(write, {"i": 0, "e": error_to_wire(exc)})
                return  # the stream may be out of step: stop
            if not self._answer(request, read, write):
                return

    def _answer(self, request: Any, read: Read, write: Write) -> bool:
        """Run one request and write its answer; False when the session must end (the stream may
        be out of step, or something failed that is not ours to explain). A hello that succeeds
        greets the session: until then, nothing else may be called."""
        rid = request.get("i") if isinstance(request, dict) else None
        if isinstance(rid, bool) or not isinstance(rid, int) or not 0 <= rid <= INT64_MAX:
            rid = None  # answered as 0 (an id out of range cannot be echoed as the peer meant it)
        upload = False
        try:
            if not isinstance(request, dict) or rid is None or not isinstance(request.get("m"), str):
                raise ProtocolError("a request is a map with an integer 'i' and a method name 'm'")
            method = request["m"]
            upload = method == "put_objects"
            spec, right = SPECS.get(method), RIGHTS.get(method)
            if spec is None or right is None:
                raise ProtocolError(f"unknown method {method[:60]!r}")
            if not self._greeted and method != "hello":
                raise ProtocolError("the first request must be hello")
            args = spec.check(method, request.get("a", {}))
            authorize(
                right,
                args,
                acl=self.policy.acl,
                who=self.who,
                read_only=str(self.ws.root) if self.read_only else "",
            )
            result = getattr(self, f"do_{method}")(rid, read, write, **args)
            self._greeted = True
            write_frame(write, {"i": rid, "r": result})
            return True
        except DcsyncError as exc:
            write_frame(write, {"i": rid or 0, "e": error_to_wire(exc)})
            # The stream may be out of step (a refused upload's items are still coming): stop.
            return not (isinstance(exc, ProtocolError) or upload)
        except (OSError, RuntimeError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
            # Not ours to explain in detail (a library or the OS failed): say so to the client,
            # keep the traceback on stderr for the admin, and end the session cleanly.
            traceback.print_exc(file=sys.stderr)
            failure: DcsyncError = (
                StorageFull(f"the server ran out of space: {exc}")
                if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS
                else RemoteError(f"the server failed: {type(exc).__name__}: {exc}")
            )
            with contextlib.suppress(DcsyncError, OSError):
                write_frame(write, {"i": rid or 0, "e": error_to_wire(failure)})
            return False

    def close(self) -> None:
        self.quarantines.end()
        for store in self._open.values():
            store.close()
        self._open.clear()

    # -- helpers -----------------------------------------------------------------------------------
    def _store(self, det: str) -> ObjectStore:
        """The store of ``det``, once the caller is known to be allowed to read it."""
        if det not in self._open:
            det = checked_det(det)
            if not self.stores.exists(det):
                raise self.stores.missing(det)
            self.policy.check_read(self.who, det)
            self._open[det] = self.stores.open(det)
        return self._open[det]

    def _forget(self, det: str) -> None:
        """Close the handle kept on ``det`` (its HEAD is about to move)."""
        store = self._open.pop(det, None)
        if store is not None:
            store.close()

    def _may_write(self, det: str) -> bool:
        return not self.read_only and self.policy.acl().may_write(self.who, det)

    # -- methods -----------------------------------------------------------------------------------
    def do_hello(self, rid: int, read: Read, write: Write, **args: Any) -> dict[str, Any]:
        negotiate_version(args, peer_name="the client", self_name="the server")
        self.client.clear()
        self.client.update(
            user=args.get("user", ""), host=args.get("host", ""), software=args.get("software", "")
        )
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
        for det in self.stores.names():
            if any(fnmatch.fnmatchcase(det, g) for g in globs) and acl.allows(self.who, "read", det):
                heads[det] = self._store(det).head()
        return {"kind": self.ws.kind, "heads": heads}

    def do_negotiate(self, rid: int, read: Read, write: Write, wants: list[Any]) -> dict[str, Any]:
        return {"objects": dict(self._offer(want) for want in wants)}

    def _offer(self, want: Any) -> tuple[str, list[list[Any]]]:
        """One want of ``negotiate``: its detector, and the objects the client may lack."""
        if not isinstance(want, dict):
            raise ProtocolError("each want is a map")
        unknown = [str(key)[:60] for key in want if key not in WANT_KEYS]
        if unknown:
            raise ProtocolError(f"negotiate: unknown key(s) {sorted(unknown)[:10]} in a want")
        det = checked_det(want.get("detector"))
        store = self._store(det)
        haves = want.get("have")
        if haves is not None and not isinstance(haves, list):
            raise ProtocolError("'have' is a list of commit ids")
        have = [object_id(h) for h in haves or [] if store.has(object_id(h))]
        head, flt = object_id(want.get("want")), partial_filter(want.get("filter"))
        found = store.consistent(lambda: list(objects_for(store, head, have, flt, peer=self._peer())))
        return det, [[oid, kind, size] for oid, kind, size in found]

    def _peer(self) -> str:
        return self.heads.peer

    def do_get_objects(self, rid: int, read: Read, write: Write, items: list[Any]) -> dict[str, Any]:
        count = 0
        for det, oid in pairs(items):
            for item in ObjectSender(self._store(det)).items([oid]):
                write_frame(write, {"i": rid, "s": item})
            count += 1
        return {"count": count}

    def do_get_files(self, rid: int, read: Read, write: Write, items: list[Any]) -> dict[str, Any]:
        requests: list[tuple[str, int, str | None]] = []
        for item in items:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not (item[2] is None or isinstance(item[2], str))
            ):
                raise ProtocolError("items are [detector, offset, token or nil] triples")
            whole_number(item[1], "a get_files offset")
            det = checked_det(item[0])
            self._store(det)  # exists, and the caller may read it
            requests.append((det, item[1], item[2]))
        # A partial clone's file lacks payloads it was never sent, and a store may be no file at
        # all: such a detector goes object by object.
        partial = is_partial_clone(self.ws)
        files = {det: None if partial else self.stores.file_of(det) for det, _, _ in requests}
        skip = "the server is a partial clone" if partial else "the server keeps no file of it"
        total = sum(path.stat().st_size for path in files.values() if path is not None)
        write_frame(write, {"i": rid, "s": {"total": total}})
        chunk = chunk_size()
        for det, offset, token in requests:
            path = files[det]
            frames: Iterator[dict[str, Any] | FileRange] = (
                file_frames(path, det, offset, token, chunk) if path else iter([{"f": det, "skip": skip}])
            )
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
        for det, oid in pairs(items):
            stored = self.stores.exists(det) and self._store(det).has(oid)
            if det not in quarantines:
                # This session's own quarantine: asking creates no directory, and only a caller
                # who may write the detector takes over what an ended push left (to resume it).
                quarantines[det] = self.quarantines.get(det, adopt=self._may_write(det))
            answers.append(stored or quarantines[det].has(oid))
        return {"have": answers}

    def do_put_objects(self, rid: int, read: Read, write: Write, detector: str) -> dict[str, Any]:
        quarantine = self.quarantines.get(checked_det(detector), create=True, adopt=True)
        # An upload that ends inside an object leaves nothing of it (the receiver aborts it):
        # update_refs then finds it never arrived.
        with ObjectReceiver(quarantine.receive, peer=self._peer()) as receiver:
            for item in _uploaded(read, rid):
                receiver.feed(_upload_item(item, self._peer()))
        return {"received": receiver.received}

    def do_update_refs(
        self,
        rid: int,
        read: Read,
        write: Write,
        updates: list[Any],
        atomic: bool = False,
        message: str = "",
    ) -> dict[str, Any]:
        moves = parse_updates(updates)
        for move in moves:
            self._forget(move.detector)
        return self.heads.update(moves, atomic=atomic, message=message)


def _upload_item(value: Any, peer: str) -> ObjectStart | Chunk:
    try:
        return object_item(value)
    except BadField as exc:
        raise ProtocolError(f"{peer} sent a malformed put_objects item: {exc}") from None


def _uploaded(read: Read, rid: int) -> Iterator[Any]:
    """The items of an upload (request ``rid``), up to its end frame."""
    while True:
        frame = read_frame(read, decoding=ITEM)
        if not isinstance(frame, dict) or frame.get("i") != rid:
            raise ProtocolError("unexpected frame inside put_objects")
        if frame.get("end"):
            return
        yield frame.get("s")
