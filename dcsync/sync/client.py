"""A client session with a ``dcsync serve`` peer over a :class:`~dcsync.transport.base.Channel`.

It reads the preamble, says hello, and then offers one method per protocol call (``heads``,
``negotiate``, ``get_objects``, ``get_files``, ``have``, ``put_objects``, ``update_refs``), each
returning what :mod:`dcsync.sync.replies` built from the answer after checking it: a reply that
does not match the protocol is a :class:`~dcsync.errors.ProtocolError` naming the call and the
field. All of them go through one generic request (a call, a streamed result or an upload). Errors
the server sends come back as the same exception classes.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, NoReturn

from dcsync.errors import ConnectionLost, DcsyncError, ProtocolError
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.model.limits import HELLO_ANSWER, ITEM, REPLY, Decoding
from dcsync.sync.protocol import (
    error_from_wire,
    hello_args,
    negotiate_version,
    read_frame,
    read_preamble,
    write_frame,
)
from dcsync.sync.replies import (
    Heads,
    Hello,
    Offered,
    RefsUpdated,
    RefUpdate,
    checked,
    file_item,
    have_answers,
    offered_objects,
    refs_updated,
    sent_count,
)
from dcsync.sync.transfer import Chunk, ObjectStart, object_item
from dcsync.transport import open_channel
from dcsync.transport.base import Channel
from dcsync.version import __version__
from dcsync.workspace.config import RemoteConfig


class Connection:
    """A session with a server: the handshake on opening (kept as :attr:`server`), then one
    method per protocol call, each returning the checked reply (:mod:`dcsync.sync.replies`)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.peer = channel.describe()
        self._next = 0
        try:
            read_preamble(channel.read, peer=self.peer, stderr=channel.stderr_text)
            args = hello_args(f"dcsync {__version__}", current_user(), current_host())
            reply = self._request("hello", args, decoding=HELLO_ANSWER)
            # Compatibility first: a newer server's hello is judged by its versions, not its shape.
            negotiate_version(reply, peer_name=self.peer, self_name="this machine")
            self.server: Hello = checked("hello", self.peer, Hello.from_wire, reply)
        except BaseException:
            channel.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _send(self, method: str, args: dict[str, Any], decoding: Decoding = REPLY) -> int:
        self._next += 1
        try:
            write_frame(self.channel.write, {"i": self._next, "m": method, "a": args})
        except (ConnectionLost, OSError) as exc:
            self._lost_while_sending(self._next, exc, decoding)
        return self._next

    def _lost_while_sending(self, rid: int, exc: BaseException, decoding: Decoding = REPLY) -> NoReturn:
        """A write failed: a server that refuses (a forced command's wrong key, a refused upload)
        says why and stops reading, and may be gone before our request is out. Its answer is the
        error to report; only without one is this a lost connection."""
        try:
            self._receive(rid, decoding)
        except DcsyncError as refusal:  # its error, or the lost connection with what it said on stderr
            raise refusal from exc
        raise ConnectionLost(f"{self.peer}: connection lost while sending: {exc}") from exc

    def _receive(self, rid: int, decoding: Decoding) -> dict[str, Any]:
        """The next frame of request ``rid``, decoded within the limits of what it should be."""
        try:
            frame = read_frame(self.channel.read, decoding=decoding)
        except ConnectionLost as exc:
            detail = self.channel.stderr_text().strip()
            raise ConnectionLost(
                f"{self.peer}: connection lost ({exc.message})"
                + (f"; the server said: {detail[-1000:]}" if detail else "")
            ) from exc
        if not isinstance(frame, dict):
            raise ProtocolError(f"{self.peer} sent a frame that is not a map")
        if "e" in frame:
            raise error_from_wire(frame["e"], peer=self.peer)
        if frame.get("i") != rid:
            raise ProtocolError(f"{self.peer} answered request {frame.get('i')!r}, expected {rid}")
        return frame

    # -- the generic request: every method below goes through it ------------------------------------
    def _request(
        self,
        method: str,
        args: dict[str, Any],
        *,
        upload: Iterable[Any] | None = None,
        decoding: Decoding = REPLY,
    ) -> Any:
        """Send one request (followed by ``upload``'s items, for an upload) and return the raw
        result; the typed methods check it. Tests call this to send what no typed method would."""
        rid = self._send(method, args, decoding)
        if upload is not None:
            try:
                for item in upload:
                    write_frame(self.channel.write, {"i": rid, "s": item})
                write_frame(self.channel.write, {"i": rid, "end": True})
            except (ConnectionLost, OSError) as exc:
                self._lost_while_sending(rid, exc)
        frame = self._receive(rid, decoding)
        if "r" not in frame:
            raise ProtocolError(f"{self.peer} sent stream items for {method}, which returns one result")
        return frame["r"]

    def _items(self, method: str, args: dict[str, Any]) -> Generator[Any, None, Any]:
        """The raw items of a streamed result; the generator's return value is the final result."""
        rid = self._send(method, args, ITEM)
        while True:
            frame = self._receive(rid, ITEM)
            if "r" in frame:
                return frame["r"]
            if "s" not in frame:
                raise ProtocolError(f"{self.peer} sent a {method} frame with neither item nor result")
            yield frame["s"]

    # -- one method per protocol call (docs/protocol.md, "Methods") -------------------------------------
    def heads(self, detectors: list[str] | None = None) -> Heads:
        """The HEAD of every detector matching ``detectors`` (globs; None: all) the caller may read."""
        return checked("heads", self.peer, Heads.from_wire, self._request("heads", {"detectors": detectors}))

    def negotiate(self, wants: list[dict[str, Any]]) -> dict[str, tuple[Offered, ...]]:
        """The objects the server would send for ``wants``, per detector (docs/protocol.md)."""
        asked = {str(want["detector"]) for want in wants}
        reply = self._request("negotiate", {"wants": wants})
        return checked("negotiate", self.peer, lambda r: offered_objects(r, asked), reply)

    def get_objects(self, pairs: Sequence[tuple[str, ObjectId]]) -> Iterator[ObjectStart | Chunk]:
        """Stream the objects ``pairs`` (detector, id) name: a header, then its chunks, for each."""
        items = self._items("get_objects", {"items": [[det, oid] for det, oid in pairs]})
        while True:
            try:
                item = next(items)
            except StopIteration as end:
                checked("get_objects", self.peer, lambda r: sent_count(r, "count", len(pairs)), end.value)
                return
            yield checked("get_objects", self.peer, object_item, item)

    def get_files(self, items: list[list[Any]]) -> Iterator[dict[str, Any]]:
        """Stream whole repository files (``[detector, offset, token or nil]`` each); the items are
        maps that :func:`dcsync.sync.wholefile.fetch_files` reads."""
        stream = self._items("get_files", {"items": items})
        while True:
            try:
                item = next(stream)
            except StopIteration as end:
                checked("get_files", self.peer, lambda r: sent_count(r, "count", len(items)), end.value)
                return
            yield checked("get_files", self.peer, file_item, item)

    def have(self, pairs: Sequence[tuple[str, ObjectId]]) -> tuple[bool, ...]:
        """Whether the server already has each object (stored, or in this session's quarantine)."""
        if not pairs:
            return ()
        reply = self._request("have", {"items": [[det, oid] for det, oid in pairs]})
        return checked("have", self.peer, lambda r: have_answers(r, len(pairs)), reply)

    def put_objects(self, detector: str, items: Iterable[dict[str, Any]]) -> int:
        """Upload objects (header and chunk items) into the server's quarantine; how many arrived."""
        reply = self._request("put_objects", {"detector": detector}, upload=items)
        return checked("put_objects", self.peer, lambda r: sent_count(r, "received"), reply)

    def update_refs(
        self, updates: list[RefUpdate], *, atomic: bool = False, message: str = ""
    ) -> RefsUpdated:
        """Ask the server to move HEADs; per-detector results (``atomic``: all or an error)."""
        args = {"updates": [u.to_wire() for u in updates], "atomic": atomic, "message": message}
        asked = {u.detector for u in updates}
        reply = self._request("update_refs", args)
        return checked("update_refs", self.peer, lambda r: refs_updated(r, asked, self.peer), reply)


def connect(remote: RemoteConfig, *, accept_new_host_key: bool = False) -> Connection:
    return Connection(
        open_channel(
            remote.url,
            remote_dcsync=remote.remote_dcsync,
            ssh_command=remote.ssh_command,
            accept_new_host_key=accept_new_host_key,
        )
    )
