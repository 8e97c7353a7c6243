"""Issue 9, the judging half: the view writer stays inside the view, the ACL and hooks judge every
change a new tree makes, and version metadata is checked against its payload.

Attacks performed here, each against code that let it through before:

- names that resolve outside the view (``.dcsync``, ``/.dcsync``, ``..``, ``a/b``) given straight
  to the view writer, and planted in a local file's HEAD: nothing outside the view is written;
- a writer allowed only ``pixel_*`` (over a real sshd) moving the newest pedestals range's begin to
  2100 in the ctype tree with the same range tree, adding an empty range ``/.dcsync`` to
  ``pixel_mask``, and every other change outside ``pixel_*`` (in process): all refused; a hook
  sees the moved bounds;
- a float64 (5, 7) payload under an entry claiming ``<f4`` (3, 4): refused on push (sshd), on
  fetch, pull and clone from a server holding it, and reported by ``verify`` when planted
  locally; the ``check-dtype-shape`` and ``pixel-status-integer`` samples judge checked values.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers.wrong_kinds import items_of
from sshd import SSHServer

from dcsync import sync
from dcsync.errors import AccessDenied, CorruptObject, HookRejected, ProtocolError
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey, range_key
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree, Tree, VersionEntry
from dcsync.model.times import parse_time
from dcsync.repo.diff import diff_roots
from dcsync.repo.reach import objects_for
from dcsync.repo.repository import Repository
from dcsync.store import view
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.hdf5file import META
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord
from dcsync.sync.client import Connection
from dcsync.sync.replies import RefUpdate
from dcsync.sync.server import Server
from dcsync.transport.local import InProcessChannel
from dcsync.workspace import config
from dcsync.workspace.acl import Identity, current_identity
from dcsync.workspace.hooks import install
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
S = 10**9
T_JAN = parse_time("2026-01-01T00:00:00Z")
T_JUN = parse_time("2026-06-01T00:00:00Z")
T_JUL = parse_time("2026-07-01T00:00:00Z")
T_2100 = parse_time("2100-01-01T00:00:00Z")
JAN, JUN = np.full((3, 4), 1.0, np.float32), np.full((3, 4), 6.0, np.float32)
ME = current_identity().user


# -- the served workspace ----------------------------------------------------------------------------


def build(root: Path) -> Workspace:
    """pedestals in January (two versions) and June, pixel_mask and pixel_status in January."""
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo:
        with repo.transaction("January darks") as tx:
            tx.add("pedestals", JAN - 1, begin_ns=T_JAN)
            tx.add("pixel_mask", np.ones((3, 4), bool), begin_ns=T_JAN)
            tx.add("pixel_status", np.zeros((3, 4), np.uint16), begin_ns=T_JAN)
        with repo.transaction("January darks, again") as tx:
            tx.add("pedestals", JAN, begin_ns=T_JAN)
        with repo.transaction("June darks") as tx:
            tx.add("pedestals", JUN, begin_ns=T_JUN)
    return ws


def restrict_to_pixel(ws: Workspace) -> None:
    """This user may add, pin and remove in ``pixel_*`` only (someone else owns the location)."""
    (ws.root / ".dcsync" / "acl.toml").write_text(
        'kind = "repository"\nowner = "someone-else"\n\n[[rule]]\n'
        f'principals = ["user:{ME}"]\nallow = ["add", "set-default", "remove"]\nctypes = ["pixel_*"]\n',
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("judge") / "served").root


@pytest.fixture
def served(template: Path, tmp_path: Path) -> Workspace:
    shutil.copytree(template, tmp_path / "served")
    return Workspace(tmp_path / "served")


@dataclass
class Base:
    """The served HEAD's objects in memory, to build hostile commits on."""

    store: MemoryStore
    head: ObjectId
    root: RootTree

    @classmethod
    def of(cls, ws: Workspace) -> Base:
        out = MemoryStore()
        with Repository.open(ws.detector_path(DET)) as repo:
            head = repo.head()
            assert head is not None
            with out.writing():
                for oid, kind, _ in objects_for(repo.store, head, [], {}):
                    if kind in ("tree", "commit"):
                        out.put_body(oid, repo.store.kind_of(oid), repo.store.body_of(oid)[1])
                    else:
                        out.put_payload(repo.store.read_payload(oid), known_id=oid)
        return cls(out, head, out.read_as(out.read_commit(head).tree, RootTree))

    def ctype(self, name: str) -> CtypeTree:
        return self.store.read_as(self.root.ctypes[name], CtypeTree)

    def range(self, ctype: str, begin: int) -> tuple[RangeKey, RangeRef, RangeTree]:
        key = range_key(begin, None)
        ref = self.ctype(ctype).ranges[key]
        return key, ref, self.store.read_as(ref.tree, RangeTree)

    def put(self, obj: Tree | Commit) -> ObjectId:
        with self.store.writing():
            return self.store.put_object(obj)

    def put_payload(self, value: np.ndarray) -> ObjectId:
        with self.store.writing():
            return self.store.put_payload(value)

    def with_ctype(self, name: str, tree: CtypeTree, root: RootTree | None = None) -> RootTree:
        root = root or self.root
        return replace(root, ctypes={**root.ctypes, name: self.put(tree)})

    def with_range(self, ctype: str, key: str, ref: RangeRef) -> RootTree:
        ct = self.ctype(ctype)
        return self.with_ctype(ctype, replace(ct, ranges={**ct.ranges, RangeKey(key): ref}))

    def commit(self, root: RootTree, message: str = "constants from the dark run of June") -> ObjectId:
        return self.put(Commit(self.put(root), (self.head,), "mallory", "evilhost", T_JUL, message))

    def new_objects(self, ws: Workspace) -> list[ObjectId]:
        with Repository.open(ws.detector_path(DET)) as repo:
            return [oid for oid in self.store.object_ids() if not repo.store.has(oid)]


