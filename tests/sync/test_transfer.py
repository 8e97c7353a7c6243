"""One transfer path for both ends (dcsync.sync.transfer), and the server's seams.

The sender's items fed to the receiver land verified in a real quarantine; an object begun before
the last one ended is refused by either end, and leaves no partial file; the server module reaches
no transport, not even through what it imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.wrong_kinds import copy_of

from dcsync import sync
from dcsync.errors import ProtocolError
from dcsync.model.hashing import ObjectId
from dcsync.model.times import parse_time
from dcsync.repo.reach import objects_for, transfer_header
from dcsync.store.memory import MemoryStore
from dcsync.sync.client import Connection
from dcsync.sync.protocol import chunk_size, write_frame
from dcsync.sync.quarantine import Quarantine, incoming_dir
from dcsync.sync.server import Server
from dcsync.sync.stores import MemoryStores
from dcsync.sync.transfer import Meter, ObjectReceiver, ObjectSender, object_item
from dcsync.transport.local import InProcessChannel
from dcsync.workspace.config import RemoteConfig
from dcsync.workspace.workspace import Workspace

DET = "epix100a-0001"
T0 = parse_time("2024-01-01T00:00:00Z")
CHUNK = 1000


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(CHUNK))


@pytest.fixture
def central(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "central", kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("constants") as tx:
        tx.add("pedestals", np.arange(3000, dtype=np.float32).reshape(30, 100), begin_ns=T0)
        tx.add("geometry", "# geometry\n" * 300, begin_ns=T0)
    return ws


def history(ws: Workspace) -> tuple[MemoryStore, list[ObjectId]]:
    """A copy of the detector's objects in memory, and their ids."""
    with ws.repository(DET) as repo:
        head = repo.head()
        assert head is not None
        store = copy_of(repo.store, head)
    return store, [oid for oid, _, _ in objects_for(store, head, [], {})]


def test_what_the_sender_sends_the_receiver_keeps(central: Workspace, tmp_path: Path) -> None:
    store, oids = history(central)
    sent, got = Meter(), Meter()
    items = list(ObjectSender(store, sent).items(oids))
    chunks = [item["c"] for item in items if "c" in item]
    assert max(map(len, chunks)) <= chunk_size() == CHUNK and len(chunks) > len(oids)  # bounded pieces
    quarantine = Quarantine(tmp_path / "q")
    with ObjectReceiver(quarantine.receive, peer="test", meter=got) as receiver:
        for item in items:
            receiver.feed(object_item(item))
        receiver.end()
    assert receiver.received == len(oids) and set(quarantine.ids()) == set(oids)
    assert sent.done == got.done == sum(map(len, chunks))
    fresh = MemoryStore()
    with fresh.writing():
        quarantine.import_into(fresh, oids)  # every object hash-checked once more on the way in
    assert sorted(fresh.object_ids()) == sorted(oids)


