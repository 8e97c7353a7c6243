"""The sync protocol on the wire (docs/protocol.md): frames and their caps, the preamble, the hello,
errors as codes rebuilt as the same classes, and a real server fed hostile frames written by hand.

The server must answer every bad message with an error frame, end the session where the stream may
be out of step, never crash with a traceback, create nothing outside its root and leave the served
workspace verifiable.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.deadline import deadline as _deadline

from dcsync import errors
from dcsync.errors import (
    AccessDenied,
    ConnectionLost,
    CorruptObject,
    DcsyncError,
    DetectorNotFound,
    IncompatiblePeer,
    InvalidName,
    ObjectNotFound,
    ProtocolError,
    RefConflict,
    RemoteError,
)
from dcsync.model.hashing import ALGORITHM, ObjectId, hash_bytes
from dcsync.repo.reach import objects_for, transfer_header
from dcsync.repo.repository import Repository
from dcsync.sync.client import Connection
from dcsync.sync.protocol import (
    CAPABILITIES,
    MAX_BANNER,
    PREAMBLE,
    PROTOCOL_VERSION,
    ArgSpec,
    bytes_frame_head,
    error_from_wire,
    error_to_wire,
    hello_args,
    negotiate_version,
    read_frame,
    read_preamble,
    write_frame,
)
from dcsync.sync.quarantine import MAX_BODY
from dcsync.sync.replies import RefUpdate
from dcsync.sync.server import SPECS, Server
from dcsync.transport.local import InProcessChannel, SubprocessChannel
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import CONFIG_DIR, Workspace

DET = "epix-1"
TIMEOUT = 10.0  # seconds any single read may take before the test calls it a hang

# -- helpers -------------------------------------------------------------------------------------------


def deadline(seconds: float = TIMEOUT) -> contextlib.AbstractContextManager[None]:
    return _deadline(seconds)


def reader(data: bytes, *, step: int | None = None) -> Callable[[int], bytes]:
    """A read(n) over ``data``: at most ``step`` bytes a call (partial reads), b"" at the end."""
    stream = io.BytesIO(data)

    def read(n: int) -> bytes:
        return stream.read(n if step is None else min(n, step))

    return read


def framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def quarantine_dir(root: Path, det: str = DET) -> Path:
    return root / CONFIG_DIR / "incoming" / det


def quarantined(root: Path, det: str = DET) -> list[Path]:
    """Every file push sessions left in quarantine for ``det`` (one folder per session)."""
    folder = quarantine_dir(root, det)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_verifies(root: Path) -> None:
    ws = Workspace(root)
    for det in ws.detectors():
        report = verify_path(ws.detector_path(det))
        assert report.ok, report.problems


def head_of(root: Path, det: str = DET) -> ObjectId | None:
    with Repository.open(Workspace(root).detector_path(det)) as repo:
        return repo.head()


class RawSession:
    """A real :class:`Server` over an :class:`InProcessChannel`; the test writes frames by hand."""

    def __init__(self, root: Path, *, read_only: bool = False, hello: bool = True) -> None:
        self.server = Server(root, read_only=read_only)
        self.channel = InProcessChannel(self.server.serve, description="test server")
        self.rid = 0
        with deadline():
            read_preamble(self.channel.read, peer="test server")
        if hello:
            self.hello = self.result(self.request("hello", **hello_args("dcsync test", "tester", "here")))

    def send(self, value: Any) -> None:
        write_frame(self.channel.write, value)

    def send_quietly(self, value: Any) -> None:
        """Send, ignoring a server that already hung up (it refused an upload midway)."""
        with contextlib.suppress(ConnectionLost):
            self.send(value)

    def receive(self) -> Any:
        with deadline():
            return read_frame(self.channel.read)

    def request(self, method: str, **args: Any) -> Any:
        self.rid += 1
        self.send({"i": self.rid, "m": method, "a": args})
        return self.receive()

    def result(self, frame: Any) -> Any:
        assert isinstance(frame, dict) and set(frame) == {"i", "r"}, frame
        assert frame["i"] == self.rid
        return frame["r"]

    def upload(self, detector: Any, items: list[Any], *, end: bool = True) -> Any:
        """put_objects with ``items`` as stream frames; returns the server's one answer."""
        self.rid += 1
        self.send({"i": self.rid, "m": "put_objects", "a": {"detector": detector}})
        for item in items:
            self.send_quietly({"i": self.rid, "s": item})
        if end:
            self.send_quietly({"i": self.rid, "end": True})
        return self.receive()

    def ended(self) -> bool:
        """True when the server closed the session (its output is at end of stream)."""
        with deadline():
            return self.channel.read(1) == b""

    def alive(self) -> bool:
        """The session still answers requests in step."""
        return "r" in self.request("heads")

    def close(self) -> None:
        self.channel.close()
        self.server.close()
        assert self.channel.finished, "the server thread is still running"
        assert self.channel.stderr_text() == "", f"the server crashed:\n{self.channel.stderr_text()}"