# attacks on the ctype and root trees, by name ---------------------------------------------------------


def moved_bounds(b: Base) -> ObjectId:
    """June's range begins in 2100 as the ctype tree says; its range tree is the same."""
    key, ref, _ = b.range("pedestals", T_JUN)
    return b.commit(b.with_range("pedestals", key, replace(ref, begin=T_2100)))


def empty_range(b: Base, ctype: str, key: str, begin: int = T_JAN) -> ObjectId:
    tree = b.put(RangeTree(begin, None))
    return b.commit(b.with_range(ctype, key, RangeRef(begin, None, tree)))


def payload_claiming(b: Base, ctype: str, value: np.ndarray, **claims: Any) -> ObjectId:
    """A new version of ``ctype`` in June's range (a new one for ``pixel_*``) whose payload is
    ``value`` and whose entry says ``claims`` (dtype, shape, nbytes) instead of the truth."""
    entry = VersionEntry.describe(value, tsprod=T_2100, author="mallory", pars={})  # the newest
    b.put_payload(value)
    entry = replace(entry, **claims)
    key = range_key(T_JUN, None)
    ct = b.ctype(ctype)
    old = b.store.read_as(ct.ranges[key].tree, RangeTree) if key in ct.ranges else RangeTree(T_JUN, None)
    tree = replace(old, default=None, versions={**old.versions, VersionKey("badbadbadbad"): entry})
    return b.commit(b.with_range(ctype, key, RangeRef(T_JUN, None, b.put(tree))))


# -- sshd ---------------------------------------------------------------------------------------------


@pytest.fixture
def ssh(sshd: SSHServer, monkeypatch: pytest.MonkeyPatch) -> SSHServer:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    dot_ssh = Path(os.environ["HOME"]) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(sshd.known_hosts, dot_ssh / "known_hosts")
    shutil.copy(sshd.client_key, dot_ssh / "id_ed25519")
    (dot_ssh / "id_ed25519").chmod(0o600)
    return sshd


def remote(server: SSHServer, ws: Workspace) -> config.RemoteConfig:
    return config.RemoteConfig("origin", server.url(str(ws.root), alias=False), server.remote_dcsync, None)


def push_raw(conn: Connection, b: Base, ws: Workspace, new: ObjectId) -> Any:
    """What a hostile client sends: the objects the server lacks, then the ref move (atomic, so a
    refusal comes back as the error itself)."""
    conn.put_objects(DET, items_of(b.store, b.new_objects(ws)))
    return conn.update_refs([RefUpdate(DET, b.head, new)], atomic=True)


