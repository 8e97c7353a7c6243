"""A client session with a ``dcsync serve`` peer over a :class:`~dcsync.transport.base.Channel`.

It reads the preamble, says hello, and then offers three request shapes: :meth:`Connection.call`
(one request, one result), :meth:`Connection.stream` (one request, many items, then a result) and
:meth:`Connection.upload` (one request followed by many items from us, then a result). Errors the
server sends come back as the same exception classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, NoReturn

from dcsync.errors import ConnectionLost, DcsyncError, ProtocolError
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
from dcsync.transport import open_channel
from dcsync.transport.base import Channel
from dcsync.version import __version__
from dcsync.workspace.config import RemoteConfig


class Connection:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.peer = channel.describe()
        self._next = 0
        try:
            read_preamble(channel.read, peer=self.peer, stderr=channel.stderr_text)
            self.server = self.call(
                "hello",
                decoding=HELLO_ANSWER,
                **hello_args(f"dcsync {__version__}", current_user(), current_host()),
            )
            negotiate_version(self.server, peer_name=self.peer, self_name="this machine")
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

    def call(self, method: str, *, decoding: Decoding = REPLY, **args: Any) -> Any:
        rid = self._send(method, args, decoding)
        frame = self._receive(rid, decoding)
        if "r" not in frame:
            raise ProtocolError(f"{self.peer} sent stream items for {method}, which returns one result")
        return frame["r"]

    def stream(self, method: str, **args: Any) -> Iterator[Any]:
        """Yield the items of a streamed result; the final result is in :attr:`last_result`."""
        rid = self._send(method, args, ITEM)
        while True:
            frame = self._receive(rid, ITEM)
            if "r" in frame:
                self.last_result = frame["r"]
                return
            if "s" not in frame:
                raise ProtocolError(f"{self.peer} sent a frame with neither item nor result")
            yield frame["s"]

    def upload(self, method: str, items: Iterable[Any], **args: Any) -> Any:
        """Send a request followed by ``items``; the server answers once at the end."""
        rid = self._send(method, args)
        try:
            for item in items:
                write_frame(self.channel.write, {"i": rid, "s": item})
            write_frame(self.channel.write, {"i": rid, "end": True})
        except (ConnectionLost, OSError) as exc:
            self._lost_while_sending(rid, exc)
        return self.call_result(rid)

    def call_result(self, rid: int) -> Any:
        frame = self._receive(rid, REPLY)
        if "r" not in frame:
            raise ProtocolError(f"{self.peer} sent an unexpected frame")
        return frame["r"]


def connect(remote: RemoteConfig, *, accept_new_host_key: bool = False) -> Connection:
    return Connection(
        open_channel(
            remote.url,
            remote_dcsync=remote.remote_dcsync,
            ssh_command=remote.ssh_command,
            accept_new_host_key=accept_new_host_key,
        )
    )