def error_of(frame: Any, code: str | None = None) -> dict[str, Any]:
    """The error of an error frame (asserting it is one, with ``code`` when given)."""
    assert isinstance(frame, dict) and set(frame) == {"i", "e"}, frame
    err = frame["e"]
    assert isinstance(err, dict) and isinstance(err["message"], str) and err["message"]
    assert err["code"] in errors.by_wire_code(), err
    if code is not None:
        assert err["code"] == code, err
    return err


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A workspace with one detector holding an array and a text constant."""
    root = tmp_path / "served"
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("first constants") as tx:
        tx.add("pedestals", np.arange(24, dtype="<f4").reshape(4, 6), begin_ns=100)
        tx.add("geometry", "geometry ✓ text", begin_ns=100)
    return root


@pytest.fixture
def session(served: Path) -> Iterator[Callable[..., RawSession]]:
    """Opens raw sessions on ``served``; each is closed and checked for a crash at the end."""
    opened: list[RawSession] = []

    def open_session(**kwargs: Any) -> RawSession:
        opened.append(RawSession(served, **kwargs))
        return opened[-1]

    yield open_session
    for raw in opened:
        raw.close()
    assert_verifies(served)


@pytest.fixture
def connection(served: Path) -> Iterator[Connection]:
    server = Server(served)
    channel = InProcessChannel(server.serve)
    with Connection(channel) as conn:
        yield conn
    server.close()
    assert channel.stderr_text() == ""


def descendant(served: Path, work: Path, *, diverge: bool = False) -> tuple[Path, ObjectId, ObjectId]:
    """A copy of the served detector with one more commit: (file, served HEAD, new commit).

    ``diverge`` makes the new commit a sibling of the served HEAD instead of its child.
    """
    work.mkdir(exist_ok=True)
    path = work / f"{DET}.h5"
    shutil.copy(Workspace(served).detector_path(DET), path)
    with Repository.open(path) as repo:
        old = repo.head()
        assert old is not None
        if diverge:
            parent = repo.commit().parents[0]
            with repo.store.writing():
                repo.store.set_ref("HEAD", old, parent, _record(old, parent))
        with repo.transaction("more constants") as tx:
            tx.add("pedestals", np.full((4, 6), 7.5, dtype="<f4"), begin_ns=200)
        new = repo.head()
        assert new is not None
    return path, old, new


def _record(old: ObjectId, new: ObjectId) -> Any:
    from dcsync.store.refs import HEAD, LogRecord

    return LogRecord(HEAD, old, new, "reset", "test: move HEAD back")


def object_items(path: Path, new: ObjectId, have: list[ObjectId], chunk: int = 5) -> list[dict[str, Any]]:
    """What a client streams in put_objects for ``new``: header then chunk items per object."""
    items: list[dict[str, Any]] = []
    with Repository.open(path) as repo:
        for oid, _, _ in objects_for(repo.store, new, have, {}):
            header, pieces = transfer_header(repo.store, oid, chunk)
            items.append({"h": header})
            body = b"".join(pieces)
            items.extend({"c": body[i : i + chunk]} for i in range(0, len(body), chunk))
    return items


# -- frames --------------------------------------------------------------------------------------------

ROUND_TRIP = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    "",
    "text ✓",
    b"",
    b"\x00\xff" * 1000,
    [],
    [1, [2, [3]]],
    {},
    {"i": 7, "m": "heads", "a": {"detectors": ["epix-*"]}},
    {"i": 1, "s": {"c": bytes(range(256))}},
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_frames_round_trip(value: Any) -> None:
    out = io.BytesIO()
    write_frame(out.write, value)
    data = out.getvalue()
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    assert read_frame(reader(data)) == value
    assert read_frame(reader(data, step=1)) == value  # one byte per read: partial reads are fine


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("rid", [1, 127, 128, 2**31])
def test_a_bytes_frame_head_is_what_write_frame_sends_before_the_bytes(rid: int, size: int) -> None:
    """The server sends whole-file chunks as this head followed by the file's bytes (sendfile)."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sent: list[bytes] = []
    write_frame(sent.append, {"i": rid, "s": {"c": data}})
    assert bytes_frame_head(rid, size) + data == b"".join(sent)


def test_several_frames_read_back_in_order() -> None:
    out = io.BytesIO()
    for i in range(5):
        write_frame(out.write, {"i": i})
    read = reader(out.getvalue(), step=3)
    assert [read_frame(read)["i"] for _ in range(5)] == list(range(5))
    with pytest.raises(ConnectionLost, match="after 0 of 4"):
        read_frame(read)


def test_frame_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSYNC_MAX_FRAME", "100")
    fits, too_big = b"x" * 98, b"x" * 99  # msgpack bin 8: two bytes of header
    out = io.BytesIO()
    write_frame(out.write, fits)
    assert read_frame(reader(out.getvalue())) == fits
    with pytest.raises(ProtocolError, match="refusing to send a frame of 101 bytes"):
        write_frame(io.BytesIO().write, too_big)
    with pytest.raises(ProtocolError, match="101 bytes, over the limit of 100"):
        read_frame(reader(framed(b"\xc4\x63" + too_big)))


@pytest.mark.parametrize("size", [2**24 + 1, 2**31, 2**32 - 1])
def test_oversized_frames_are_refused_before_reading_the_body(size: int) -> None:
    asked: list[int] = []

    def read(n: int) -> bytes:
        asked.append(n)
        return size.to_bytes(4, "big") if len(asked) == 1 else b"\x00" * n

    with pytest.raises(ProtocolError, match="over the limit"):
        read_frame(read)
    assert asked == [4]  # nothing was read, let alone allocated, for the announced body


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00\x00\x00", framed(b"\x92\x01\x02")[:-1], b"\x00\x00\x10\x00" + b"\x90" * 100],
    ids=["empty", "1-byte-prefix", "3-byte-prefix", "short-body", "body-cut"],
)
def test_truncated_frames_are_connection_lost(data: bytes) -> None:
    with pytest.raises(ConnectionLost, match="connection closed after"):
        read_frame(reader(data, step=2))


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"", "truncated"),
        (b"\xc1", "not valid msgpack"),  # 0xc1 is never used
        (b"\x92\x01", "truncated"),
        (b"\x81\x01\x02", "not valid msgpack"),  # an int map key
        (b"\xd4\x01\x00", "not valid msgpack"),  # an ext type
        (b"\xa2\xff\xfe", "not valid msgpack"),  # a str that is not UTF-8
        (b"\x91" * 2000 + b"\xc0", "nested deeper than 6 levels"),  # nested too deep
        (b"\xdd\xff\xff\xff\xff", "truncated|not valid"),  # an array of 4 billion items announced
    ],
)
def test_malformed_bodies_are_protocol_errors(body: bytes, what: str) -> None:
    with pytest.raises(ProtocolError, match=what):
        read_frame(reader(framed(body)))


