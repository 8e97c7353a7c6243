"""Attacks on the wire (issue 9, items 8, 12 and 13), each against a real ``dcsync serve --stdio``
subprocess: frames built to make the decoder allocate, integers out of every range, a client that
goes quiet, and a tree made to hold the detector lock.

Memory and CPU are the server's own: its peak resident set (VmHWM of /proc/PID/status, followed
until it exits; ``wait4``'s ru_maxrss would include the test process it was forked from) and its
user plus system time as ``wait4`` reports them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sshd import SSHServer

from dcsync.model import wire
from dcsync.model.limits import Decoding
from dcsync.sync.protocol import hello_args, read_frame, read_preamble
from dcsync.workspace.workspace import Workspace

DET = "epix-1"
MiB = 1024 * 1024
FRAME = 16 * MiB  # the default DCSYNC_MAX_FRAME: what an attacker may send in one frame


@pytest.fixture
def served(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("first constants") as tx:
        tx.add("pedestals", np.arange(24, dtype="<f4").reshape(4, 6), begin_ns=100)
    return root


@dataclass
class Outcome:
    frames: list[Any]  # what the server answered
    peak_rss: int  # bytes
    cpu: float  # seconds
    status: int
    stderr: str


class Served:
    """``python -m dcsync serve --stdio`` over pipes, driven frame by frame."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dcsync", "serve", "--stdio", "--root", str(root), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.out, self.inp = self.proc.stdout, self.proc.stdin
        self.peak_rss = 0
        self._watcher = threading.Thread(target=self._watch_memory, daemon=True)
        self._watcher.start()
        read_preamble(self.out.read, peer="server")
        self.rid = 0

    def _watch_memory(self) -> None:
        """Follow the server's VmHWM (its peak resident set since exec) until it exits: the
        kernel's own peak, sampled often enough to see any decoding that takes a while."""
        status = Path(f"/proc/{self.proc.pid}/status")
        while True:
            try:
                lines = status.read_text().splitlines()
            except OSError:
                return
            hwm = [int(line.split()[1]) * 1024 for line in lines if line.startswith("VmHWM:")]
            if not hwm:  # a zombie: its memory is gone
                return
            self.peak_rss = max(self.peak_rss, hwm[0])
            time.sleep(0.002)

    def send_bytes(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):  # a server that refused stops reading
            self.inp.write(data)
            self.inp.flush()

    def send(self, value: Any) -> None:
        body = wire.pack(value)
        self.send_bytes(len(body).to_bytes(4, "big") + body)

    def call(self, method: str, **args: Any) -> Any:
        self.rid += 1
        self.send({"i": self.rid, "m": method, "a": args})
        return read_frame(self.out.read, decoding=_ANY)

    def hello(self) -> Any:
        return self.call("hello", **hello_args("dcsync attack", "mallory", "evilhost"))

    def attack(self, body: bytes) -> Outcome:
        """Send one frame (from a thread: the server may stop reading), then read what it
        answers until it hangs up, and collect its accounting."""
        sender = threading.Thread(target=self.send_bytes, args=(len(body).to_bytes(4, "big") + body,))
        sender.start()
        return self.finish(sender)

    def finish(self, sender: threading.Thread | None = None) -> Outcome:
        frames = []
        if sender is None:  # a quiet session ends by closing its output
            self.inp.close()
        with contextlib.suppress(Exception):
            while True:
                frames.append(read_frame(self.out.read, decoding=_ANY))
        with contextlib.suppress(BrokenPipeError):
            self.inp.close()
        if sender is not None:
            sender.join(60)
        self._watcher.join(60)  # it stops at the zombie, which only wait4 reaps
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read().decode(errors="replace")
        self.out.close()
        self.proc.stderr.close()
        return Outcome(frames, self.peak_rss, usage.ru_utime + usage.ru_stime, self.proc.returncode, stderr)


# Reading the server's answers in the test: no limits of interest here.
_ANY = Decoding("test", frame=None, depth=64, max_str=None, max_bin=None, cost_per_byte=1000, cost_extra=MiB)


def _baseline(root: Path) -> Outcome:
    """A well-behaved session: hello, heads, goodbye."""
    server = Served(root)
    server.hello()
    assert DET in server.call("heads")["r"]["heads"]
    return server.finish()