def overlapping(store: MemoryStore, oids: list[ObjectId]) -> list[dict[str, Any]]:
    """Items where a second object begins after half the first one's bytes."""
    first, _ = transfer_header(store, oids[0], CHUNK)
    second = list(ObjectSender(store).items(oids[1:2]))
    body = b"".join(item["c"] for item in ObjectSender(store).items(oids[:1]) if "c" in item)
    return [{"h": first}, {"c": body[: len(body) // 2]}, *second]


def big_first(store: MemoryStore, oids: list[ObjectId]) -> list[ObjectId]:
    return sorted(oids, key=lambda oid: -transfer_header(store, oid, CHUNK)[0]["n"])


def test_a_new_object_before_the_last_ended_is_refused_and_leaves_nothing(
    central: Workspace, tmp_path: Path
) -> None:
    store, oids = history(central)
    quarantine = Quarantine(tmp_path / "q")
    items = overlapping(store, big_first(store, oids))
    with (
        pytest.raises(ProtocolError, match="before the last one ended"),
        ObjectReceiver(quarantine.receive, peer="test") as receiver,
    ):
        for item in items:
            receiver.feed(object_item(item))
    assert list((tmp_path / "q").iterdir()) == []  # the half object's part file went too


class OverlappingServer(Server):
    """Answers get_objects with a second object begun inside the first."""

    def do_get_objects(self, rid: int, read: Any, write: Any, items: list[Any]) -> dict[str, Any]:
        store, _ = history(self.ws)
        wanted = [ObjectId(oid) for _, oid in items]
        for item in overlapping(store, wanted):
            write_frame(write, {"i": rid, "s": item})
        return {"count": len(items)}


def test_a_client_refuses_an_object_begun_inside_another(central: Workspace, tmp_path: Path) -> None:
    laptop = Workspace.init(tmp_path / "laptop")
    config = laptop.config()
    config["remotes"] = {"origin": RemoteConfig("origin", str(central.root)).to_toml()}
    laptop.write_config(config)
    server = OverlappingServer(central.root)
    with (
        pytest.raises(ProtocolError, match="before the last one ended"),
        Connection(InProcessChannel(server.serve)) as conn,
    ):
        sync.fetch(laptop, conn=conn)
    server.close()
    assert not list(incoming_dir(laptop).rglob("*.part")) and not list(incoming_dir(laptop).rglob(".*"))


def test_a_push_into_memory_stores_lands_there_and_writes_no_file(central: Workspace, tmp_path: Path) -> None:
    served = Workspace.init(tmp_path / "served", kind="repository")
    stores = MemoryStores()
    config = central.config()
    config["remotes"] = {"origin": RemoteConfig("origin", str(served.root)).to_toml()}
    central.write_config(config)
    server = Server(served.root, stores=stores)
    with Connection(InProcessChannel(server.serve)) as conn:
        report = sync.push(central, conn=conn)
    server.close()
    with central.repository(DET) as repo:
        assert report.pushed == [DET] and stores.open(DET).head() == repo.head()
    assert served.detectors() == [] and not list(served.root.rglob("*.h5"))


def module_imports(path: Path) -> set[str]:
    """The dcsync modules a file imports, at any depth of it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dcsync"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dcsync"))
    return out


def test_the_server_reaches_no_transport() -> None:
    """server.py sees read/write callables only: it imports no transport, and nothing it imports
    (transitively, within dcsync) reaches a channel or the client that dials one. The one module of
    dcsync.transport it reaches is the URL parser, through the remote configuration
    (dcsync.workspace.config: is this workspace a partial clone?)."""
    package = Path(sys.modules["dcsync"].__file__ or "").parent
    server = package / "sync" / "server.py"
    assert not {m for m in module_imports(server) if m.startswith("dcsync.transport")}
    seen, todo = set(), ["dcsync.sync.server"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        base = package.parent / module.replace(".", "/")
        path = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if path.exists():
            todo.extend(module_imports(path))
    reached = {m for m in seen if m.startswith("dcsync.transport") or m == "dcsync.sync.client"}
    assert reached == {"dcsync.transport.url"}


def names_imported(path: Path) -> set[str]:
    """Every dcsync module a file imports, and every name it imports from one (``from
    dcsync.store import hdf5`` is ``dcsync.store.hdf5`` too), at any depth of it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dcsync"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("dcsync"))
    return out


def test_sync_reaches_files_only_through_its_seams() -> None:
    """In dcsync.sync only the seam to the store layer (stores.py) and whole files (wholefile.py,
    HDF5 by nature) import the HDF5 store; and no module opens a repository without its
    workspace's guard (Repository.open), so the ACL and hooks apply wherever one is written."""
    sync_dir = Path(sys.modules["dcsync"].__file__ or "").parent / "sync"
    modules = sorted(sync_dir.glob("*.py"))
    assert len(modules) > 10  # the walk sees the package
    hdf5 = {p.name for p in modules if any(m.startswith("dcsync.store.hdf5") for m in names_imported(p))}
    assert hdf5 == {"stores.py", "wholefile.py"}
    bare = {
        p.name
        for p in modules
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "open"
        and isinstance(node.value, ast.Name)
        and node.value.id == "Repository"
    }
    assert bare == set()