def test_trailing_garbage_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="trailing garbage"):
        read_frame(reader(framed(b"\x01\x02")))


# -- the preamble --------------------------------------------------------------------------------------


def test_preamble_alone_is_accepted_and_nothing_more_is_read() -> None:
    read = reader(PREAMBLE + framed(b"\x01"))
    read_preamble(read, peer="peer")
    assert read_frame(read) == 1


def test_a_banner_before_the_preamble_is_reported_by_name() -> None:
    banner = b"Welcome to the beamline host!\nLast login: yesterday\n"
    with pytest.raises(ProtocolError, match="Welcome to the beamline host") as info:
        read_preamble(reader(banner + PREAMBLE), peer="ssh://host/calib")
    assert "ssh://host/calib" in info.value.message
    assert "non-interactive" in info.value.message


def test_no_preamble_in_64_kib_is_not_a_dcsync_server() -> None:
    with pytest.raises(ProtocolError, match="not a dcsync server"):
        read_preamble(reader(b"y" * (MAX_BANNER + 10) + PREAMBLE), peer="peer")


def test_end_of_stream_with_stderr_quotes_it() -> None:
    with pytest.raises(RemoteError, match="dcsync: command not found"):
        read_preamble(reader(b""), peer="peer", stderr=lambda: "bash: dcsync: command not found\n")
    with pytest.raises(ConnectionLost, match="before the dcsync server answered"):
        read_preamble(reader(b"half a banner"), peer="peer")


def test_a_missing_remote_program_is_reported_with_its_stderr() -> None:
    script = "import sys; sys.stderr.write('sh: 1: dcsync: not found\\n'); sys.exit(127)"
    channel = SubprocessChannel([sys.executable, "-c", script], description="fake remote")
    with pytest.raises(RemoteError, match="dcsync: not found"):
        Connection(channel)


