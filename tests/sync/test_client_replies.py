"""A server whose replies do not match the protocol: each is a :class:`ProtocolError` naming the
peer, the call and the field, raised by the client's typed call (never a ``KeyError``,
``TypeError`` or ``AssertionError``), and through the CLI an exit with the remote code and no
traceback. The server is the real one with one reply spoiled (``helpers/malformed_replies.py``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.malformed_replies import CASES, Malformed, MalformedServer

from dcsync import sync
from dcsync.errors import ProtocolError
from dcsync.model.hashing import ObjectId
from dcsync.sync.client import Connection
from dcsync.sync.replies import RefUpdate
from dcsync.transport.local import InProcessChannel
from dcsync.workspace import config
from dcsync.workspace.workspace import Workspace

DET = "epix-1"
HELPERS = Path(__file__).resolve().parents[1] / "helpers"


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, ObjectId]:
    root = tmp_path / "served"
    ws = Workspace.init(root, kind="repository")
    with ws.new_detector(DET) as repo, repo.transaction("first constants") as tx:
        tx.add("pedestals", np.arange(24, dtype="<f4").reshape(4, 6), begin_ns=100)
    with ws.repository(DET) as repo:
        head = repo.head()
    assert head is not None
    return root, head


def _call(conn: Connection, call: str, head: ObjectId) -> object:
    """The typed call ``call`` with arguments a well-behaved server answers without complaint."""
    if call == "heads":
        return conn.heads()
    if call == "negotiate":
        return conn.negotiate([{"detector": DET, "want": head}])
    if call == "get_objects":
        return list(conn.get_objects([(DET, head)]))
    if call == "get_files":
        return list(conn.get_files([[DET, 0, None]]))
    if call == "have":
        return conn.have([(DET, head), (DET, ObjectId("0" * 32))])
    if call == "put_objects":
        return conn.put_objects(DET, [])
    if call == "update_refs":
        return conn.update_refs([RefUpdate(DET, head, head)])
    raise ValueError(call)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_malformed_reply_is_a_protocol_error_naming_the_call_and_the_field(
    served: tuple[Path, ObjectId], case: str
) -> None:
    root, head = served
    malformed = CASES[case]
    server = MalformedServer(root, malformed)
    try:
        with (
            pytest.raises(ProtocolError) as caught,
            Connection(InProcessChannel(server.serve, description="the spoiling server")) as conn,
        ):
            _call(conn, malformed.call, head)
    finally:
        server.close()
    message = caught.value.message
    assert message.startswith(f"the spoiling server sent a malformed {malformed.call} reply: "), message
    assert malformed.field in message, message


def test_the_well_formed_replies_pass(served: tuple[Path, ObjectId]) -> None:
    """The same calls against the real server: what the checks accept is what it sends."""
    root, head = served
    server = MalformedServer(root, Malformed("none", lambda r: r, ""))
    try:
        with Connection(InProcessChannel(server.serve, description="server")) as conn:
            assert conn.server.kind == "repository" and conn.server.read_only is False
            assert conn.heads().heads == {DET: head}
            offered = conn.negotiate([{"detector": DET, "want": head}])
            assert {o.kind for o in offered[DET]} == {"commit", "tree", "array"}
            assert len(list(conn.get_objects([(DET, head)]))) >= 2
            assert conn.have([(DET, head), (DET, ObjectId("0" * 32))]) == (True, False)
            assert conn.put_objects(DET, []) == 0
            (result,) = conn.update_refs([RefUpdate(DET, head, head)]).results
            assert result.ok and result.detector == DET
    finally:
        server.close()


def test_a_newer_servers_hello_may_carry_fields_this_client_does_not_know(
    served: tuple[Path, ObjectId],
) -> None:
    root, _ = served
    server = MalformedServer(root, Malformed("hello", lambda r: {**r, "motd": "hi"}, ""))
    try:
        with Connection(InProcessChannel(server.serve, description="server")) as conn:
            assert conn.server.kind == "repository"
    finally:
        server.close()


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("fetch", "hello read_only as text"),
        ("fetch", "heads with a short id"),
        ("fetch", "negotiate with a negative size"),
        ("push", "have one short"),
        ("push", "update_refs failed without error"),
    ],
)
def test_the_cli_exits_with_the_remote_code_and_no_traceback(
    served: tuple[Path, ObjectId], tmp_path: Path, command: str, case: str
) -> None:
    root, _ = served
    client, _ = sync.clone(str(root), tmp_path / "client")
    if command == "push":  # something to push
        with client.repository(DET) as repo, repo.transaction("newer") as tx:
            tx.add("pedestals", np.ones((4, 6), dtype="<f4"), begin_ns=200)
    else:  # something to fetch
        with Workspace(root).repository(DET) as repo, repo.transaction("newer") as tx:
            tx.add("pedestals", np.ones((4, 6), dtype="<f4"), begin_ns=200)
    spoiler = " ".join(shlex.quote(a) for a in [sys.executable, str(HELPERS / "malformed_replies.py"), case])
    config.add_remote(client, config.RemoteConfig("spoiler", str(root), remote_dcsync=spoiler))
    with client.repository(DET) as repo:
        before = (repo.head(), repo.store.refs())
    proc = subprocess.run(
        [sys.executable, "-m", "dcsync", "-C", str(client.root), command, "spoiler"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ProtocolError.exit_code == 9, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    malformed = CASES[case]
    assert f"sent a malformed {malformed.call} reply" in proc.stderr and malformed.field in proc.stderr
    with client.repository(DET) as repo:
        assert (repo.head(), repo.store.refs()) == before