def in_process(ws: Workspace, who: Identity) -> Connection:
    server = Server(ws.root, identity=who)

    def serve(read: Any, write: Any) -> None:
        try:
            server.serve(read, write)
        finally:
            server.close()

    return Connection(InProcessChannel(serve, description=f"in-process {ws.root} as {who.user}"))


def assert_untouched(ws: Workspace, head: ObjectId) -> None:
    """The served file verifies, HEAD did not move, and lookups answer as before."""
    path = ws.detector_path(DET)
    report = verify_path(path)
    assert report.ok, report.problems
    with Repository.open(path) as repo:
        assert repo.head() == head
        assert np.array_equal(repo.get("pedestals", at_ns=T_JUL).value, JUN)
        assert np.array_equal(repo.get("pedestals", at_ns=T_JAN).value, JAN)
    with h5py.File(path, "r") as f:
        assert {"objects", "log"} <= set(f[META])


def record_hook(ws: Workspace, *, refuse: bool) -> Path:
    """A pre-receive hook that keeps its input (and refuses, with ``refuse``)."""
    out = ws.root / "hook-input.json"
    hook = ws.root / ".dcsync" / "hooks" / "pre-receive.d" / "zz-record"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(out)!r}, 'w').write(sys.stdin.read())\n"
        f"sys.exit({1 if refuse else 0})\n",
        encoding="utf-8",
    )
    hook.chmod(0o755)
    return out


# -- item 1: the view writer stays inside the view ------------------------------------------------------

HOSTILE = [".dcsync", "", ".", "..", "a/b", "/x", "/", "x/../.dcsync", "/.dcsync"]


def test_level_path_resolves_and_refuses_what_leaves_the_view() -> None:
    assert view.level_path("pedestals") == "/pedestals"
    assert view.level_path("pedestals", "1-end", "0123456789ab") == "/pedestals/1-end/0123456789ab"
    for name in HOSTILE:
        for args in ((name,), ("pixel_mask", name), ("pixel_mask", "1-end", name)):
            if args[-1] == ".dcsync" and len(args) > 1:
                assert view.level_path(*args).endswith("/.dcsync")  # inside its ctype: harmless here
                continue
            with pytest.raises(CorruptObject, match="which the view cannot hold"):
                view.level_path(*args)
    with pytest.raises(CorruptObject, match=r"resolves to '/\.dcsync'"):
        view.level_path("pixel_mask", "/.dcsync")


def _bare_file(path: Path) -> h5py.File:
    """A file with the metadata a repository keeps under /.dcsync, and nothing of a view yet."""
    f = h5py.File(path, "w")
    meta = f.create_group(META)
    meta.create_group("objects").create_dataset("ab/cdef", data=np.arange(3))
    meta.create_dataset("log", data=np.arange(5))
    meta.attrs["view"] = ""
    return f


@pytest.mark.parametrize("level", ["ctype", "range", "version"])
@pytest.mark.parametrize("name", HOSTILE)
def test_the_view_writer_never_writes_outside_the_view(tmp_path: Path, level: str, name: str) -> None:
    """Called directly with a hostile name: refused, and /.dcsync is exactly as it was."""
    store = MemoryStore()
    payload = np.arange(4, dtype=np.int32)
    with store.writing():
        oid = store.put_payload(payload)
        entry = VersionEntry.describe(payload, tsprod=1, author="m", pars={})
        vkey = name if level == "version" else "0123456789ab"
        rng = store.put_object(RangeTree(T_JAN, None, versions={VersionKey(vkey): entry}))
        rkey = name if level == "range" else range_key(T_JAN, None)
        ct = store.put_object(CtypeTree(ranges={RangeKey(rkey): RangeRef(T_JAN, None, rng)}))
        ctype = name if level == "ctype" else "pixel_mask"
        root = store.put_object(RootTree("epix100a", "1", 0, ctypes={ctype: ct}))
        head = store.put_object(Commit(root, (), "m", "h", 1, "hostile"))
    assert oid
    with _bare_file(tmp_path / "view.h5") as f:
        if name == ".dcsync" and level != "ctype":  # /pixel_mask/.dcsync: inside its ctype's group
            view.update(f, store, None, head)
            assert sorted(f[META]) == ["log", "objects"] and f[META].attrs["view"] == head
            assert "pixel_mask" in f
            return
        with pytest.raises(CorruptObject, match="which the view cannot hold"):
            view.update(f, store, None, head)
        assert sorted(f[META]) == ["log", "objects"]
        assert list(f[META]["objects"]["ab"]) == ["cdef"] and f[META]["log"].shape == (5,)
        assert f[META].attrs["view"] == ""
        # a payload linked in later (a partial clone's) goes through the same check
        f[META].attrs["view"] = head
        with pytest.raises(CorruptObject, match="which the view cannot hold"):
            view.link_payloads(f, store, {oid})
        assert sorted(f[META]) == ["log", "objects"]


