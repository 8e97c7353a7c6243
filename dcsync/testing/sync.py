"""Contract tests for sync over any kind of server store, shipped in the package so each
:class:`~dcsync.sync.stores.DetectorStores` implementation runs the same scenarios by subclassing
(STYLE.md item 11).

Use::

    class TestMyStores(SyncContract):
        def make_stores(self, root: Path) -> DetectorStores | None:
            return MyStores(...)        # None: the served workspace's own HDF5 files

Every scenario runs through the real protocol: a client workspace calls ``push`` and ``fetch``
(:class:`~dcsync.sync.client.Connection`) against a :class:`~dcsync.sync.server.Server` in a
thread of this process, over two pipes (:class:`~dcsync.transport.local.InProcessChannel`), so the
objects cross as bytes through :class:`~dcsync.sync.transfer.ObjectSender` and
:class:`~dcsync.sync.transfer.ObjectReceiver` on both ends. A :class:`WireTap` between them sees
the client's frames (what it uploaded, what it asked for) and can flip a byte of one uploaded
chunk. Needs pytest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcsync import sync
from dcsync.errors import CorruptObject, NotFastForward, RefConflict
from dcsync.model import wire
from dcsync.model.hashing import ObjectId
from dcsync.model.times import parse_time
from dcsync.repo.reach import objects_for
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.refs import HEAD, remote_ref
from dcsync.sync.client import Connection
from dcsync.sync.protocol import Read, Write
from dcsync.sync.quarantine import incoming_dir
from dcsync.sync.replies import RefUpdate
from dcsync.sync.server import Server
from dcsync.sync.stores import DetectorStores, WorkspaceFiles
from dcsync.sync.transfer import ObjectSender
from dcsync.testing.channel import ForwardingChannel
from dcsync.transport.base import Channel
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.config import RemoteConfig
from dcsync.workspace.workspace import Workspace

__all__ = ["DET", "DET2", "Served", "SyncContract", "WireTap"]

DET = "epix100a-0001"
DET2 = "epix100a-0002"
CHUNK = 4096  # small chunks: every array crosses as many frames
T0, T1, T2 = (parse_time(t) for t in ("2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "2025-01-01T00:00:00Z"))


class WireTap(ForwardingChannel):
    """Forwards a channel both ways and decodes what the client writes: :attr:`uploaded` are the
    ids of objects it sent with ``put_objects``, :attr:`requested` those it asked for with
    ``get_objects``. With ``corrupt``, one byte of the first uploaded chunk is flipped on its way,
    and :attr:`flipped` names its object."""

    def __init__(self, inner: Channel, *, corrupt: bool = False) -> None:
        super().__init__(inner)
        self.corrupt = corrupt
        self.flipped: str | None = None
        self.uploaded: list[str] = []
        self.requested: list[str] = []
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        out = bytearray()
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "big")
            if len(self._buffer) < 4 + size:
                break  # the rest of this frame is still to come
            frame = wire.unpack(bytes(self._buffer[4 : 4 + size]))
            del self._buffer[: 4 + size]
            body = wire.pack(self._observe(frame))
            out += len(body).to_bytes(4, "big") + body
        if out:
            self.inner.write(bytes(out))

    def _observe(self, frame: Any) -> Any:
        if isinstance(frame, dict) and frame.get("m") == "get_objects":
            self.requested.extend(str(oid) for _, oid in frame["a"]["items"])
        item = frame.get("s") if isinstance(frame, dict) else None
        if isinstance(item, dict) and "h" in item:
            self.uploaded.append(str(item["h"]["id"]))
        elif isinstance(item, dict) and item.get("c") and self.corrupt and self.flipped is None:
            data = bytearray(item["c"])
            data[len(data) // 2] ^= 0x40
            item["c"] = bytes(data)
            self.flipped = self.uploaded[-1]
        return frame


@dataclass
class Served:
    """The server's side of a scenario: its workspace (ACL, hooks, quarantines) and its stores."""

    root: Path
    stores: DetectorStores

    def serve(self, read: Read, write: Write) -> None:
        server = Server(self.root, stores=self.stores)
        try:
            server.serve(read, write)
        finally:
            server.close()

    def tap(self, *, corrupt: bool = False) -> WireTap:
        """A channel to a new server session, tapped (see :class:`WireTap`)."""
        return WireTap(InProcessChannel(self.serve, description=f"in-process {self.root}"), corrupt=corrupt)

    def store(self, det: str = DET) -> ObjectStore:
        """A store of ``det`` to look at; the caller closes it."""
        return self.stores.open(det)


