"""Property tests of the protocol (STYLE.md item 12): random bytes raise only our errors and never
make a reader allocate past the cap or hang; random requests and random frame sequences sent to a
real server get error frames or valid results, and the server never crashes.

Every session runs under a deadline: a hang fails the example instead of the test run.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from helpers.deadline import deadline as _deadline
from hypothesis import HealthCheck, given, settings

from dcsync.errors import ConnectionLost, DcsyncError, ProtocolError, by_wire_code
from dcsync.model.limits import Decoding
from dcsync.repo.reach import objects_for, transfer_header
from dcsync.repo.repository import Repository
from dcsync.sync.protocol import MAX_BANNER, PREAMBLE, hello_args, read_frame, read_preamble, write_frame
from dcsync.sync.server import SPECS, Server
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

DET = "epix-1"
CAP = 1024
PROBE = 10**9  # the request id of the "are you still there" heads sent after the fuzzed frames
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def deadline(seconds: float = 15.0) -> contextlib.AbstractContextManager[None]:
    return _deadline(seconds)


# -- (a) read_frame and read_preamble on random bytes --------------------------------------------------


class CountingReader:
    """read(n) over fixed bytes, at most ``step`` a call, b"" at the end.

    Records the largest single request (what a real read may allocate) and the bytes consumed.
    """

    def __init__(self, data: bytes, step: int) -> None:
        self.stream = io.BytesIO(data)
        self.step = step
        self.largest = 0
        self.consumed = 0
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        assert n >= 1
        self.largest = max(self.largest, n)
        self.calls += 1
        assert self.calls <= len(self.stream.getbuffer()) + 2, "the reader keeps asking after the end"
        out = self.stream.read(min(n, self.step))
        self.consumed += len(out)
        return out


@FUZZ
@given(data=st.binary(max_size=2 * CAP), step=st.integers(1, 64))
def test_random_bytes_raise_only_our_errors(data: bytes, step: int) -> None:
    read = CountingReader(data, step)
    with contextlib.suppress(DcsyncError):
        read_frame(read, limit=CAP)
    assert read.largest <= CAP and read.consumed <= CAP + 4


@FUZZ
@given(size=st.integers(0, 2**32 - 1), body=st.binary(max_size=CAP + 10), step=st.integers(1, 4096))
def test_random_length_prefixes_are_checked_before_reading(size: int, body: bytes, step: int) -> None:
    read = CountingReader(size.to_bytes(4, "big") + body, step)
    try:
        read_frame(read, limit=CAP)
    except ProtocolError as exc:
        if size > CAP:
            assert "over the limit" in exc.message
            assert read.consumed == 4 and read.largest <= 4  # refused on the prefix alone
    except DcsyncError:
        pass
    assert read.largest <= max(4, min(size, CAP)) and read.consumed <= min(size, CAP) + 4


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=16,
)


# Any value the profile allows, however nested: the per-message limits are tested elsewhere.
ANY_VALUE = Decoding(
    "value", frame=None, depth=64, max_str=None, max_bin=None, cost_per_byte=1000, cost_extra=1 << 20
)


@FUZZ
@given(value=values, step=st.integers(1, 16))
def test_random_values_round_trip_through_frames(value: Any, step: int) -> None:
    out = io.BytesIO()
    write_frame(out.write, value)
    read = CountingReader(out.getvalue(), step)
    assert read_frame(read, decoding=ANY_VALUE) == value
    assert read.consumed == len(out.getvalue())


@FUZZ
@given(before=st.binary(max_size=300), step=st.integers(1, 8), with_preamble=st.booleans())
def test_random_bytes_before_the_preamble(before: bytes, step: int, with_preamble: bool) -> None:
    read = CountingReader(before + (PREAMBLE if with_preamble else b""), step)
    try:
        read_preamble(read, peer="peer")
    except DcsyncError:
        pass
    else:  # accepted only when nothing came before the preamble
        assert (before + (PREAMBLE if with_preamble else b"")).startswith(PREAMBLE)
    assert read.largest == 1 and read.consumed <= MAX_BANNER + 1


# -- a real server, fuzzed ---------------------------------------------------------------------------


class Served:
    """The workspace every fuzzed session talks to, and what a test needs to aim at it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "served"
        ws = Workspace.init(self.root, kind="repository")
        with ws.new_detector(DET) as repo:
            with repo.transaction("constants") as tx:
                tx.add("pedestals", np.arange(6, dtype="<i2").reshape(2, 3), begin_ns=100, end_ns=5000)
                tx.add("geometry", "a geometry", begin_ns=100)
            self.head = repo.head()
            assert self.head is not None
            self.items: list[dict[str, Any]] = []  # every object as put_objects stream items
            for oid, _, _ in objects_for(repo.store, self.head, [], {}):
                header, pieces = transfer_header(repo.store, oid, 8)
                body = b"".join(pieces)
                self.items.append({"h": header})
                self.items.extend({"c": body[i : i + 8]} for i in range(0, len(body), 8))
        self.ids = [item["h"]["id"] for item in self.items if "h" in item]
        self.before = {str(p.relative_to(base)) for p in base.rglob("*")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    target = Served(tmp_path_factory.mktemp("fuzz"))
    yield target
    # Whatever the fuzzing did: nothing outside the served root, and the workspace verifies.
    after = {str(p.relative_to(target.base)) for p in target.base.rglob("*")}
    assert {p for p in after - target.before if not p.startswith("served")} == set()
    ws = Workspace(target.root)
    for det in ws.detectors():
        report = verify_path(ws.detector_path(det))
        assert report.ok, report.problems
    with Repository.open(ws.detector_path(DET)) as repo:
        assert repo.head() == target.head  # nothing the fuzzer sent could move it


class Session:
    """One session with a fresh server; a thread collects every frame it writes until it hangs up."""

    def __init__(self, served: Served) -> None:
        self.server = Server(served.root)
        self.channel = InProcessChannel(self.server.serve, description="fuzzed server")
        self.frames: list[Any] = []
        self.sent = 0
        self._settled = threading.Event()  # the probe was answered, or the server hung up
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        try:
            read_preamble(self.channel.read, peer="fuzzed server")
            while True:
                frame = read_frame(self.channel.read)
                self.frames.append(frame)
                if isinstance(frame, dict) and frame.get("i") == PROBE:
                    self._settled.set()
        except DcsyncError:
            pass
        finally:
            self._settled.set()

    def send(self, value: Any) -> bool:
        """Send a frame; False once the server has hung up."""
        try:
            write_frame(self.channel.write, value)
        except ConnectionLost:
            return False
        self.sent += 1
        return True

    def finish(self) -> None:
        """Probe, hang up, and check: no crash, only well-formed frames, a clean end."""
        self.send({"i": PROBE, "m": "heads", "a": {}})
        assert self._settled.wait(10), "no answer to the probe and no hang-up: the server hangs"
        self.channel.close()  # the server reads end of stream and must return
        self._reader.join(5)
        self.server.close()
        assert not self._reader.is_alive() and self.channel.finished, "the server hangs"
        assert self.channel.stderr_text() == "", f"serve() raised:\n{self.channel.stderr_text()}"
        codes = by_wire_code()
        for frame in self.frames:
            assert isinstance(frame, dict) and isinstance(frame.get("i"), int), frame
            assert len(frame) == 2 and len(set(frame) & {"r", "e", "s"}) == 1, frame
            if "e" in frame:
                assert frame["e"]["code"] in codes and isinstance(frame["e"]["message"], str)
                assert "Traceback" not in frame["e"]["message"]
        probed = [f for f in self.frames if f["i"] == PROBE and "r" in f]
        # Either the session is still in step (the probe was answered) or it ended after an error.
        assert probed or (self.frames and "e" in self.frames[-1]), self.frames[-3:]


@contextlib.contextmanager
def session(served: Served, *, hello: bool = True) -> Iterator[Session]:
    with deadline():
        s = Session(served)
        try:
            if hello:
                s.send({"i": 0, "m": "hello", "a": hello_args("fuzzer", "fuzz", "here")})
            yield s
        except BaseException:
            s.channel.close()
            raise
        s.finish()


# Wrong types first (nil, the other scalars, empty containers), then anything at all.
junk = st.sampled_from(
    [None, 0, -1, 2**64 - 1, True, False, 1.5, "", "x", b"", b"\x00", [], {}, [None], {"": None}]
)
wrong = junk | values


def _strategies(served: Served) -> dict[str, st.SearchStrategy[Any]]:
    """Arguments aimed at the served workspace: real ids and names mixed with wrong ones."""
    hex32 = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
    ids = st.just(served.head) | st.sampled_from(served.ids) | hex32 | st.text(max_size=34) | wrong
    dets = (
        st.just(DET)
        | st.sampled_from(["epix-2", "cspad-1", "../epix-1", "EPIX-1", "/etc/passwd", ""])
        | wrong
    )
    pair = st.tuples(dets, ids).map(list) | st.lists(dets | ids, max_size=3) | wrong
    tokens = st.none() | st.text(max_size=30) | wrong
    file_item = st.tuples(dets, st.integers(-2, 10**6) | wrong, tokens).map(list) | pair
    flt = st.dictionaries(
        st.sampled_from(["ctypes", "since", "payloads", "history"])
        | st.text(max_size=6)
        | st.sampled_from([None, 0, True, b"ctypes"]),  # keys msgpack can carry, ours refuses
        st.sampled_from([["pedestals"], ["geometry", 3], [None], 0, 10**12, -(2**63), True, False]) | wrong,
        max_size=3,
    )
    want = st.fixed_dictionaries(
        {"detector": dets, "want": ids},
        optional={"have": st.lists(ids, max_size=2) | wrong, "filter": flt | wrong, "other": values},
    )
    update = st.fixed_dictionaries({"detector": dets, "new": ids}, optional={"old": ids, "x": values})
    header = st.fixed_dictionaries(
        {
            "id": ids,
            "k": st.sampled_from(["array", "text", "tree", "commit", "blob"]) | junk,
            "n": st.integers(-1, 40) | junk,
        },
        optional={
            "d": st.sampled_from(["<f4", "|u1", "<i2", "|O", "<U1", ",", "08", "(2,)i4", "f8", "<M8"])
            | wrong,
            "s": st.lists(st.integers(-1, 5) | junk, max_size=3) | wrong,
        },
    )
    item = (
        st.sampled_from(served.items)
        | st.builds(lambda h: {"h": h}, header | wrong)
        | st.builds(lambda c: {"c": c}, st.binary(max_size=40) | junk)
        | wrong
    )

    def listed(of: st.SearchStrategy[Any], n: int = 3) -> st.SearchStrategy[Any]:
        return st.lists(of, max_size=n) | wrong

    args = {
        "hello": st.fixed_dictionaries(
            {
                "protocol": st.integers(-1, 3) | wrong,
                "min_protocol": st.integers(-1, 3) | wrong,
                "hash": st.sampled_from(["xxh3-128", "sha1"]) | wrong,
                "capabilities": listed(st.text(max_size=8)),
            },
            optional={"software": wrong, "user": wrong, "host": wrong},
        ),
        "heads": st.fixed_dictionaries({}, optional={"detectors": listed(dets)}),
        "negotiate": st.fixed_dictionaries({"wants": listed(want | wrong, 2)}),
        "get_objects": st.fixed_dictionaries({"items": listed(pair)}),
        "get_files": st.fixed_dictionaries({"items": listed(file_item)}),
        "have": st.fixed_dictionaries({"items": listed(pair)}),
        "put_objects": st.fixed_dictionaries({"detector": dets}),
        "update_refs": st.fixed_dictionaries(
            {"updates": listed(update | wrong, 2)},
            optional={"atomic": st.booleans() | wrong, "message": st.text(max_size=10) | wrong},
        ),
    }
    assert set(args) == set(SPECS)
    names = sorted({name for spec in SPECS.values() for name in spec.fields} | {"extra", ""})
    rids = st.integers(1, 4)
    request = st.sampled_from(sorted(args)).flatmap(
        lambda m: st.builds(lambda i, a: {"i": i, "m": m, "a": a}, rids, args[m])
    )
    return {
        "request": request,
        "loose": st.builds(
            lambda i, m, a: {"i": i, "m": m, "a": a},
            rids | wrong,
            st.sampled_from([*sorted(SPECS), "nope", "do_heads", "__init__", "serve"]) | wrong,
            st.dictionaries(st.sampled_from(names) | st.text(max_size=5), wrong, max_size=3) | wrong,
        ),
        "item": st.builds(lambda i, s: {"i": i, "s": s}, rids, item),
        "end": st.builds(lambda i: {"i": i, "end": True}, rids),
        "value": values,
    }


@FUZZ
@given(data=st.data(), hello=st.booleans())
def test_random_requests_get_errors_or_results(served: Served, data: st.DataObject, hello: bool) -> None:
    kinds = _strategies(served)
    frame = data.draw(
        st.one_of(kinds["request"], kinds["request"], kinds["loose"], kinds["value"]), label="request"
    )
    with session(served, hello=hello) as s:
        s.send(frame)
        if isinstance(frame, dict) and frame.get("m") == "put_objects":
            s.send({"i": frame.get("i"), "end": True})


@FUZZ
@given(data=st.data())
def test_random_frame_sequences_after_hello(served: Served, data: st.DataObject) -> None:
    kinds = _strategies(served)
    frame = kinds["request"] | kinds["item"] | kinds["end"] | kinds["loose"] | kinds["value"]
    frames = data.draw(st.lists(frame, max_size=12), label="frames")
    with session(served) as s:
        for value in frames:
            if not s.send(value):
                break


@FUZZ
@given(data=st.data())
def test_random_uploads(served: Served, data: st.DataObject) -> None:
    """put_objects streams built mostly from real objects, cut, reordered and corrupted."""
    kinds = _strategies(served)
    items = data.draw(
        st.lists(st.sampled_from(served.items) | kinds["item"].map(lambda f: f["s"]), max_size=16),
        label="items",
    )
    if items and data.draw(st.booleans(), label="corrupt"):
        at = data.draw(st.integers(0, len(items) - 1), label="at")
        if isinstance(items[at], dict) and isinstance(items[at].get("c"), bytes) and items[at]["c"]:
            items[at] = {"c": bytes([items[at]["c"][0] ^ 0xFF]) + items[at]["c"][1:]}
    with session(served) as s:
        s.send({"i": 1, "m": "put_objects", "a": {"detector": DET}})
        for item in items:
            if not s.send({"i": 1, "s": item}):
                break
        s.send({"i": 1, "end": True})
        s.send(
            {
                "i": 2,
                "m": "update_refs",
                "a": {"updates": [{"detector": DET, "old": None, "new": served.head}]},
            }
        )