def _array32(count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big")


def _map32(count: int) -> bytes:
    return b"\xdf" + count.to_bytes(4, "big")


def _tiny_keys_map() -> bytes:
    """A map of unique 4-character keys, each to nil: 6 bytes a pair."""
    alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+_"
    count = (FRAME - 16) // 6
    keys = (bytes(alphabet[(i >> s) & 63] for s in (18, 12, 6, 0)) for i in range(count))
    return _map32(count) + b"".join(b"\xa4" + key + b"\xc0" for key in keys)


# Within msgpack's own per-container caps (an array of at most FRAME // 2 items), so that
# without the pre-scan each is decoded in full.
ITEMS = FRAME // 2 - 1
HOSTILE = {
    "sibling empty arrays": lambda: _array32(ITEMS) + b"\x90" * ITEMS,
    "sibling empty maps": lambda: _array32(ITEMS) + b"\x80" * ITEMS,
    "a map of tiny keys": _tiny_keys_map,
    "many small strs": lambda: _array32(ITEMS // 3) + b"\xa2ab" * (ITEMS // 3),
    "nested lists of empty lists": lambda: (
        _array32(64) + (_array32(ITEMS // 64) + b"\x90" * (ITEMS // 64)) * 64
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("greeted", [False, True], ids=["before-hello", "after-hello"])
@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_a_frame_built_to_amplify_costs_the_server_little(served: Path, shape: str, greeted: bool) -> None:
    """Item 8: today one such frame took the server from ~50 MB to over 1 GB and seconds of CPU
    (any key, before hello). Now the frame is refused by its size (before hello) or by the
    pre-scan (after), before msgpack builds anything."""
    base = _baseline(served)
    server = Served(served)
    if greeted:
        assert "r" in server.hello()
    body = HOSTILE[shape]()
    assert len(body) <= FRAME
    got = server.attack(body)
    print(
        f"\n{shape} ({'after' if greeted else 'before'} hello): peak RSS {got.peak_rss / MiB:.0f} MiB "
        f"(a quiet session {base.peak_rss / MiB:.0f} MiB), CPU {got.cpu:.2f} s (quiet {base.cpu:.2f} s)"
    )
    assert got.frames and got.frames[-1]["e"]["code"] == "remote.protocol", got.frames
    assert "Traceback" not in got.stderr
    # The frame itself is read (16 MiB, twice while it is joined) when it is within the cap;
    # nothing it describes is built.
    assert got.peak_rss - base.peak_rss < 64 * MiB
    assert got.cpu - base.cpu < 2.0


# -- item 13a: idle sessions ---------------------------------------------------------------------


def _exits_within(server: Served, seconds: float) -> Outcome:
    """The server's outcome, once it has ended by itself (the test holds its pipes open)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with open(f"/proc/{server.proc.pid}/stat") as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):  # exited, not yet reaped
                return server.finish()
        time.sleep(0.05)
    server.proc.kill()
    server.finish()
    raise AssertionError(f"the server was still running after {seconds} s")


def test_a_client_that_never_sends_is_dropped_after_the_idle_timeout(served: Path) -> None:
    for greeted in (False, True):
        server = Served(served, "--idle-timeout", "1")
        if greeted:
            assert "r" in server.hello()
        started = time.monotonic()
        got = _exits_within(server, 15)
        assert time.monotonic() - started >= 0.9
        assert "idle for 1 s" in got.stderr and "Traceback" not in got.stderr
        assert got.status == 0


def test_a_client_that_stops_reading_is_dropped_after_the_idle_timeout(tmp_path: Path) -> None:
    root = tmp_path / "big"
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("a large constant") as tx:
        tx.add("pedestals", np.arange(2 * MiB, dtype="<f4"), begin_ns=100)  # 8 MiB: more than a pipe holds
    server = Served(root, "--idle-timeout", "1")
    server.hello()
    server.rid += 1
    server.send({"i": server.rid, "m": "get_files", "a": {"items": [[DET, 0, None]]}})
    # ... and read nothing: the server fills the pipe, then waits for a reader that never comes.
    got = _exits_within(server, 15)
    assert "idle for 1 s" in got.stderr and "Traceback" not in got.stderr


def test_the_idle_timeout_comes_from_the_workspace_config(served: Path) -> None:
    ws = Workspace(served)
    ws.write_config({**ws.config(), "serve": {"idle_timeout": 1}})
    got = _exits_within(Served(served), 15)
    assert "idle for 1 s" in got.stderr
    ws.write_config({**ws.config(), "serve": {"idle_timeout": "soon"}})
    server = Served(served)
    got = server.finish()
    assert got.frames[0]["e"]["code"] == "usage" and "idle_timeout" in got.frames[0]["e"]["message"]


# -- item 12: integers out of range ----------------------------------------------------------------

U64 = 2**64 - 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"i": 2, "m": "get_files", "a": {"items": [[DET, U64, None]]}}, "offset"),
        ({"i": 2, "m": "get_files", "a": {"items": [[DET, -1, None]]}}, "offset"),
        (
            {
                "i": 2,
                "m": "negotiate",
                "a": {"wants": [{"detector": DET, "want": "HEAD", "filter": {"since": U64}}]},
            },
            "since",
        ),
        ({"i": U64, "m": "heads", "a": {}}, "integer 'i'"),
        ({"i": -1, "m": "heads", "a": {}}, "integer 'i'"),
    ],
    ids=["offset-u64", "offset-negative", "since-u64", "id-u64", "id-negative"],
)
def test_integers_out_of_range_are_protocol_errors_naming_the_field(
    served: Path, request_: dict[str, Any], field: str
) -> None:
    server = Served(served)
    server.hello()
    head = server.call("heads")["r"]["heads"][DET]
    for want in request_["a"].get("wants", []):
        want["want"] = head
    server.send(request_)
    got = server.finish()
    assert got.frames, got.stderr
    error = got.frames[-1]["e"]
    assert error["code"] == "remote.protocol" and field in error["message"], error
    assert "Traceback" not in got.stderr


@pytest.mark.parametrize(
    "hello", [{"protocol": U64}, {"min_protocol": U64}, {"protocol": -1}], ids=["max", "min", "negative"]
)
def test_a_hello_with_a_protocol_out_of_range_names_it(served: Path, hello: dict[str, int]) -> None:
    server = Served(served)
    server.send({"i": 1, "m": "hello", "a": {**hello_args("x", "mallory", "evilhost"), **hello}})
    error = server.finish().frames[-1]["e"]
    assert error["code"] == "remote.protocol" and next(iter(hello)) in error["message"], error


@pytest.mark.parametrize(
    "header",
    [
        {"id": "0" * 32, "k": "array", "n": U64, "d": "|u1", "s": [U64]},
        {"id": "0" * 32, "k": "array", "n": 0, "d": "|u1", "s": [U64, 0]},
        {"id": "0" * 32, "k": "text", "n": U64},
    ],
    ids=["size", "dimension", "text-size"],
)
def test_object_headers_with_sizes_beyond_int64_are_refused(served: Path, header: dict[str, Any]) -> None:
    server = Served(served)
    server.hello()
    server.send({"i": 2, "m": "put_objects", "a": {"detector": DET}})
    server.send({"i": 2, "s": {"h": header}})
    got = server.finish()
    error = got.frames[-1]["e"]
    assert error["code"] == "remote.protocol", error
    assert not list((served / ".dcsync" / "incoming").rglob("*.part"))


@pytest.mark.parametrize(
    "answer",
    [
        {"objects": {DET: [["0" * 32, "array", U64]]}},
        {"objects": {DET: [["0" * 32, "array", "12"]]}},
        {"objects": {DET: [["0" * 32, "array", -5]]}},
        {"objects": {DET: [["0" * 32, "array"]]}},
        {"objects": {DET: [["nope", "array", 5]]}},
        {"objects": [DET]},
    ],
)
def test_a_negotiate_answer_is_checked_before_its_sizes_are_used(answer: Any) -> None:
    from dcsync.errors import ProtocolError
    from dcsync.sync.replies import checked, offered_objects

    def decode(reply: Any) -> Any:
        return checked("negotiate", "the server", lambda r: offered_objects(r, {DET}), reply)

    with pytest.raises(ProtocolError, match=r"the server sent a malformed negotiate reply: .*objects"):
        decode(answer)
    good = decode({"objects": {DET: [["0" * 32, "array", 12]]}})
    assert good == {DET: (("0" * 32, "array", 12),)}


# -- item 13b: tree sizes ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_range_with_too_many_versions_is_refused_before_the_lock(served: Path, tmp_path: Path) -> None:
    """A push of a range holding MAX_VERSIONS_PER_RANGE + 1 versions to a real serve subprocess
    (a local-path remote) is refused naming the limit, and the served file is unchanged."""
    from dcsync import sync
    from dcsync.errors import ProtocolError
    from dcsync.model.limits import MAX_VERSIONS_PER_RANGE
    from dcsync.workspace import config

    work = tmp_path / "work"
    sync.clone(str(served), work)
    with Workspace(work).repository(DET) as repo, repo.transaction("too many versions") as tx:
        for i in range(MAX_VERSIONS_PER_RANGE + 1):
            tx.add("pedestals", np.full(2, i, dtype="<f4"), begin_ns=100, make_default=False)
    before = Workspace(served).detector_path(DET).read_bytes()
    report = sync.push(Workspace(work), "origin")
    assert DET in report.failed, report
    assert (
        "MAX_VERSIONS_PER_RANGE" in report.failed[DET]
        and f"over the limit of {MAX_VERSIONS_PER_RANGE}" in report.failed[DET]
    )
    assert Workspace(served).detector_path(DET).read_bytes() == before
    # and a client fetching such a range (here from `work`, as a hostile server) refuses it too
    other = tmp_path / "other"
    sync.clone(str(served), other)
    config.add_remote(Workspace(other), config.RemoteConfig("big", str(work)))
    kept = Workspace(other).detector_path(DET).read_bytes()
    with pytest.raises(ProtocolError, match=f"over the limit of {MAX_VERSIONS_PER_RANGE}"):
        sync.fetch(Workspace(other), "big")
    assert Workspace(other).detector_path(DET).read_bytes() == kept


def test_an_idle_session_over_real_ssh_ends(served: Path, sshd: SSHServer) -> None:
    """Through a real sshd (the system ssh client): the client says hello, then nothing; the
    remote dcsync serve ends the session after its idle timeout, and with it the SSH session."""
    command = f"{sshd.remote_dcsync} serve --stdio --root {shlex.quote(str(served))} --idle-timeout 1"
    proc = subprocess.Popen(
        ["ssh", "-F", str(sshd.ssh_config), "-o", "BatchMode=yes", sshd.alias, command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        read_preamble(proc.stdout.read, peer="ssh")
        body = wire.pack({"i": 1, "m": "hello", "a": hello_args("dcsync attack", "mallory", "evilhost")})
        proc.stdin.write(len(body).to_bytes(4, "big") + body)
        proc.stdin.flush()
        assert "r" in read_frame(proc.stdout.read, decoding=_ANY)
        started = time.monotonic()
        status = proc.wait(timeout=30)  # the test keeps its end of the channel open throughout
        assert time.monotonic() - started >= 0.9
        assert status == 0
        assert "idle for 1 s" in proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_a_long_refusal_in_place_of_the_hello_answer_reaches_the_user(served: Path, tmp_path: Path) -> None:
    """The hello limits guard a server from strangers; a client reading the answer must still get a
    long error whole: here an access refusal naming 5 KB of --restrict-to-path (it once came out as
    "a str of 5086 bytes is over the limit" for a hello, exit 9, instead of the refusal, exit 10)."""
    allowed = [tmp_path.joinpath(f"area{i}", *["d" * 200] * 4) for i in range(6)]  # 6 x 0.9 KB
    dcsync = f"{shlex.quote(sys.executable)} -m dcsync"
    restrict = " ".join(f"--restrict-to-path {path}" for path in allowed)
    remote = f"sh -c 'exec {dcsync} \"$@\" {restrict}' sh"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcsync",
            "clone",
            str(served),
            str(tmp_path / "laptop"),
            "--remote-dcsync",
            remote,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 10, done.stderr
    assert "outside the paths this server may serve" in done.stderr and str(allowed[-1]) in done.stderr
    assert "Traceback" not in done.stderr
