"""The transport seam: a :class:`Channel` is a pair of byte streams to a ``dcsync serve --stdio``
peer, plus its stderr. The protocol reads and writes through plain callables, so every transport
(in-process, local subprocess, paramiko SSH, the system ``ssh`` binary) implements only this.

Contract (tested for every implementation by :class:`dcsync.testing.channel.ChannelContract`):
- ``read(n)`` returns 1..n bytes, blocking until some arrive, and ``b""`` only at end of stream,
  by which time ``stderr_text()`` holds everything the peer wrote before it (its last words
  explain why it ended: "dcsync: not found");
- ``write(data)`` writes all of ``data`` or raises :class:`~dcsync.errors.ConnectionLost`;
- ``close()`` is idempotent, ends the peer's input, and reaps/stops the peer;
- ``stderr_text()`` returns what the peer wrote on stderr so far (drained continuously in the
  background so a chatty peer never deadlocks), for error messages;
- ``describe()`` names the peer for messages ("ssh://alice@host:22/calib").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType


class Channel(ABC):
    @abstractmethod
    def read(self, n: int) -> bytes: ...

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def stderr_text(self) -> str: ...

    @abstractmethod
    def describe(self) -> str: ...

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
