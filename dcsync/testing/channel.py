"""Contract tests every :class:`~dcsync.transport.base.Channel` must pass, shipped in the package so
each transport runs the same suite by subclassing (STYLE.md item 11).

Use::

    class TestMyChannel(ChannelContract):
        def make_channel(self, peer: Peer) -> Channel:
            return MyChannel(peer.command())      # or peer.argv(), or peer.serve

A :class:`Peer` is a small program in one of a few modes (echo stdin to stdout, say goodbye and
exit, fail at once with only a word on stderr, flood stderr then echo, ignore its input),
available as an argv (a ``python -c`` script), as one shell command string (for SSH) and as an
in-process ``serve(read, write)`` function. Needs pytest.
"""

from __future__ import annotations

import random
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from dcsync.errors import ConnectionLost
from dcsync.transport.base import Channel

__all__ = ["PEER_SOURCE", "ChannelContract", "ForwardingChannel", "Peer", "PeerMode"]

PeerMode = Literal["echo", "exit", "fail", "flood", "hang"]
FLOOD_BYTES = 2 * 1024 * 1024
FLOOD_END = "END-OF-FLOOD"
EXIT_STATUS = 3
NOT_FOUND = "sh: 1: dcsync: not found"  # what a shell says when the remote has no dcsync on its PATH
DEADLINE = 20.0  # seconds a contract test waits for something that should take milliseconds

PEER_SOURCE = f"""\
import os, sys, time
mode = sys.argv[1]
def put(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
if mode == "exit":
    put(1, b"bye\\n")
    put(2, b"peer exiting\\n")
    sys.exit({EXIT_STATUS})
if mode == "fail":
    put(2, b"warning: some noise first\\n" * 2000 + b"{NOT_FOUND}\\n")
    os._exit(127)  # at once, as a shell does: stdout and stderr end together
if mode == "hang":
    time.sleep(30)
    sys.exit(0)
if mode == "flood":
    line = b"x" * 1023 + b"\\n"
    for _ in range({FLOOD_BYTES // 1024}):
        put(2, line)
    put(2, b"{FLOOD_END}\\n")
put(2, b"echo peer ready\\n")
while True:
    data = os.read(0, 65536)
    if not data:
        break
    put(1, data)
put(2, b"echo peer done\\n")
"""