def test_a_login_banner_through_a_real_session(served: Path) -> None:
    server = Server(served)

    def chatty(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        write(b"motd: scheduled maintenance on Tuesday\n")
        server.serve(read, write)

    with pytest.raises(ProtocolError, match="scheduled maintenance"):
        Connection(InProcessChannel(chatty))
    server.close()


# -- the hello -----------------------------------------------------------------------------------------


def test_hello_reports_ranges_hash_capabilities_and_location(connection: Connection) -> None:
    hello = connection.server
    assert hello.protocol == PROTOCOL_VERSION and hello.min_protocol <= PROTOCOL_VERSION
    assert hello.hash == ALGORITHM
    assert set(hello.capabilities) == set(CAPABILITIES)
    assert hello.kind == "repository" and hello.read_only is False


def _range(lo: int, hi: int) -> dict[str, Any]:
    return {"protocol": hi, "min_protocol": lo, "hash": ALGORITHM}


@pytest.mark.parametrize(
    ("mine", "theirs", "chosen"),
    [((1, 1), (1, 1), 1), ((1, 3), (2, 5), 3), ((2, 5), (1, 3), 3), ((1, 9), (4, 4), 4)],
)
def test_version_negotiation_picks_the_highest_common_version(
    monkeypatch: pytest.MonkeyPatch, mine: tuple[int, int], theirs: tuple[int, int], chosen: int
) -> None:
    monkeypatch.setattr("dcsync.sync.protocol.MIN_PROTOCOL_VERSION", mine[0])
    monkeypatch.setattr("dcsync.sync.protocol.PROTOCOL_VERSION", mine[1])
    assert negotiate_version(_range(*theirs), peer_name="peer") == chosen


@pytest.mark.parametrize(
    ("mine", "theirs", "older"),
    [((1, 1), (2, 3), "this side"), ((3, 4), (1, 2), "the peer"), ((5, 6), (1, 4), "the peer")],
)
def test_incompatible_ranges_name_both_and_the_side_to_upgrade(
    monkeypatch: pytest.MonkeyPatch, mine: tuple[int, int], theirs: tuple[int, int], older: str
) -> None:
    monkeypatch.setattr("dcsync.sync.protocol.MIN_PROTOCOL_VERSION", mine[0])
    monkeypatch.setattr("dcsync.sync.protocol.PROTOCOL_VERSION", mine[1])
    with pytest.raises(IncompatiblePeer) as info:
        negotiate_version(_range(*theirs), peer_name="the peer")
    message = info.value.message
    assert f"{theirs[0]}..{theirs[1]}" in message and f"{mine[0]}..{mine[1]}" in message
    assert message.endswith(f"upgrade dcsync on {older}")


@pytest.mark.parametrize("hello", [{}, {"protocol": "1", "min_protocol": 1, "hash": ALGORITHM}, [1, 2], None])
def test_a_malformed_hello_is_a_protocol_error(hello: Any) -> None:
    with pytest.raises(ProtocolError, match="malformed hello"):
        negotiate_version(hello, peer_name="peer")


def test_server_refuses_a_newer_client_it_cannot_serve(session: Callable[..., RawSession]) -> None:
    raw = session(hello=False)
    args = hello_args("dcsync 99", "u", "h") | {"protocol": 7, "min_protocol": 5}
    err = error_of(raw.request("hello", **args), "remote.incompatible")
    assert "5..7" in err["message"] and f"1..{PROTOCOL_VERSION}" in err["message"]
    assert err["message"].endswith("upgrade dcsync on the server")


def test_server_refuses_an_older_client(
    session: Callable[..., RawSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dcsync.sync.protocol.MIN_PROTOCOL_VERSION", 3)
    monkeypatch.setattr("dcsync.sync.protocol.PROTOCOL_VERSION", 4)
    raw = session(hello=False)
    err = error_of(raw.request("hello", **_range(1, 2), capabilities=[]), "remote.incompatible")
    assert err["message"].endswith("upgrade dcsync on the client")


def test_server_serves_a_newer_client_that_still_speaks_its_version(
    session: Callable[..., RawSession],
) -> None:
    raw = session(hello=False)
    answer = raw.result(raw.request("hello", **_range(1, 5), capabilities=["atomic", "future"]))
    assert answer["protocol"] == PROTOCOL_VERSION
    assert raw.alive()


def test_server_refuses_another_hash_algorithm(session: Callable[..., RawSession]) -> None:
    raw = session(hello=False)
    args = hello_args("dcsync test", "u", "h") | {"hash": "sha256"}
    err = error_of(raw.request("hello", **args), "remote.incompatible")
    assert "sha256" in err["message"] and ALGORITHM in err["message"]


def test_client_refuses_a_server_it_cannot_speak_to() -> None:
    def newer(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        write(PREAMBLE)
        request = read_frame(read)
        write_frame(write, {"i": request["i"], "r": _range(8, 9) | {"capabilities": []}})
        read(1)

    with pytest.raises(IncompatiblePeer, match=r"8\.\.9.*upgrade dcsync on this machine"):
        Connection(InProcessChannel(newer))


# -- errors cross as codes -----------------------------------------------------------------------------


def test_wire_codes_are_unique() -> None:
    classes = errors._all_subclasses(DcsyncError)
    assert len({cls.wire_code for cls in classes}) == len(classes)


@pytest.mark.parametrize("cls", errors._all_subclasses(DcsyncError), ids=lambda c: c.__name__)
def test_every_error_is_rebuilt_as_the_same_class(cls: type[DcsyncError]) -> None:
    rebuilt = error_from_wire(error_to_wire(cls(f"a {cls.__name__} happened")), peer="peer")
    assert type(rebuilt) is cls
    assert rebuilt.message == f"a {cls.__name__} happened"


def test_unknown_codes_become_remote_errors() -> None:
    rebuilt = error_from_wire({"code": "quota.exceeded", "message": "over quota"}, peer="peer")
    assert type(rebuilt) is RemoteError and rebuilt.message == "over quota"


@pytest.mark.parametrize("value", [None, "boom", {"code": "usage"}, {"code": "usage", "message": 3}])
def test_malformed_errors_are_protocol_errors(value: Any) -> None:
    assert isinstance(error_from_wire(value, peer="peer"), ProtocolError)


def test_unknown_code_from_a_server_is_a_remote_error() -> None:
    def odd(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        write(PREAMBLE)
        request = read_frame(read)
        write_frame(write, {"i": request["i"], "e": {"code": "from.the.future", "message": "try later"}})
        read(1)

    with pytest.raises(RemoteError, match="try later") as info:
        Connection(InProcessChannel(odd))
    assert type(info.value) is RemoteError


def test_missing_detector_is_detector_not_found(connection: Connection) -> None:
    head = connection.heads().heads[DET]
    with pytest.raises(DetectorNotFound, match="epix-2"):
        connection.negotiate([{"detector": "epix-2", "want": head}])
    with pytest.raises(DetectorNotFound, match="epix-2"):
        list(connection.get_objects([("epix-2", head)]))
    # heads is the exception: it lists what exists, so a push can create a new detector
    assert connection.heads(["epix-2"]).heads == {}
    assert connection.heads([DET]).heads == {DET: head}


def test_missing_object_is_object_not_found(connection: Connection) -> None:
    with pytest.raises(ObjectNotFound):
        list(connection.get_objects([(DET, "0" * 32)]))
    assert connection.have([(DET, ObjectId("0" * 32))]) == (False,)  # still in step


def test_read_only_server_refuses_writes(served: Path, tmp_path: Path) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    server = Server(served, read_only=True)
    channel = InProcessChannel(server.serve)
    with Connection(channel) as conn:
        assert conn.server.read_only is True
        with pytest.raises(AccessDenied, match="read-only"):
            conn.update_refs([RefUpdate(DET, old, new)])
        with pytest.raises(AccessDenied, match="read-only"):
            conn.put_objects(DET, object_items(path, new, [old]))
    server.close()
    assert channel.stderr_text() == ""
    assert head_of(served) == old
    assert not quarantine_dir(served).exists()


# -- streams: get_objects, put_objects, update_refs ------------------------------------------------


def test_get_objects_streams_headers_and_bounded_chunks(
    session: Callable[..., RawSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", "16")
    raw = session()
    head = raw.result(raw.request("heads"))["heads"][DET]
    offered = raw.result(raw.request("negotiate", wants=[{"detector": DET, "want": head}]))["objects"][DET]
    raw.rid += 1
    raw.send({"i": raw.rid, "m": "get_objects", "a": {"items": [[DET, oid] for oid, _, _ in offered]}})
    bodies: dict[str, bytearray] = {}
    headers: dict[str, dict[str, Any]] = {}
    while "s" in (frame := raw.receive()):
        assert frame["i"] == raw.rid
        item = frame["s"]
        if "h" in item:
            current = item["h"]["id"]
            headers[current], bodies[current] = item["h"], bytearray()
        else:
            assert set(item) == {"c"} and 0 < len(item["c"]) <= 16
            bodies[current] += item["c"]
    assert raw.result(frame) == {"count": len(offered)}
    assert [h["id"] for h in headers.values()] == [oid for oid, _, _ in offered]
    for oid, kind, size in offered:
        assert headers[oid]["k"] == kind and headers[oid]["n"] == size == len(bodies[oid])
        if kind in ("tree", "commit", "text"):
            assert hash_bytes(kind, bytes(bodies[oid])) == oid
    (array,) = [h for h in headers.values() if h["k"] == "array"]
    assert array["d"] == "<f4" and array["s"] == [4, 6]
    assert bytes(bodies[array["id"]]) == np.arange(24, dtype="<f4").tobytes()  # C order, little-endian


def read_file_stream(raw: RawSession, items: list[Any]) -> tuple[list[dict[str, Any]], bytes, Any]:
    """get_files by hand: the non-chunk items, the bytes, and the final result."""
    raw.rid += 1
    raw.send({"i": raw.rid, "m": "get_files", "a": {"items": items}})
    others: list[dict[str, Any]] = []
    data = bytearray()
    while "s" in (frame := raw.receive()):
        assert frame["i"] == raw.rid
        if "c" in frame["s"]:
            assert set(frame["s"]) == {"c"} and 0 < len(frame["s"]["c"]) <= 4096
            data += frame["s"]["c"]
        else:
            others.append(frame["s"])
    return others, bytes(data), raw.result(frame)


def test_get_files_streams_the_file_and_resumes_where_the_token_still_holds(
    session: Callable[..., RawSession], served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", "4096")
    content = Workspace(served).detector_path(DET).read_bytes()
    raw = session()
    (total, header, trailer), data, result = read_file_stream(raw, [[DET, 0, None]])
    assert total == {"total": len(content)} and result == {"count": 1}
    assert header["f"] == DET and header["n"] == len(content) and header["o"] == 0 and header["t"]
    assert data == content and trailer == {"end": DET, "ok": True}

    (_, resumed, _), rest, _ = read_file_stream(raw, [[DET, 1000, header["t"]]])
    assert resumed["o"] == 1000 and rest == content[1000:]
    (_, restarted, _), whole, _ = read_file_stream(raw, [[DET, 1000, "1-2-3"]])
    assert restarted["o"] == 0 and whole == content


def test_get_files_skips_what_cannot_be_sent_whole(session: Callable[..., RawSession], served: Path) -> None:
    """A commit in flight (a journal), or a server that is a partial clone: the client is told to
    take those detectors object by object."""
    journal = Workspace(served).detector_path(DET).with_name(f"{DET}.h5.journal")
    journal.write_bytes(b"torn")  # a header cut short: readers ignore it; get_files waits for none
    raw = session()
    (_, skipped), data, _ = read_file_stream(raw, [[DET, 0, None]])
    assert skipped == {"f": DET, "skip": "a commit is in progress"} and data == b""
    journal.unlink()
    config = served / ".dcsync" / "config.toml"
    config.write_text(config.read_text() + '\n[remotes.up]\nurl = "/elsewhere"\nctypes = ["pedestals"]\n')
    (total, skipped), data, _ = read_file_stream(session(), [[DET, 0, None]])
    assert total == {"total": 0} and skipped["skip"] == "the server is a partial clone" and data == b""
    config.write_text(config.read_text().split("[remotes.up]")[0])


@pytest.mark.parametrize(
    ("flt", "kinds"),
    [
        ({}, {"commit", "tree", "array", "text"}),
        ({"payloads": False}, {"commit", "tree"}),
        ({"ctypes": ["geometry"]}, {"commit", "tree", "text"}),
        ({"since": 10**12}, {"commit", "tree", "array", "text"}),  # open-ended ranges are kept
    ],
)
def test_negotiate_filters(connection: Connection, flt: dict[str, Any], kinds: set[str]) -> None:
    head = connection.heads().heads[DET]
    offered = connection.negotiate([{"detector": DET, "want": head, "filter": flt}])
    assert {offer.kind for offer in offered[DET]} == kinds


def test_negotiate_without_history_offers_one_commit(connection: Connection) -> None:
    head = connection.heads().heads[DET]
    full = connection.negotiate([{"detector": DET, "want": head}])[DET]
    snap = connection.negotiate([{"detector": DET, "want": head, "filter": {"history": False}}])[DET]
    assert [k for _, k, _ in full].count("commit") == 2
    assert [(o, k) for o, k, _ in snap if k == "commit"] == [(head, "commit")]
    assert connection.negotiate([{"detector": DET, "want": head, "have": [head]}]) == {DET: ()}


def test_push_by_hand_resumes_and_moves_head(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    items = object_items(path, new, [old])
    headers = [item["h"] for item in items if "h" in item]
    raw = session()
    first = items[: items.index({"h": headers[2]})]  # two objects, then the transfer is cut
    assert raw.result(raw.upload(DET, first)) == {"received": 2}
    have = raw.result(raw.request("have", items=[[DET, h["id"]] for h in headers]))["have"]
    assert have == [True, True] + [False] * (len(headers) - 2)  # resume: quarantined objects count
    assert raw.result(raw.upload(DET, items)) == {"received": len(headers)}
    result = raw.result(raw.request("update_refs", updates=[{"detector": DET, "old": old, "new": new}]))
    assert result["results"] == [{"detector": DET, "ok": True}]
    assert head_of(served) == new
    assert not quarantine_dir(served).exists()
    assert raw.result(raw.request("heads"))["heads"] == {DET: new}


def test_a_new_detector_can_be_pushed(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with Repository.create(work / "cspad-7.h5", "cspad-7") as repo:
        with repo.transaction("x") as tx:
            tx.add("pixel_gain", np.ones((2, 2), dtype="<f8"), begin_ns=5)
        new = repo.head()
    assert new is not None
    raw = session()
    assert "received" in raw.result(raw.upload("cspad-7", object_items(work / "cspad-7.h5", new, [])))
    result = raw.result(
        raw.request("update_refs", updates=[{"detector": "cspad-7", "old": None, "new": new}])
    )
    assert result["results"] == [{"detector": "cspad-7", "ok": True}]
    assert head_of(served, "cspad-7") == new


def test_stale_old_is_a_ref_conflict(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    raw = session()
    raw.result(raw.upload(DET, object_items(path, new, [old])))
    with Repository.open(path) as repo:
        stale = repo.commit(old).parents[0]
    for atomic in (False, True):
        answer = raw.request(
            "update_refs", updates=[{"detector": DET, "old": stale, "new": new}], atomic=atomic
        )
        if atomic:
            assert type(error_from_wire(error_of(answer), peer="p")) is RefConflict
        else:
            (result,) = raw.result(answer)["results"]
            assert result["ok"] is False and result["error"]["code"] == RefConflict.wire_code
        assert head_of(served) == old
    # a new detector's "old" is nil; naming an existing one with nil is stale too
    (result,) = raw.result(raw.request("update_refs", updates=[{"detector": DET, "old": None, "new": new}]))[
        "results"
    ]
    assert result["error"]["code"] == RefConflict.wire_code
    assert raw.alive()


def test_not_fast_forward_is_refused(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work", diverge=True)
    raw = session()
    raw.result(raw.upload(DET, object_items(path, new, [])))
    (result,) = raw.result(raw.request("update_refs", updates=[{"detector": DET, "old": old, "new": new}]))[
        "results"
    ]
    assert result["error"]["code"] == "conflict.not-fast-forward"
    assert head_of(served) == old


@pytest.mark.parametrize("atomic", [False, True])
def test_update_refs_naming_an_object_never_received(
    session: Callable[..., RawSession], served: Path, tmp_path: Path, atomic: bool
) -> None:
    _, old, new = descendant(served, tmp_path / "work")
    before = files_under(tmp_path)
    raw = session()
    updates = [
        {"detector": DET, "old": old, "new": new},
        {"detector": "epix-9", "old": None, "new": new},  # would be a new detector
    ]
    answer = raw.request("update_refs", updates=updates, atomic=atomic)
    # a dangling id is the client's doing: remote.protocol (which, as a whole answer, ends the session)
    if atomic:
        assert error_of(answer)["code"] == "remote.protocol"
        assert "never received" in error_of(answer)["message"]
    else:
        for result in raw.result(answer)["results"]:
            assert result["ok"] is False and result["error"]["code"] == "remote.protocol"
            assert "never received" in result["error"]["message"]
    assert head_of(served) == old
    assert not Workspace(served).detector_path("epix-9").exists()  # no empty repository left behind
    assert {f for f in files_under(tmp_path) - before if not f.startswith("served/.dcsync/")} == set()
    assert raw.ended() if atomic else raw.alive()


def test_atomic_update_refs_is_all_or_nothing(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    raw = session()
    raw.result(raw.upload(DET, object_items(path, new, [old])))
    updates = [
        {"detector": DET, "old": old, "new": new},
        {"detector": "epix-9", "old": None, "new": "1" * 32},
    ]
    error_of(raw.request("update_refs", updates=updates, atomic=True), ProtocolError.wire_code)
    assert head_of(served) == old
    assert raw.ended()  # a dangling id is the client's doing: remote.protocol ends the session
    raw = session()
    raw.result(raw.upload(DET, object_items(path, new, [old])))
    result = raw.result(raw.request("update_refs", updates=updates[:1], atomic=True))
    assert result["results"] == [{"detector": DET, "ok": True}]
    assert head_of(served) == new


@pytest.mark.parametrize("atomic", [False, True])
def test_update_refs_naming_a_detector_twice_is_refused(
    session: Callable[..., RawSession], served: Path, tmp_path: Path, atomic: bool
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    raw = session()
    raw.result(raw.upload(DET, object_items(path, new, [old])))
    updates = [{"detector": DET, "old": old, "new": new}] * 2  # atomic: the group would wait on itself
    err = error_of(raw.request("update_refs", updates=updates, atomic=atomic), "remote.protocol")
    assert "more than once" in err["message"]
    assert raw.ended()
    assert head_of(served) == old


def test_asking_creates_nothing(session: Callable[..., RawSession], served: Path) -> None:
    before = files_under(served)
    raw = session()
    answer = raw.result(raw.request("have", items=[["epix-2", "0" * 32], [DET, "0" * 32]]))
    assert answer == {"have": [False, False]}
    raw.result(raw.request("heads", detectors=["cspad-*"]))
    assert files_under(served) == before


# -- hostile messages to a real server -----------------------------------------------------------------


def test_first_request_must_be_hello(session: Callable[..., RawSession]) -> None:
    raw = session(hello=False)
    err = error_of(raw.request("heads"), "remote.protocol")
    assert "first request must be hello" in err["message"]
    assert raw.ended()


@pytest.mark.parametrize(
    "request_",
    [
        [1, "heads", {}],
        "heads",
        42,
        None,
        b"\x00\x01",
        {},
        {"m": "heads", "a": {}},
        {"i": "1", "m": "heads", "a": {}},
        {"i": 1.0, "m": "heads", "a": {}},
        {"i": True, "m": "heads", "a": {}},
        {"i": None, "m": "heads", "a": {}},
        {"i": 1, "m": 5, "a": {}},
        {"i": 1, "m": None, "a": {}},
        {"i": 1, "m": "shutdown", "a": {}},
        {"i": 1, "m": "__init__", "a": {}},
        {"i": 1, "m": "do_heads", "a": {}},
        {"i": 1, "m": "_repo", "a": {"det": DET}},
        {"i": 1, "m": "heads", "a": [DET]},
        {"i": 1, "m": "heads", "a": "detectors"},
        {"i": 1, "m": "heads", "a": None},
        {"i": 1, "m": "heads", "a": {"detectors": "epix-*"}},
        {"i": 1, "m": "heads", "a": {"globs": ["*"]}},
        {"i": 1, "m": "heads", "a": {b"detectors": ["*"]}},
        {"i": 1, "m": "negotiate", "a": {}},
        {"i": 1, "m": "negotiate", "a": {"wants": None}},
        {"i": 1, "m": "negotiate", "a": {"wants": {"detector": DET}}},
        {"i": 1, "m": "get_objects", "a": {"items": 3}},
        {"i": 1, "m": "get_files", "a": {"items": 3}},
        {"i": 1, "m": "get_files", "a": {}},
        {"i": 1, "m": "have", "a": {"items": [[DET]]}},
        {"i": 1, "m": "update_refs", "a": {"updates": [], "atomic": "yes"}},
        {"i": 1, "m": "update_refs", "a": {"updates": [], "atomic": 1}},
        {"i": 1, "m": "update_refs", "a": {"updates": [5]}},
        {
            "i": 1,
            "m": "hello",
            "a": {"protocol": True, "min_protocol": 1, "hash": ALGORITHM, "capabilities": []},
        },
    ],
    ids=repr,
)
def test_malformed_requests_get_an_error_and_end_the_session(
    session: Callable[..., RawSession], request_: Any
) -> None:
    raw = session()
    raw.send(request_)
    error_of(raw.receive(), "remote.protocol")
    assert raw.ended()


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("negotiate", {"wants": [{"detector": DET, "want": "xyz"}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "A" * 32}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 31}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "have": ["0" * 33]}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "have": "0" * 32}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "filter": {"ctypes": "geometry"}}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "filter": {"since": "yesterday"}}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "filter": {"depth": 1}}]}),
        ("negotiate", {"wants": [{"detector": DET, "want": "0" * 32, "extra": 1}]}),
        ("get_objects", {"items": [[DET, b"0" * 32]]}),
        ("get_objects", {"items": [[DET, 12345]]}),
        ("get_files", {"items": [DET]}),
        ("get_files", {"items": [[DET, -1, None]]}),
        ("get_files", {"items": [[DET, True, None]]}),
        ("get_files", {"items": [[DET, 0, 5]]}),
        ("get_files", {"items": [[DET, 0]]}),
        ("have", {"items": [[DET, "g" * 32]]}),
        ("have", {"items": [[DET, None]]}),
        ("update_refs", {"updates": [{"detector": DET, "old": None, "new": "../../etc/passwd"}]}),
        ("update_refs", {"updates": [{"detector": DET, "old": "0" * 32}]}),
        ("update_refs", {"updates": [{"detector": 5, "old": None, "new": "0" * 32}]}),
    ],
)
def test_bad_ids_and_shapes_inside_arguments(
    session: Callable[..., RawSession], method: str, args: dict[str, Any]
) -> None:
    raw = session()
    error_of(raw.request(method, **args), "remote.protocol")
    assert raw.ended()


def _name_requests(name: Any, head: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("negotiate", {"wants": [{"detector": name, "want": head}]}),
        ("get_objects", {"items": [[name, head]]}),
        ("get_files", {"items": [[name, 0, None]]}),
        ("have", {"items": [[name, head]]}),
        ("update_refs", {"updates": [{"detector": name, "old": None, "new": head}]}),
        ("update_refs", {"updates": [{"detector": name, "old": None, "new": head}], "atomic": True}),
    ]


BAD_NAMES = [
    "../epix-1",
    "epix/epix-1",
    "epix-1/../../x-1",
    "/tmp/evil-1",
    "/etc/passwd",
    "..",
    "epix-..",
    "EPIX-1",
    "Epix-1",
    "epix-1.h5/x",
    "epix-1\n",
    "epix -1",
    "epix-1\x00",
    "",
    "noseparator",
    "-1",
    "x" * 300 + "-1",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_hostile_detector_names_are_refused_and_create_nothing(
    session: Callable[..., RawSession], served: Path, tmp_path: Path, name: str
) -> None:
    before = files_under(tmp_path)
    raw = session()
    head = raw.result(raw.request("heads"))["heads"][DET]
    for method, args in _name_requests(name, head):
        error_of(raw.request(method, **args), InvalidName.wire_code)
    # put_objects is an upload: a refused one ends the session (its items may be on their way)
    error_of(
        raw.upload(name, [{"h": {"id": head, "k": "commit", "n": 1}}, {"c": b"x"}]), InvalidName.wire_code
    )
    assert raw.ended()
    assert files_under(tmp_path) == before
    assert head_of(served) == head


def test_globs_in_heads_only_match_names(session: Callable[..., RawSession], served: Path) -> None:
    raw = session()
    for glob in ["../*", "/*", "*/*", "[", "epix/*", "epix-1/.."]:
        assert raw.result(raw.request("heads", detectors=[glob]))["heads"] == {}
    assert raw.result(raw.request("heads", detectors=["epix-*", "nothing"]))["heads"].keys() == {DET}


# -- hostile uploads -----------------------------------------------------------------------------------

OID = "0123456789abcdef" * 2


def _array(d: Any, s: Any, n: Any) -> dict[str, Any]:
    return {"h": {"id": OID, "k": "array", "n": n, "d": d, "s": s}}


@pytest.mark.parametrize(
    "items",
    [
        [_array("|O", [1], 8)],
        [_array("O", [1], 8)],
        [_array("<U2", [1], 8)],
        [_array("|S8", [1], 8)],
        [_array("|V8", [1], 8)],
        [_array("<M8[s]", [1], 8)],
        [_array("<m8", [1], 8)],
        [_array("[('a', '<i4')]", [2], 8)],
        [_array("(2,)<i4", [1], 8)],
        [_array(",", [1], 8)],  # numpy itself would raise SyntaxError on this one
        [_array("08", [1], 8)],
        [_array(">f4", [2], 8)],  # big-endian: not the wire's byte order
        [_array("f4", [2], 8)],  # no byte order
        [_array(8, [2], 8)],
        [_array(None, [2], 8)],
        [_array("<f4", [2, 3], 25)],  # size does not match dtype * shape
        [_array("<f4", [2, 3], 23)],
        [_array("<f4", [-2, -3], 24)],
        [_array("<f4", [2.0, 3.0], 24)],
        [_array("<f4", "23", 24)],
        [_array("<f4", [True, 6], 24)],
        [_array("<f4", 6, 24)],
        [_array("<f4", [1] * 33, 4)],
        [_array("<f4", [2**62, 2**62], 2**64 - 1)],
        [{"h": {"id": OID, "k": "text", "n": MAX_BODY + 1}}],
        [{"h": {"id": OID, "k": "blob", "n": 1}}],
        [{"h": {"id": OID.upper(), "k": "text", "n": 1}}],
        [{"h": {"id": OID, "k": "text", "n": -1}}],
        [{"h": {"id": OID, "k": "text", "n": True}}],
        [{"h": {"id": OID, "k": "text"}}],
        [{"h": [OID, "text", 1]}],
        [{"c": b"chunk before any header"}],
        [{"c": "not bytes"}],
        [{"x": 1}],
        ["not a map"],
        [{"h": {"id": OID, "k": "tree", "n": 4}}, {"c": b"12345"}],  # more bytes than announced
        [{"h": {"id": OID, "k": "tree", "n": 4}}, {"c": b"12"}, {"h": {"id": OID, "k": "tree", "n": 4}}],
    ],
    ids=repr,
)
def test_bad_object_headers_and_chunks_are_refused(
    session: Callable[..., RawSession], served: Path, items: list[Any]
) -> None:
    raw = session()
    error_of(raw.upload(DET, items), "remote.protocol")
    assert raw.ended()
    assert quarantined(served) == []  # no partial file, nothing stored


def test_frames_out_of_step_inside_an_upload(session: Callable[..., RawSession], served: Path) -> None:
    raw = session()
    raw.rid += 1
    raw.send({"i": raw.rid, "m": "put_objects", "a": {"detector": DET}})
    raw.send({"i": raw.rid + 1, "s": {"c": b"x"}})  # another request id
    error_of(raw.receive(), "remote.protocol")
    assert raw.ended()


def test_a_corrupted_chunk_is_refused_and_complete_objects_stay(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    items = object_items(path, new, [old], chunk=1 << 20)
    headers = [item["h"] for item in items if "h" in item]
    victim = next(i for i, item in enumerate(items) if "c" in item and i > 2)
    data = bytearray(items[victim]["c"])
    data[len(data) // 2] ^= 0x01
    items[victim] = {"c": bytes(data)}
    raw = session()
    err = error_of(raw.upload(DET, items), CorruptObject.wire_code)
    assert "content does not match its id" in err["message"]
    assert raw.ended()
    left = sorted(p.name for p in quarantined(served))
    complete = [h for h in headers[: sum(1 for item in items[:victim] if "h" in item) - 1]]
    assert left == sorted(f"{h['id']}.{'npy' if h['k'] == 'array' else h['k']}" for h in complete)
    for h in complete:  # what stayed is exactly what was announced, verified
        file = next(
            p for p in quarantined(served) if p.name == f"{h['id']}.{'npy' if h['k'] == 'array' else h['k']}"
        )
        if h["k"] != "array":
            assert hash_bytes(h["k"], file.read_bytes()) == h["id"]
    assert head_of(served) == old


def test_an_upload_cut_midway_leaves_no_partial_file(
    session: Callable[..., RawSession], served: Path, tmp_path: Path
) -> None:
    path, old, new = descendant(served, tmp_path / "work")
    items = object_items(path, new, [old], chunk=3)
    raw = session()
    raw.rid += 1
    raw.send({"i": raw.rid, "m": "put_objects", "a": {"detector": DET}})
    for item in items[:4]:
        raw.send({"i": raw.rid, "s": item})
    raw.channel.write(framed(b"\x82\xa1i")[:6])  # half a frame, then the client vanishes
    raw.close()
    assert all(not p.name.endswith(".part") for p in quarantined(served))


def test_the_server_keeps_serving_after_a_refused_request(session: Callable[..., RawSession]) -> None:
    raw = session()
    error_of(raw.request("negotiate", wants=[{"detector": "epix-9", "want": "0" * 32}]), "not-found.detector")
    error_of(raw.request("get_objects", items=[[DET, "0" * 32]]), "not-found.object")
    assert raw.alive()


def test_argspec_rules() -> None:
    spec = ArgSpec(name=(str, True), flag=(bool, False), count=(int, False))
    assert spec.check("m", {"name": "x", "flag": None}) == {"name": "x"}
    for bad in [{"name": None}, {}, {"name": 1}, {"name": "x", "count": True}, {"name": "x", "z": 1}, []]:
        with pytest.raises(ProtocolError):
            spec.check("m", bad)
    assert set(SPECS) == {
        "hello",
        "heads",
        "negotiate",
        "get_objects",
        "get_files",
        "have",
        "put_objects",
        "update_refs",
    }