def add_constants(repo: Repository, begin_ns: int, seed: int) -> None:
    """One commit: an array of several chunks, a small one, and a text."""
    r = np.random.default_rng(seed)
    with repo.transaction(f"constants {seed}") as tx:
        tx.add("pedestals", r.normal(1000, 5, (64, 96)).astype(np.float32), begin_ns=begin_ns)
        tx.add("common_mode", np.array([1, 25, 25, seed], np.int32), begin_ns=begin_ns)
        tx.add("geometry", f"# geometry {seed}\nQUAD:V2 0 SENS2X1:V1 0 {seed} 0 0 90\n", begin_ns=begin_ns)


class SyncContract:
    """Push, fetch, incremental transfers, corruption in flight, refused and atomic HEAD moves,
    against the stores that :meth:`make_stores` gives the server."""

    def make_stores(self, root: Path) -> DetectorStores | None:
        """The server's stores for the workspace at ``root``; None: its own HDF5 files."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DCSYNC_CHUNK", str(CHUNK))

    @pytest.fixture
    def served(self, tmp_path: Path) -> Served:
        root = tmp_path / "central"
        ws = Workspace.init(root, kind="repository")
        return Served(root, self.make_stores(root) or WorkspaceFiles(ws))

    def client(self, root: Path, served: Served) -> Workspace:
        """A local workspace whose ``origin`` is ``served``."""
        ws = Workspace.init(root)
        config = ws.config()
        config.setdefault("remotes", {})["origin"] = RemoteConfig("origin", str(served.root)).to_toml()
        ws.write_config(config)
        return ws

    @pytest.fixture
    def laptop(self, tmp_path: Path, served: Served) -> Workspace:
        """A client with a history of two commits on :data:`DET`."""
        ws = self.client(tmp_path / "laptop", served)
        with ws.new_detector(DET) as repo:
            add_constants(repo, T0, 1)
            add_constants(repo, T1, 2)
        return ws

    def push(self, ws: Workspace, served: Served, tap: WireTap | None = None) -> sync.PushReport:
        with Connection(tap or served.tap()) as conn:
            return sync.push(ws, conn=conn)

    def fetch(self, ws: Workspace, served: Served, tap: WireTap | None = None) -> sync.FetchReport:
        with Connection(tap or served.tap()) as conn:
            return sync.fetch(ws, conn=conn)

    def remote_head(self, served: Served, det: str = DET) -> ObjectId | None:
        """``det``'s HEAD on the server (None: no such detector, or one with no HEAD)."""
        if not served.stores.exists(det):
            return None
        store = served.store(det)
        try:
            return store.head()
        finally:
            store.close()

    # -- helpers -------------------------------------------------------------------------------------
    @staticmethod
    def history(store: ObjectStore, head: ObjectId, since: ObjectId | None = None) -> set[str]:
        """Every object ``head`` needs that ``since`` does not."""
        return {oid for oid, _, _ in objects_for(store, head, [since] if since else [], {})}

    @staticmethod
    def assert_holds(store: ObjectStore, oids: set[str]) -> None:
        """``store`` has every object of ``oids``, and each reads back matching its id."""
        for oid in map(ObjectId, oids):
            assert store.has(oid), oid
            if store.kind_of(oid) in ("tree", "commit"):
                store.read_object(oid, fresh=True)  # hash-checked
            else:
                store.read_payload(oid)  # hash-checked

    # -- scenarios -----------------------------------------------------------------------------------
    def test_push_sends_a_history_and_moves_the_head(self, laptop: Workspace, served: Served) -> None:
        tap = served.tap()
        report = self.push(laptop, served, tap)
        local = HDF5Store(laptop.detector_path(DET))
        remote = served.store()
        try:
            head = local.head()
            assert head is not None and report.pushed == [DET]
            assert remote.head() == head
            sent = self.history(local, head)
            assert set(tap.uploaded) == sent and len(tap.uploaded) == len(sent)  # each object once
            self.assert_holds(remote, sent)
            assert remote.log()[-1].command == "push received"
            assert local.refs()[remote_ref("origin")] == head
        finally:
            local.close()
            remote.close()

    def test_fetch_brings_what_the_client_lacks(
        self, laptop: Workspace, served: Served, tmp_path: Path
    ) -> None:
        self.push(laptop, served)
        desk = self.client(tmp_path / "desk", served)
        tap = served.tap()
        report = self.fetch(desk, served, tap)
        remote = served.store()
        fetched = HDF5Store(desk.fetched_path(DET))
        try:
            head = remote.head()
            assert head is not None and report.updated == {DET: (None, head)}
            assert fetched.refs()[remote_ref("origin")] == head and HEAD not in fetched.refs()
            wanted = self.history(remote, head)
            assert set(tap.requested) == wanted and report.objects == len(wanted)
            self.assert_holds(fetched, wanted)
        finally:
            remote.close()
            fetched.close()
        assert not incoming_dir(desk).joinpath(DET).exists()  # the quarantine was emptied

    def test_a_second_transfer_sends_only_new_objects(
        self, laptop: Workspace, served: Served, tmp_path: Path
    ) -> None:
        self.push(laptop, served)
        desk = self.client(tmp_path / "desk", served)
        self.fetch(desk, served)
        with laptop.repository(DET) as repo:
            first = repo.head()
            add_constants(repo, T2, 3)
            second = repo.head()
        assert first is not None and second is not None
        up = served.tap()
        self.push(laptop, served, up)
        local = HDF5Store(laptop.detector_path(DET))
        try:
            new = self.history(local, second, first)
        finally:
            local.close()
        assert set(up.uploaded) == new and len(up.uploaded) == len(new)
        down = served.tap()
        report = self.fetch(desk, served, down)
        assert report.updated == {DET: (first, second)}
        assert set(down.requested) == new
        remote = served.store()
        try:
            assert remote.head() == second
            self.assert_holds(remote, new)
        finally:
            remote.close()

    def test_a_corrupted_object_in_flight_is_refused(self, laptop: Workspace, served: Served) -> None:
        tap = served.tap(corrupt=True)
        with pytest.raises(CorruptObject, match="corrupt"):
            self.push(laptop, served, tap)
        assert tap.flipped is not None
        assert not served.stores.exists(DET)  # nothing landed: not even an empty store
        assert not list(incoming_dir(Workspace(served.root)).rglob("*.part"))  # nothing half-kept
        report = self.push(laptop, served)  # the same push, uncorrupted, then goes through
        remote = served.store()
        try:
            assert report.pushed == [DET] and remote.head() is not None
            self.assert_holds(remote, {tap.flipped})
        finally:
            remote.close()

    def test_a_push_that_is_not_a_fast_forward_is_refused(
        self, laptop: Workspace, served: Served, tmp_path: Path
    ) -> None:
        self.push(laptop, served)
        desk = self.client(tmp_path / "desk", served)
        with Connection(served.tap()) as conn:
            sync.pull(desk, conn=conn)
        with desk.repository(DET) as repo:
            add_constants(repo, T2, 6)
            theirs = repo.head()
        self.push(desk, served)
        with laptop.repository(DET) as repo:
            add_constants(repo, T2, 7)  # the laptop never saw the desk's commit: histories diverge
        with pytest.raises(NotFastForward, match="pull first"):
            self.push(laptop, served)
        assert self.remote_head(served) == theirs

    def test_an_atomic_update_moves_every_head_or_none(self, laptop: Workspace, served: Served) -> None:
        self.push(laptop, served)
        before = self.remote_head(served)
        with laptop.new_detector(DET2) as repo:
            add_constants(repo, T0, 4)
        with laptop.repository(DET) as repo:
            add_constants(repo, T2, 5)
        heads: dict[str, ObjectId] = {}
        with Connection(served.tap()) as conn:
            for det, old in ((DET, before), (DET2, None)):  # the objects first, as push sends them
                store = HDF5Store(laptop.detector_path(det))
                try:
                    head = store.head()
                    assert head is not None
                    heads[det] = head
                    todo = sorted(map(ObjectId, self.history(store, head, old)))
                    conn.put_objects(det, ObjectSender(store).items(todo))
                finally:
                    store.close()
            wrong = [RefUpdate(DET, heads[DET], heads[DET]), RefUpdate(DET2, None, heads[DET2])]
            with pytest.raises(RefConflict):  # DET's HEAD is not where this update says it is
                conn.update_refs(wrong, atomic=True)
            assert self.remote_head(served) == before and self.remote_head(served, DET2) is None
            right = [RefUpdate(DET, before, heads[DET]), RefUpdate(DET2, None, heads[DET2])]
            answer = conn.update_refs(right, atomic=True)
        assert [r.detector for r in answer.results if r.error is None] == [DET, DET2]
        assert self.remote_head(served) == heads[DET] and self.remote_head(served, DET2) == heads[DET2]