class ForwardingChannel(Channel):
    """Passes everything to ``inner``; a test channel overrides a part (those of
    tests/helpers/channels.py and the benchmarks, :class:`~dcsync.testing.sync.WireTap`)."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner

    def read(self, n: int) -> bytes:
        return self.inner.read(n)

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()

    def stderr_text(self) -> str:
        return self.inner.stderr_text()

    def describe(self) -> str:
        return self.inner.describe()


@dataclass(frozen=True)
class Peer:
    """The test peer in one mode, as an argv, a shell command, or an in-process serve function."""

    mode: PeerMode

    def argv(self) -> list[str]:
        return [sys.executable, "-c", PEER_SOURCE, self.mode]

    def command(self) -> str:
        return shlex.join(self.argv())

    def serve(self, read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        """The same behaviour in process; stderr text becomes an exception (the thread's stderr)."""
        if self.mode == "exit":
            write(b"bye\n")
            raise RuntimeError("peer exiting")
        if self.mode == "fail":
            raise FileNotFoundError(NOT_FOUND)
        if self.mode == "hang":
            raise NotImplementedError("an in-process peer cannot ignore close()")
        while data := read(65536):
            write(data)


class ChannelContract:
    """Subclass and implement :meth:`make_channel`."""

    #: False for transports whose peers have no real stderr (in process: only exceptions).
    peer_has_stderr: ClassVar[bool] = True
    #: False when close() cannot stop a peer that ignores its input (a thread cannot be killed).
    can_stop_peer: ClassVar[bool] = True
    #: Sizes for the round trip; the largest moves this many bytes each way.
    round_trip_sizes: ClassVar[tuple[int, ...]] = (0, 1, 65_537, 3_000_000)
    #: How many peers the end-of-stream test starts: the race it guards against is lost only sometimes.
    end_of_stream_repeats: ClassVar[int] = 40

    def make_channel(self, peer: Peer) -> Channel:
        raise NotImplementedError

    @pytest.fixture
    def open_peer(self) -> Iterator[Callable[[PeerMode], Channel]]:
        channels: list[Channel] = []

        def open_peer(mode: PeerMode) -> Channel:
            channel = self.make_channel(Peer(mode))
            channels.append(channel)
            return channel

        yield open_peer
        for channel in channels:
            channel.close()

    # -- the tests ----------------------------------------------------------------------------------

    def test_describe_is_not_empty(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        assert open_peer("echo").describe().strip()

    def test_round_trip_in_random_chunks(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        channel = open_peer("echo")
        rng = random.Random(20261121)
        for size in self.round_trip_sizes:
            payload = rng.randbytes(size)
            assert _echo(channel, payload, rng) == payload, f"round trip of {size} bytes"

    def test_read_returns_empty_bytes_at_end_of_stream(
        self, open_peer: Callable[[PeerMode], Channel]
    ) -> None:
        channel = open_peer("exit")
        assert _read_to_end(channel) == b"bye\n"
        assert channel.read(10) == b""  # and stays at the end

    def test_write_after_peer_exit_raises_connection_lost(
        self, open_peer: Callable[[PeerMode], Channel]
    ) -> None:
        channel = open_peer("exit")
        _read_to_end(channel)
        deadline = time.monotonic() + DEADLINE
        with pytest.raises(ConnectionLost) as caught:
            while time.monotonic() < deadline:  # a pipe may take a moment to notice
                channel.write(b"x" * 65536)
                time.sleep(0.01)
        assert channel.describe() in str(caught.value)
        assert "peer exiting" in str(caught.value)  # the peer's stderr explains what happened

    def test_stderr_is_captured(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        channel = open_peer("exit")
        _read_to_end(channel)
        _wait_for(lambda: "peer exiting" in channel.stderr_text())

    def test_stderr_is_complete_when_read_reports_the_end_of_stream(
        self, open_peer: Callable[[PeerMode], Channel]
    ) -> None:
        """A peer that cannot start ("dcsync: not found") is explained only by its stderr, and the
        caller reads it as soon as ``read`` returns ``b""``: by then it must all be there, with no
        waiting or polling. Its stdout and stderr end at the same moment, and the thread draining
        stderr may not have run yet; repeated, because that race is lost only sometimes."""
        for attempt in range(self.end_of_stream_repeats):
            channel = open_peer("fail")
            assert _read_to_end(channel) == b""
            assert NOT_FOUND in channel.stderr_text(), f"attempt {attempt}: {channel.stderr_text()[-200:]!r}"
            channel.close()

    def test_a_peer_flooding_stderr_does_not_deadlock(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        channel = open_peer("flood")
        payload = random.Random(7).randbytes(300_000)
        assert _echo(channel, payload, random.Random(8)) == payload
        if self.peer_has_stderr:
            _wait_for(lambda: FLOOD_END in channel.stderr_text())
            assert len(channel.stderr_text()) < FLOOD_BYTES // 4  # only a bounded tail is kept

    def test_close_is_idempotent(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        channel = open_peer("echo")
        assert _echo(channel, b"hello", random.Random(1)) == b"hello"
        channel.close()
        channel.close()
        with channel:  # the context manager closes too
            pass

    def test_close_without_reading(self, open_peer: Callable[[PeerMode], Channel]) -> None:
        channel = open_peer("echo")
        channel.write(b"unread output " * 1000)
        started = time.monotonic()
        channel.close()
        assert time.monotonic() - started < DEADLINE

    def test_close_stops_a_peer_that_ignores_its_input(
        self, open_peer: Callable[[PeerMode], Channel]
    ) -> None:
        if not self.can_stop_peer:
            pytest.skip("this transport cannot stop its peer")
        channel = open_peer("hang")
        started = time.monotonic()
        channel.close()
        assert time.monotonic() - started < 10


def _echo(channel: Channel, payload: bytes, rng: random.Random) -> bytes:
    """Write ``payload`` in random chunks from a thread while reading it back in random sizes."""
    errors: list[BaseException] = []
    read_rng = random.Random(rng.random())

    def writer() -> None:
        try:
            view = memoryview(payload)
            while view:
                size = rng.randint(1, 200_000)
                channel.write(bytes(view[:size]))
                view = view[size:]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    received = bytearray()
    while len(received) < len(payload):
        n = read_rng.randint(1, 150_000)
        chunk = channel.read(n)
        assert 0 < len(chunk) <= n, "read(n) returns 1..n bytes before the end of stream"
        received += chunk
    thread.join(DEADLINE)
    assert not errors, errors
    return bytes(received)


def _read_to_end(channel: Channel) -> bytes:
    out = bytearray()
    while chunk := channel.read(4096):
        out += chunk
    return bytes(out)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
