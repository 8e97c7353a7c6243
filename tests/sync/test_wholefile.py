"""Whole-file transfers (dcsync.sync.wholefile): a detector the client lacks arrives as its repository file.

The scenarios run over the in-process channel against a real :class:`Server`; the SSH and pipe
transports carry the same frames (test_sync.py clones over them), and the resumption after a
killed server is in test_sync_faults.py. Hostile servers here are real servers whose ``get_files``
answer a test rewrites.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers.channels import RecordingChannel, in_process

from dcsync import sync
from dcsync.errors import ProtocolError, StorageFull
from dcsync.repo.repository import Repository
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync import server as server_module
from dcsync.sync.client import Connection
from dcsync.sync.server import Server
from dcsync.sync.wholefile import FileRange
from dcsync.transport.base import Channel
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

HELPERS = Path(__file__).parents[1] / "helpers"
T0 = 1_700_000_000 * 10**9
DETS = ("epix100-1", "jungfrau-2")


@pytest.fixture
def central(tmp_path: Path) -> Workspace:
    """Two detectors with history, an extra ref and log records of their own (not for a clone)."""
    ws = Workspace.init(tmp_path / "central", kind="repository")
    rng = np.random.default_rng(1)
    for det in DETS:
        with ws.new_detector(det) as repo:
            for k in range(3):
                with repo.transaction(f"constants {k}") as tx:
                    tx.add("pedestals", rng.random((64, 32), dtype=np.float32), begin_ns=T0 + k)
                    tx.add("geometry", f"geometry {k}", begin_ns=T0)
            head = repo.head()
            assert head is not None
            with repo.store.writing():  # a ref only the server has
                repo.store.set_ref(remote_ref("elsewhere"), None, head, _record(head))
    return ws


def _record(head: Any) -> LogRecord:
    return LogRecord(remote_ref("elsewhere"), None, head, "fetch", "the server's own business")


def recorder(channels: list[RecordingChannel]) -> Callable[[Channel], Channel]:
    """A wrap for :func:`in_process` that keeps each channel it makes in ``channels``."""

    def record(channel: Channel) -> Channel:
        channels.append(RecordingChannel(channel))
        return channels[-1]

    return record


def recorded_clone(central: Workspace, dest: Path, **kwargs: Any) -> tuple[Workspace, Any, RecordingChannel]:
    channels: list[RecordingChannel] = []
    with in_process(central.root, recorder(channels)) as conn:
        ws, report = sync.clone(str(central.root), dest, conn=conn, **kwargs)
    return ws, report, channels[0]


def assert_same_constants(a: Workspace, b: Workspace, det: str) -> None:
    with Repository.open(a.detector_path(det)) as left, Repository.open(b.detector_path(det)) as right:
        assert left.head() == right.head()
        for name in ("pedestals", "geometry"):
            x, y = left.get(name, at_ns=T0 + 5), right.get(name, at_ns=T0 + 5)
            assert x.obj == y.obj and np.array_equal(np.asarray(x.value), np.asarray(y.value))


def plain_view(path: Path) -> dict[str, Any]:
    """What an h5py user reads outside ``/.dcsync``: every dataset's bytes and every attribute."""
    out: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if name.startswith(".dcsync"):
            return
        out[name] = (obj[()].tobytes() if isinstance(obj, h5py.Dataset) else None, sorted(obj.attrs))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
        out["/"] = sorted(f.attrs)
    assert len(out) > 3
    return out


# -- the normal way ------------------------------------------------------------------------------------