def test_an_entry_whose_object_is_not_an_id_is_never_linked(tmp_path: Path) -> None:
    store = MemoryStore()
    entry = VersionEntry(ObjectId("../log"), 1, "array", "<i4", (3,), 12, "m")
    with store.writing():
        rng = store.put_object(RangeTree(T_JAN, None, versions={VersionKey("0123456789ab"): entry}))
        ct = store.put_object(CtypeTree(ranges={range_key(T_JAN, None): RangeRef(T_JAN, None, rng)}))
        root = store.put_object(RootTree("epix100a", "1", 0, ctypes={"pixel_mask": ct}))
        head = store.put_object(Commit(root, (), "m", "h", 1, "hostile"))
    with _bare_file(tmp_path / "view.h5") as f:
        with pytest.raises(CorruptObject, match="not an object id"):
            view.update(f, store, None, head)
        assert sorted(f[META]) == ["log", "objects"]


def plant(path: Path, b: Base, head: ObjectId, *, update_view: bool) -> None:
    """Make ``head`` the file's HEAD with its objects, skipping every check a push or a commit
    runs (what an older dcsync let in); the view is updated only with ``update_view``."""
    store = HDF5Store(path)
    try:
        with store.writing():
            for oid in b.store.object_ids():
                kind = b.store.kind_of(oid)
                if kind in ("tree", "commit"):  # past put_body's validity check, as an older dcsync
                    if not store.has(oid):
                        store._store_body(oid, kind, b.store.body_of(oid)[1])
                else:
                    store.put_payload(b.store.read_payload(oid), known_id=oid)
            if update_view:
                store.set_ref(HEAD, b.head, head, LogRecord(HEAD, b.head, head, "test", "planted"))
            else:
                meta = store._writer()[META]
                meta.attrs["refs"] = json.dumps({**json.loads(meta.attrs["refs"]), HEAD: head})
    finally:
        store.close()


@pytest.mark.parametrize("attack", ["ctype .dcsync", "range /.dcsync"])
def test_a_hostile_tree_planted_in_a_local_file_cannot_wipe_its_metadata(
    served: Workspace, attack: str
) -> None:
    b = Base.of(served)
    if attack == "ctype .dcsync":
        head = b.commit(b.with_ctype(".dcsync", CtypeTree()))
    else:
        head = empty_range(b, "pixel_mask", "/.dcsync")
    path = served.detector_path(DET)
    plant(path, b, head, update_view=False)
    with h5py.File(path, "r") as f:
        objects, log = len(f["/.dcsync/objects"]), f["/.dcsync/log"].shape
    with (
        Repository.open(path) as repo,
        pytest.raises(CorruptObject, match=r"view cannot hold|is malformed"),
        repo.transaction("a commit on top") as tx,  # the view catches up through the planted commit
    ):
        tx.add("pixel_mask", np.zeros((3, 4), bool), begin_ns=T_JUN)
    with h5py.File(path, "r") as f:
        assert (len(f["/.dcsync/objects"]), f["/.dcsync/log"].shape) == (objects, log)
        assert str(f[META].attrs["view"]) == b.head  # the view still shows the last sound commit
    with Repository.open(path) as repo:
        assert repo.head() == head
        assert np.array_equal(repo.get("pedestals", at_ns=T_JUL).value, JUN)
    report = verify_path(path)
    assert not report.ok  # the view does not show HEAD, and HEAD names what no view can hold


# -- items 1 and 4: the ACL judges every change --------------------------------------------------------


def _range_pars(b: Base) -> ObjectId:
    key, ref, tree = b.range("pedestals", T_JUN)
    return b.commit(b.with_range("pedestals", key, replace(ref, tree=b.put(replace(tree, pars={"q": 1})))))


