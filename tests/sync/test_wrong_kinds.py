"""Objects of the wrong kind, well hashed, in every position a reference has (issue 8).

A commit's tree, a parent, a root's ctype entry, a ctype's range entry, a version's payload and
the head itself each promise a kind; every other kind is put there, either sent along or one the
receiver already holds (tests/helpers/wrong_kinds.py enumerates them). Pushed to a real server
(in process and through ``dcsync serve --stdio`` over pipes) and fetched from a hostile server,
each must be refused as a protocol error naming the object and both kinds, the session must go
on or end cleanly without a traceback, and nothing may be stored: the target still verifies and
answers as before. A file that already holds such an object (an older dcsync let one in) reads
as corrupt: ``get`` and ``verify`` exit with the corruption code.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from helpers.channels import serve_function
from helpers.wrong_kinds import KINDS, POSITIONS, Case, HostileServer, cases, items_of

from dcsync import sync
from dcsync.errors import ConnectionLost, CorruptObject, ProtocolError
from dcsync.model.hashing import ObjectId
from dcsync.model.objects import CtypeTree, RootTree
from dcsync.repo.repository import Repository
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.hdf5file import META
from dcsync.store.refs import HEAD, remote_ref
from dcsync.sync.client import Connection
from dcsync.sync.replies import RefsUpdated, RefUpdate
from dcsync.transport.local import InProcessChannel, SubprocessChannel
from dcsync.workspace import config
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

DET, NEW_DET = "epix-1", "epix-9"
PEDESTALS = np.arange(12, dtype="<f4").reshape(3, 4)
HELPERS = Path(__file__).resolve().parents[1] / "helpers"
NAMES = [
    f"{position}={kind}{' (stored)' if stored else ''}"
    for position, expected in POSITIONS.items()
    for kind in KINDS
    if kind != expected
    for stored in (False, True)
]


@dataclass(frozen=True)
class Template:
    served: Path  # the server's workspace, copied for each test
    client: Path  # a clone of it (remote "origin"), copied for each test
    head: ObjectId
    cases: list[Case]

    def case(self, name: str) -> Case:
        return self.cases[NAMES.index(name)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    base = tmp_path_factory.mktemp("wrong-kinds")
    ws = Workspace.init(base / "served", kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("constants") as tx:
        tx.add("pedestals", PEDESTALS, 100)
        tx.add("geometry", "a geometry", 100)
    head = tx.commit_id
    assert head is not None
    sync.clone(str(ws.root), base / "client")
    built = cases(ws.detector_path(DET))
    assert [c.name for c in built] == NAMES  # the enumeration the ids below name
    return Template(ws.root, base / "client", head, built)


def copy(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def assert_refused(exc_or_message: BaseException | str, case: Case) -> None:
    """The refusal names the wrong object and what it was sent as and is."""
    message = str(exc_or_message)
    assert case.target in message, message
    assert re.search(rf"as an? {case.expected}, but it is an? {case.kind}\b", message), message


def assert_untouched(root: Path, t: Template, case: Case, *, remote: str | None = None) -> None:
    """Nothing of the case was stored: the file verifies, its refs and answers are as before."""
    ws = Workspace(root)
    assert not ws.detector_path(NEW_DET).exists()
    path = ws.detector_path(DET)
    report = verify_path(path)
    assert report.ok, report.problems
    with Repository.open(path) as repo:
        assert repo.head() == t.head
        if remote is not None:
            assert repo.store.refs()[remote_ref(remote)] == t.head
        assert np.array_equal(repo.get("pedestals").value, PEDESTALS)
        assert repo.get("geometry").value == "a geometry"
        assert [oid for oid in case.new if repo.store.has(oid)] == []


# -- pushed to a real server ---------------------------------------------------------------------------


def push(conn: Connection, case: Case, *, new_detector: bool = False, atomic: bool = False) -> RefsUpdated:
    """Upload what the case needs and ask to move the head: onto the served HEAD, or as a new
    detector (then every object goes, the base's too)."""
    det = NEW_DET if new_detector else DET
    oids = tuple(case.store.object_ids()) if new_detector else case.new
    conn.put_objects(det, items_of(case.store, oids))
    old = None if new_detector else case.base_head
    return conn.update_refs([RefUpdate(det, old, case.head)], atomic=atomic)


MODES = ["update", "atomic update", "new detector"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_kind_pushed_in_process_is_refused_and_stores_nothing(
    template: Template, tmp_path: Path, name: str, mode: str
) -> None:
    case = template.case(name)
    root = copy(template.served, tmp_path / "served")
    channel = InProcessChannel(serve_function(root), description="in-process server")
    with Connection(channel) as conn:
        if mode == "atomic update":
            with pytest.raises(ProtocolError) as caught:
                push(conn, case, atomic=True)
            assert_refused(caught.value, case)
            with pytest.raises(ConnectionLost):  # a protocol error ends the session, cleanly
                conn.heads()
        else:
            (result,) = push(conn, case, new_detector=mode == "new detector").results
            assert isinstance(result.error, ProtocolError)
            assert_refused(result.error.message, case)
            assert conn.heads().heads == {DET: template.head}  # the session goes on
    assert channel.finished and channel.stderr_text() == ""
    assert_untouched(root, template, case)


@pytest.mark.parametrize("new_detector", [False, True], ids=["update", "new detector"])
def test_every_wrong_kind_pushed_over_pipes_in_one_session(
    template: Template, tmp_path: Path, new_detector: bool
) -> None:
    """``dcsync serve --stdio`` refuses each case and stays in step for the next."""
    root = copy(template.served, tmp_path / "served")
    channel = SubprocessChannel(
        [sys.executable, "-m", "dcsync", "serve", "--stdio", "--root", str(root)], description="serve"
    )
    with Connection(channel) as conn:
        for case in template.cases:
            (result,) = push(conn, case, new_detector=new_detector).results
            assert isinstance(result.error, ProtocolError), case.name
            assert_refused(result.error.message, case)
        assert conn.heads().heads == {DET: template.head}
    assert channel.returncode == 0
    assert "Traceback" not in channel.stderr_text()
    for case in template.cases:
        assert_untouched(root, template, case)


def test_a_tree_met_twice_cannot_pass_as_two_kinds(template: Template, tmp_path: Path) -> None:
    """A ctype tree the root also lists, named again as a range: refused although the walk has
    already seen (and would skip) it."""
    case = template.case("ctype range=ctype tree (stored)")
    store = case.store
    commit = store.read_commit(case.head)
    root = store.read_as(commit.tree, RootTree)
    ctype_tree = case.target  # the stored ctype tree, named as a range in the case's pedestals
    with store.writing():
        twice = store.put_object(replace(root, ctypes={**root.ctypes, "a_first": ctype_tree}))
        head = store.put_object(replace(commit, tree=twice, message="twice"))
    assert store.read_as(ctype_tree, CtypeTree)
    twice_case = replace(case, head=head, new=(*case.new, twice, head))
    served = copy(template.served, tmp_path / "served")
    with Connection(InProcessChannel(serve_function(served))) as conn:
        (result,) = push(conn, twice_case).results
    assert isinstance(result.error, ProtocolError)
    assert_refused(result.error.message, twice_case)
    assert_untouched(served, template, twice_case)


@pytest.mark.parametrize("field", ["want", "have"])
def test_asking_for_a_tree_as_a_commit_is_a_protocol_error(
    template: Template, tmp_path: Path, field: str
) -> None:
    """A fetching client names the commits it wants and has: a tree there is its mistake."""
    case = template.case("head=root tree (stored)")  # its target: the served HEAD's root tree
    want = {"detector": DET, "want": case.target if field == "want" else template.head}
    if field == "have":
        want["have"] = [case.target]
    channel = InProcessChannel(serve_function(copy(template.served, tmp_path / "served")))
    with Connection(channel) as conn:
        with pytest.raises(ProtocolError) as caught:
            conn.negotiate([want])
        assert_refused(caught.value, case)
    assert channel.finished and channel.stderr_text() == ""


# -- fetched from a hostile server ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_kind_fetched_in_process_is_a_protocol_error_and_stores_nothing(
    template: Template, tmp_path: Path, name: str
) -> None:
    case = template.case(name)
    client = Workspace(copy(template.client, tmp_path / "client"))
    server = HostileServer(template.served, DET, [case])
    channel = InProcessChannel(server.serve, description="hostile server")
    with Connection(channel) as conn:
        with pytest.raises(ProtocolError) as caught:
            sync.fetch(client, "origin", conn=conn)
        assert_refused(caught.value, case)
        assert "hostile server" in str(caught.value)  # the peer is named
    server.close()
    assert channel.stderr_text() == ""
    assert_untouched(client.root, template, case, remote="origin")


def hostile_command(template: Template, picked: str = "") -> str:
    """A ``--remote-dcsync`` that runs the hostile server for the cases ``picked`` (all if empty)."""
    base = Workspace(template.served).detector_path(DET)
    args = [sys.executable, str(HELPERS / "hostile_serve.py"), str(base), DET, *([picked] if picked else [])]
    return " ".join(map(shlex.quote, args))


def test_every_wrong_kind_fetched_over_pipes(template: Template, tmp_path: Path) -> None:
    """One hostile server process serves the cases in turn; the client refuses each."""
    argv = [*shlex.split(hostile_command(template)), "serve", "--stdio", "--root", str(template.served)]
    channel = SubprocessChannel(argv, description="hostile pipe")
    with Connection(channel) as conn:
        for i, case in enumerate(template.cases):
            client = Workspace(copy(template.client, tmp_path / f"client{i}"))
            with pytest.raises(ProtocolError) as caught:
                sync.fetch(client, "origin", conn=conn)
            assert_refused(caught.value, case)
            assert_untouched(client.root, template, case, remote="origin")
    assert "Traceback" not in channel.stderr_text()


def test_dcsync_fetch_from_a_hostile_server_exits_with_the_remote_code(
    template: Template, tmp_path: Path
) -> None:
    name = "commit tree=ctype tree"
    case = template.case(name)
    client = Workspace(copy(template.client, tmp_path / "client"))
    config.add_remote(
        client,
        config.RemoteConfig(
            "hostile", str(template.served), remote_dcsync=hostile_command(template, str(NAMES.index(name)))
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dcsync", "-C", str(client.root), "fetch", "hostile"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert proc.returncode == ProtocolError.exit_code, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert_refused(proc.stderr, case)
    assert_untouched(client.root, template, case, remote="origin")


@pytest.mark.parametrize(
    "name",
    [
        "head=root tree",
        "commit tree=range tree",
        "root ctype=commit",
        "ctype range=text payload",
        "version=range tree",
    ],
)
def test_diff_against_a_hostile_server_is_a_protocol_error(template: Template, name: str) -> None:
    """``diff`` reads the remote's trees into memory: the same walk refuses them (a version's
    payload is checked when ``--values`` fetches it)."""
    with pytest.raises(ProtocolError) as caught:
        sync.diff_sources(
            str(template.client),
            f"file://{template.served}",  # a URL: a plain path would be read as a local workspace
            values=True,
            remote_dcsync=hostile_command(template, str(NAMES.index(name))),
        )
    assert_refused(caught.value, template.case(name))


# -- a file that already holds one ---------------------------------------------------------------------


def plant(path: Path, case: Case) -> None:
    """Make ``case.head`` the file's HEAD, its objects stored, without the checks a push or a
    commit runs (what an older dcsync let in); the view is left as it was."""
    store = HDF5Store(path)
    try:
        with store.writing():
            for oid in case.new:
                kind = case.store.kind_of(oid)
                if kind in ("tree", "commit"):
                    store.put_body(oid, kind, case.store.body_of(oid)[1])
                else:
                    store.put_payload(case.store.read_payload(oid), known_id=oid)
            meta = store._writer()[META]
            refs = {**json.loads(meta.attrs["refs"]), HEAD: case.head}
            meta.attrs["refs"] = json.dumps(refs, sort_keys=True)
            meta.attrs["view"] = case.head
    finally:
        store.close()


@pytest.mark.parametrize(
    "name", ["root ctype=range tree", "ctype range=array payload", "version=commit (stored)"]
)
def test_a_file_holding_a_wrong_kind_reads_as_corrupt(template: Template, tmp_path: Path, name: str) -> None:
    case = template.case(name)
    ws = Workspace(copy(template.served, tmp_path / "served"))
    path = ws.detector_path(DET)
    plant(path, case)
    with Repository.open(path) as repo, pytest.raises(CorruptObject) as caught:
        repo.get("pedestals")
    assert case.target in str(caught.value) and case.kind in str(caught.value)
    report = verify_path(path)
    assert any(
        case.target in p and re.search(rf"an? {case.kind}, not an? {case.expected}", p)
        for p in report.problems
    ), report.problems
    for args in (["get", DET, "pedestals", "-o", str(tmp_path / "out.npy")], ["verify", DET]):
        proc = subprocess.run(
            [sys.executable, "-m", "dcsync", "-C", str(ws.root), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == CorruptObject.exit_code, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert case.target in proc.stdout + proc.stderr