def test_a_clone_takes_new_detectors_as_whole_files_with_refs_and_log_of_its_own(
    central: Workspace, tmp_path: Path
) -> None:
    laptop, report, channel = recorded_clone(central, tmp_path / "laptop")
    assert "get_files" in channel.methods and "get_objects" not in channel.methods
    assert report.fetch.files == 2 and report.fetch.objects == 0
    assert report.fetch.bytes == sum(central.detector_path(d).stat().st_size for d in DETS)
    assert sorted(report.fast_forwarded) == sorted(DETS)
    for det in DETS:
        assert verify_path(laptop.detector_path(det)).ok
        assert_same_constants(central, laptop, det)
        with Repository.open(laptop.detector_path(det)) as repo:
            head = repo.head()
            assert repo.store.refs() == {HEAD: head, remote_ref("origin"): head}
            assert [(r.ref, r.command) for r in repo.store.log()] == [
                (remote_ref("origin"), "fetch"),
                (HEAD, "pull"),
            ]
        assert plain_view(laptop.detector_path(det)) == plain_view(central.detector_path(det))
    assert not (laptop.root / ".dcsync" / "incoming").exists()


def test_a_filtered_clone_goes_object_by_object(central: Workspace, tmp_path: Path) -> None:
    _, report, channel = recorded_clone(central, tmp_path / "laptop", ctypes=["geometry"])
    assert "get_files" not in channel.methods and report.fetch.files == 0


def test_whole_files_can_be_switched_off(
    central: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_WHOLE_FILES", "0")
    laptop, report, channel = recorded_clone(central, tmp_path / "laptop")
    assert "get_files" not in channel.methods and report.fetch.files == 0
    for det in DETS:
        assert_same_constants(central, laptop, det)


def test_a_pull_of_an_existing_detector_goes_object_by_object(central: Workspace, tmp_path: Path) -> None:
    laptop, _, _ = recorded_clone(central, tmp_path / "laptop")
    with central.repository(DETS[0]) as repo, repo.transaction("more") as tx:
        tx.add("pedestals", np.ones((64, 32), np.float32), begin_ns=T0 + 10)
    channels: list[RecordingChannel] = []
    with in_process(central.root, recorder(channels)) as conn:
        report = sync.pull(laptop, conn=conn)
    assert report.fast_forwarded == [DETS[0]] and report.fetch.files == 0
    assert "get_files" not in channels[0].methods
    assert_same_constants(central, laptop, DETS[0])


# -- when a whole file will not do ---------------------------------------------------------------------


Items = Iterator[Any]  # dicts, and FileRange chunks


def frames_rewritten(monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[Items, Path], Items]) -> None:
    """The in-process server's ``get_files`` items, passed through ``rewrite``."""
    real = server_module.file_frames

    def frames(path: Path, *args: Any) -> Iterator[dict[str, Any]]:
        return rewrite(real(path, *args), path)

    monkeypatch.setattr(server_module, "file_frames", frames)