def _repin(b: Base) -> ObjectId:
    key, ref, tree = b.range("pedestals", T_JAN)
    older = tree.ordered()[0]
    assert tree.effective() != older
    return b.commit(b.with_range("pedestals", key, replace(ref, tree=b.put(replace(tree, default=older)))))


def _drop_range(b: Base) -> ObjectId:
    ct = b.ctype("pedestals")
    ranges = {k: r for k, r in ct.ranges.items() if k != range_key(T_JUN, None)}
    return b.commit(b.with_ctype("pedestals", replace(ct, ranges=ranges)))


def _drop_version(b: Base) -> ObjectId:
    key, ref, tree = b.range("pedestals", T_JAN)
    keep = {k: e for k, e in tree.versions.items() if k == tree.effective()}
    return b.commit(b.with_range("pedestals", key, replace(ref, tree=b.put(replace(tree, versions=keep)))))


def _tree_bounds(b: Base) -> ObjectId:
    """The range tree's own begin moves; the ctype tree's bounds stay."""
    key, ref, tree = b.range("pedestals", T_JUN)
    return b.commit(b.with_range("pedestals", key, replace(ref, tree=b.put(replace(tree, begin=T_2100)))))


# name -> (build the new HEAD, a (ctype, kind) the diff must report)
OUTSIDE_PIXEL: dict[str, tuple[Callable[[Base], ObjectId], tuple[str | None, str]]] = {
    "bounds moved, same range tree": (moved_bounds, ("pedestals", "range")),
    "range tree's own bounds moved": (_tree_bounds, ("pedestals", "range")),
    "empty range under a new key": (
        lambda b: empty_range(b, "pedestals", range_key(T_2100, None), T_2100),
        ("pedestals", "range"),
    ),
    "ctype parameters": (
        lambda b: b.commit(b.with_ctype("pedestals", replace(b.ctype("pedestals"), pars={"gain": "low"}))),
        ("pedestals", "pars"),
    ),
    "range parameters": (_range_pars, ("pedestals", "pars")),
    "re-pinned default": (_repin, ("pedestals", "default")),
    "removed range": (_drop_range, ("pedestals", "range")),
    "removed version": (_drop_version, ("pedestals", "removed")),
    "new empty ctype": (lambda b: b.commit(b.with_ctype("pedestals2", CtypeTree())), ("pedestals2", "ctype")),
    "root parameters": (lambda b: b.commit(replace(b.root, pars={"site": "evil"})), (None, "pars")),
    "predecessor": (lambda b: b.commit(replace(b.root, predecessor="epix100a-0")), (None, "links")),
    "detector identity": (lambda b: b.commit(replace(b.root, created=T_2100)), (None, "detector")),
    "pixel_mask range /.dcsync": (
        lambda b: empty_range(b, "pixel_mask", "/.dcsync"),
        ("pixel_mask", "range"),
    ),
    "ctype .dcsync": (lambda b: b.commit(b.with_ctype(".dcsync", CtypeTree())), (".dcsync", "ctype")),
}


@pytest.mark.parametrize("name", list(OUTSIDE_PIXEL))
def test_a_pixel_writer_may_change_nothing_else(served: Workspace, name: str) -> None:
    build_head, (ctype, kind) = OUTSIDE_PIXEL[name]
    restrict_to_pixel(served)
    b = Base.of(served)
    new = build_head(b)
    new_root = b.store.read_as(b.store.read_commit(new).tree, RootTree)
    reported = {(c.ctype, c.kind) for c in diff_roots(b.store, b.root, b.store, new_root)}
    assert (ctype, kind) in reported, reported  # the diff sees it, so the ACL and the hooks do
    # ProtocolError: where the receive checks of issue 9 (names, invariants) get there first
    with in_process(served, Identity(ME)) as conn, pytest.raises((AccessDenied, ProtocolError)):
        push_raw(conn, b, served, new)
    assert_untouched(served, b.head)


def test_the_pixel_writer_can_still_write_pixel_ctypes(served: Workspace) -> None:
    restrict_to_pixel(served)
    b = Base.of(served)
    key, ref, tree = b.range("pixel_mask", T_JAN)
    value = np.zeros((3, 4), bool)
    b.put_payload(value)
    entry = VersionEntry.describe(value, tsprod=T_JUL, author=ME, pars={})
    vkey = VersionKey("0123456789ab")
    tree = replace(tree, default=vkey, versions={**tree.versions, vkey: entry})
    new = b.commit(b.with_range("pixel_mask", key, replace(ref, tree=b.put(tree))))
    with in_process(served, Identity(ME)) as conn:
        push_raw(conn, b, served, new)
    with served.repository(DET) as repo:
        assert repo.head() == new and not repo.get("pixel_mask", at_ns=T_JUL).value.any()


def test_over_ssh_the_pixel_writer_cannot_move_the_pedestals_bounds(
    served: Workspace, ssh: SSHServer
) -> None:
    restrict_to_pixel(served)
    b = Base.of(served)
    new = moved_bounds(b)
    with sync.connect(remote(ssh, served)) as conn, pytest.raises((AccessDenied, ProtocolError)) as caught:
        push_raw(conn, b, served, new)
    if isinstance(caught.value, AccessDenied):
        assert f"{ME} may not add on {DET} pedestals" in str(caught.value)
    assert_untouched(served, b.head)  # get --at 2026-07-01 still returns June's pedestals


def test_over_ssh_an_empty_range_under_dcsync_is_refused(served: Workspace, ssh: SSHServer) -> None:
    restrict_to_pixel(served)
    b = Base.of(served)
    new = empty_range(b, "pixel_mask", "/.dcsync")
    with sync.connect(remote(ssh, served)) as conn, pytest.raises((AccessDenied, ProtocolError)) as caught:
        push_raw(conn, b, served, new)
    if isinstance(caught.value, AccessDenied):
        assert "no rule grants a name that leaves its ctype" in str(caught.value)
        assert "'/.dcsync'" in str(caught.value)
    assert_untouched(served, b.head)


def test_over_ssh_a_hook_sees_the_moved_bounds(served: Workspace, ssh: SSHServer) -> None:
    """A writer the ACL lets change pedestals: the hook gets the move (old and new bounds)."""
    seen = record_hook(served, refuse=True)
    b = Base.of(served)
    new = moved_bounds(b)
    with sync.connect(remote(ssh, served)) as conn, pytest.raises((HookRejected, ProtocolError)) as caught:
        push_raw(conn, b, served, new)
    assert_untouched(served, b.head)
    if isinstance(caught.value, ProtocolError):  # refused on receipt: the bounds disagree
        assert not seen.exists()
        return
    event = json.loads(seen.read_text())
    [moved] = [c for c in event["changes"] if c["change"] == "range"]
    assert (moved["ctype"], moved["range"]) == ("pedestals", range_key(T_JUN, None))
    assert moved["old"] == {"begin": "2026-06-01T00:00:00Z", "end": None}
    june = "2026-06-01T00:00:00Z"
    assert moved["new"] == {
        "begin": "2100-01-01T00:00:00Z",
        "end": None,
        "tree_begin": june,
        "tree_end": None,
    }


# -- item 5: version metadata against the payload ------------------------------------------------------


def lying_pedestals(b: Base) -> ObjectId:
    """float64 (5, 7) under an entry that says <f4 (3, 4), 48 bytes."""
    value = np.arange(35, dtype=np.float64).reshape(5, 7)
    return payload_claiming(b, "pedestals", value, dtype="<f4", shape=(3, 4), nbytes=48)


def test_over_ssh_a_payload_under_a_lying_entry_is_refused(served: Workspace, ssh: SSHServer) -> None:
    b = Base.of(served)
    new = lying_pedestals(b)
    with sync.connect(remote(ssh, served)) as conn, pytest.raises(ProtocolError) as caught:
        push_raw(conn, b, served, new)
    message = str(caught.value)
    assert "dtype '<f4' (the payload is '<f8')" in message, message
    assert "shape (3, 4) (the payload is (5, 7))" in message and "nbytes 48 (the payload has 280)" in message
    assert "version 'badbadbadbad'" in message
    assert_untouched(served, b.head)