def test_a_file_that_changed_during_the_copy_goes_object_by_object(
    central: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def touched(items: Items, path: Path) -> Items:
        for item in items:
            if "end" in item:  # the copy is over: a commit landed meanwhile
                os.utime(path, ns=(1, 1))
                item = {**item, "ok": False} if path.name.startswith(DETS[0]) else item
            yield item

    frames_rewritten(monkeypatch, touched)
    laptop, report, channel = recorded_clone(central, tmp_path / "laptop")
    assert report.fetch.files == 1 and "get_objects" in channel.methods
    for det in DETS:
        assert verify_path(laptop.detector_path(det)).ok
        assert_same_constants(central, laptop, det)


def test_a_corrupted_copy_is_refused_and_the_detector_goes_object_by_object(
    central: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy that does not verify (here a flipped payload byte) is never put in place."""
    victim = central.detector_path(DETS[1])
    with h5py.File(victim, "r") as f:
        offsets = []
        f[".dcsync/objects"].visititems(
            lambda _, obj: (
                offsets.append(obj.id.get_offset())
                if isinstance(obj, h5py.Dataset) and obj.attrs.get("k") == "array"
                else None
            )
        )
    flip_at = offsets[0] + 10

    def corrupted(items: Items, path: Path) -> Items:
        sent = 0
        for item in items:
            if isinstance(item, FileRange):  # the bytes the server would send from the file
                item = {"c": os.pread(item.fd, item.length, item.offset)}
            if "c" in item and path == victim and sent <= flip_at < sent + len(item["c"]):
                data = bytearray(item["c"])
                data[flip_at - sent] ^= 0xFF
                item = {"c": bytes(data)}
            sent += len(item.get("c", b""))
            yield item

    frames_rewritten(monkeypatch, corrupted)
    laptop, report, channel = recorded_clone(central, tmp_path / "laptop")
    assert report.fetch.files == 1 and "get_objects" in channel.methods
    assert verify_path(laptop.detector_path(DETS[1])).ok
    assert_same_constants(central, laptop, DETS[1])


HOSTILE: dict[str, list[Any]] = {
    "not a map": [{"total": 10}, ["f", DETS[0]]],
    "out of order": [{"total": 10}, {"f": DETS[1], "n": 4, "t": "x", "o": 0}],
    "not asked for": [{"total": 10}, {"f": "cspad-9", "n": 4, "t": "x", "o": 0}],
    "bad name": [{"total": 10}, {"f": "../../evil-1", "n": 4, "t": "x", "o": 0}],
    "bytes before a header": [{"total": 10}, {"c": b"data"}],
    "more bytes than announced": [{"total": 10}, {"f": DETS[0], "n": 2, "t": "x", "o": 0}, {"c": b"abc"}],
    "resumed where we did not stop": [{"total": 10}, {"f": DETS[0], "n": 9, "t": "x", "o": 5}],
    "size not a count": [{"total": 10}, {"f": DETS[0], "n": "9", "t": "x", "o": 0}],
    "negative offset": [{"total": 10}, {"f": DETS[0], "n": 9, "t": "x", "o": -1}],
    "no token": [{"total": 10}, {"f": DETS[0], "n": 9, "o": 0}],
    "token too long": [{"total": 10}, {"f": DETS[0], "n": 9, "t": "x" * 201, "o": 0}],
    "the end of another file": [{"total": 10}, {"f": DETS[0], "n": 0, "t": "x", "o": 0}, {"end": DETS[1]}],
    "unknown item": [{"total": 10}, {"what": 1}],
    "total not a count": [{"total": -5}],
    "chunk not bytes": [{"total": 10}, {"f": DETS[0], "n": 9, "t": "x", "o": 0}, {"c": "text"}],
}


class HostileServer(Server):
    def __init__(self, root: Path, items: list[Any]) -> None:
        super().__init__(root)
        self.items = items

    def do_get_files(self, rid: int, read: Any, write: Any, items: list[Any]) -> dict[str, Any]:
        for item in self.items:
            server_module.write_frame(write, {"i": rid, "s": item})
        return {"count": len(items)}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_get_files_answers_are_protocol_errors_and_place_nothing(
    central: Workspace, tmp_path: Path, case: str
) -> None:
    server = HostileServer(central.root, HOSTILE[case])
    dest = tmp_path / "laptop"
    with pytest.raises(ProtocolError), Connection(InProcessChannel(server.serve)) as conn:
        sync.clone(str(central.root), dest, conn=conn)
    server.close()
    assert not dest.exists()  # nothing usable arrived: the failed clone left nothing
    assert not [p for p in tmp_path.rglob("*evil*")]  # "../../evil-1" wrote nowhere


def test_a_full_disk_while_receiving_a_file_is_reported_and_places_nothing(
    central: Workspace, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE makes writes past 30 KB fail as a full disk would (the files are ~64 KB)."""
    dest = tmp_path / "laptop"
    proc = subprocess.run(
        [sys.executable, str(HELPERS / "fsize_serve.py"), str(30_000), "clone", str(central.root), str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == StorageFull.exit_code, proc.stderr
    assert "no space left receiving" in proc.stderr and "Traceback" not in proc.stderr
    assert not dest.exists()  # nothing stored, so nothing left