@pytest.mark.parametrize("how", ["fetch", "pull", "clone", "diff --values"])
def test_a_server_holding_a_lying_entry_cannot_pass_it_on(
    template: Path, tmp_path: Path, ssh: SSHServer, how: str
) -> None:
    served = Workspace(shutil.copytree(template, tmp_path / "served"))
    laptop, _ = sync.clone(str(served.root), tmp_path / "laptop")
    b = Base.of(served)
    plant(served.detector_path(DET), b, lying_pedestals(b), update_view=True)
    spec = remote(ssh, served)
    if how == "clone":
        with pytest.raises(ProtocolError, match=r"dtype '<f4' \(the payload is '<f8'\)"):
            sync.clone(spec.url, tmp_path / "other", remote_dcsync=spec.remote_dcsync)
        return
    if how == "diff --values":  # the compared version's payload arrives only now
        with pytest.raises(ProtocolError, match=r"a version of .* claiming dtype '<f4'"):
            sync.diff_sources(spec.url, str(laptop.root), values=True, remote_dcsync=spec.remote_dcsync)
        return
    config.add_remote(laptop, replace(spec, name="hostile"))
    with pytest.raises(ProtocolError, match=r"shape \(3, 4\) \(the payload is \(5, 7\)\)"):
        sync.fetch(laptop, "hostile") if how == "fetch" else sync.pull(laptop, "hostile")
    with laptop.repository(DET) as repo:
        assert repo.head() == b.head and "remotes/hostile" not in repo.store.refs()
    assert verify_path(laptop.detector_path(DET)).ok


def test_verify_reports_a_lying_entry_planted_locally(served: Workspace) -> None:
    b = Base.of(served)
    new = lying_pedestals(b)
    path = served.detector_path(DET)
    plant(path, b, new, update_view=True)
    report = verify_path(path)
    [problem] = report.problems
    assert "version badbadbadbad claims dtype '<f4' (the payload is '<f8')" in problem
    assert "shape (3, 4) (the payload is (5, 7))" in problem
    proc = subprocess.run(
        [sys.executable, "-m", "dcsync", "-C", str(served.root), "verify", DET],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == CorruptObject.exit_code, proc.stderr
    assert "dtype '<f4'" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def sampled(served: Workspace) -> Iterator[Workspace]:
    install(served.root, "check-dtype-shape")
    install(served.root, "pixel-status-integer")
    yield served


@pytest.mark.parametrize(
    ("ctype", "value", "claims", "refusal"),
    [
        # a lie is refused on receipt: the hooks never judge a claim
        ("pedestals", np.zeros((5, 7)), {"dtype": "<f4", "shape": (3, 4), "nbytes": 48}, "dtype '<f4'"),
        ("pixel_status", np.zeros((3, 4), np.float32), {"dtype": "<u2", "nbytes": 24}, "dtype '<u2'"),
        # the truth reaches the hooks, which judge it
        ("pedestals", np.zeros((5, 7)), {}, "check-dtype-shape: pedestals .* float64 \\(5, 7\\)"),
        ("pixel_status", np.zeros((3, 4), np.float32), {}, "pixel-status-integer: .* dtype float32"),
    ],
    ids=["pedestals lie", "status lie", "pedestals truth", "status truth"],
)
def test_over_ssh_the_sample_hooks_judge_checked_values(
    sampled: Workspace, ssh: SSHServer, ctype: str, value: np.ndarray, claims: dict[str, Any], refusal: str
) -> None:
    if refusal.startswith("pixel-status-integer"):  # alone: check-dtype-shape would refuse first
        (sampled.root / ".dcsync" / "hooks" / "pre-receive.d" / "check-dtype-shape").unlink()
    b = Base.of(sampled)
    new = payload_claiming(b, ctype, value, **claims)
    error = ProtocolError if claims else HookRejected
    with sync.connect(remote(ssh, sampled)) as conn, pytest.raises(error, match=refusal):
        push_raw(conn, b, sampled, new)
    assert_untouched(sampled, b.head)


def test_over_ssh_the_sample_hooks_let_checked_integer_status_in(sampled: Workspace, ssh: SSHServer) -> None:
    seen = record_hook(sampled, refuse=False)
    b = Base.of(sampled)
    new = payload_claiming(b, "pixel_status", np.ones((3, 4), np.uint16))
    with sync.connect(remote(ssh, sampled)) as conn:
        push_raw(conn, b, sampled, new)
    [added] = [c for c in json.loads(seen.read_text())["changes"] if c["change"] == "added"]
    assert (added["dtype"], added["shape"], added["nbytes"]) == ("<u2", [3, 4], 24)
    with sampled.repository(DET) as repo:
        assert repo.head() == new
