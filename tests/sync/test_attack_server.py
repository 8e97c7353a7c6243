"""Attacks on the server's calls (issue 9, items 9 and 11), each performed for real.

Item 9: a caller refused by ``put_objects`` (a reader, an outsider) sent ``update_refs`` with
old = new = HEAD and a forged message: every call appended a log record, took the write lock and ran
the hooks, and the log showed the client's claimed ``user@host`` as the pusher. Item 11: concurrent
pushes to one detector shared one quarantine, so one push's success emptied it under the other,
which then failed as "server failed" or "corrupt" instead of a conflict.

These run the real :class:`~dcsync.sync.server.Server` with injected identities (in-process) and real
``dcsync push`` processes; the same attacks with real OS users over a real sshd are in
test_access_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from dcsync.cli.main import app
from dcsync.sync.replies import RefResult, RefsUpdated, RefUpdate

# The ACL tests' served workspaces and identities (tests/workspace/test_acl.py) are the ones attacked here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workspace"))
from test_acl import CAROL, DET, MALLORY, T0, _connect, _files, _seed

from dcsync import sync
from dcsync.errors import AccessDenied, DetectorNotFound, ProtocolError, RefConflict
from dcsync.store.locking import FileLock
from dcsync.sync.quarantine import Quarantine, Sessions
from dcsync.sync.server import RIGHTS, SPECS, Server
from dcsync.workspace import acl as acl_module
from dcsync.workspace.acl import Rule, current_identity
from dcsync.workspace.workspace import Workspace

BOB_DET = "epix100a-9"  # a detector nobody has yet


@pytest.fixture
def central(tmp_path: Path) -> Workspace:
    """A repository location: everyone reads, group ops writes; hooks that leave a trace."""
    ws = Workspace.init(tmp_path / "central", "repository")
    _seed(ws)
    acl = ws.acl()
    acl.rules.append(Rule(("group:ops",), ("read", "add", "set-default", "remove")))
    acl_module.save(ws.root, acl, current_identity(), "test")
    hooks = ws.root / ".dcsync" / "hooks"
    hooks.mkdir(exist_ok=True)
    for phase in ("pre-receive", "post-receive"):
        hook = hooks / phase
        hook.write_text(f"#!/bin/sh\necho {phase} >> {tmp_path / 'hooks-ran'}\n")
        hook.chmod(0o755)
    return ws


def _log(ws: Workspace, det: str = DET) -> list[Any]:
    with ws.repository(det) as repo:
        return list(repo.log())


def _head(ws: Workspace, det: str = DET) -> str:
    with ws.repository(det) as repo:
        return str(repo.head())


def _claiming(monkeypatch: pytest.MonkeyPatch, user: str, host: str) -> None:
    """A hostile client says whatever it likes about itself in hello."""
    monkeypatch.setattr("dcsync.sync.client.current_user", lambda: user)
    monkeypatch.setattr("dcsync.sync.client.current_host", lambda: host)


# -- item 9: who may call what -------------------------------------------------------------------


def test_every_method_declares_the_right_it_needs() -> None:
    """The table is the gate: a method without an entry cannot be called, and every method that
    writes or locks names the detectors it changes so they are judged before it runs."""
    assert set(RIGHTS) == set(SPECS)
    writers = {name for name, right in RIGHTS.items() if right.permission == "write"}
    assert writers == {"put_objects", "update_refs"}
    assert all(RIGHTS[name].targets is not None for name in writers)
    assert {name for name in dir(Server) if name.startswith("do_")} == {f"do_{m}" for m in SPECS}


@pytest.mark.parametrize("atomic", [False, True])
def test_a_reader_cannot_touch_refs_with_a_no_op_update(
    central: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic: bool
) -> None:
    _claiming(monkeypatch, "mallory", "evilhost")
    head, records, before = _head(central), len(_log(central)), _files(central.root)
    with _connect(central.root, MALLORY) as conn:
        for _ in range(3):
            with pytest.raises(AccessDenied, match=f"user mallory may not add on {DET}"):
                conn.update_refs(
                    [RefUpdate(DET, head, head)], atomic=atomic, message="pushed by mallory@evilhost"
                )
        # a detector that does not exist yet: no quarantine directory, no file
        with pytest.raises(AccessDenied, match=f"user mallory may not add on {BOB_DET}"):
            conn.update_refs([RefUpdate(BOB_DET, None, head)], atomic=atomic)
    assert len(_log(central)) == records
    assert _files(central.root) == before
    assert not (central.root / ".dcsync" / "incoming").exists()
    assert not (tmp_path / "hooks-ran").exists()


def test_an_update_naming_a_refused_detector_moves_none(central: Workspace, tmp_path: Path) -> None:
    """The check covers every detector a call names, not just the first."""
    acl = central.acl()
    acl.rules.append(Rule(("user:mallory",), ("add",), detectors=("epix100a-1",)))
    acl_module.save(central.root, acl, current_identity(), "test")
    head, before = _head(central), _files(central.root)
    with (
        _connect(central.root, MALLORY) as conn,
        pytest.raises(AccessDenied, match=f"mallory may not add on {BOB_DET}"),
    ):
        conn.update_refs([RefUpdate(DET, head, head), RefUpdate(BOB_DET, None, head)])
    assert _files(central.root) == before and not (tmp_path / "hooks-ran").exists()


def test_a_malformed_update_list_is_a_protocol_error(central: Workspace) -> None:
    with _connect(central.root, CAROL) as conn, pytest.raises(ProtocolError, match="each update is a map"):
        conn._request("update_refs", {"updates": ["epix100a-1"]})  # what no typed method sends


def test_a_writers_no_op_update_writes_nothing_takes_no_lock_runs_no_hook(
    central: Workspace, tmp_path: Path
) -> None:
    head, records, before = _head(central), len(_log(central)), _files(central.root)
    path = central.detector_path(DET)
    with FileLock(path).held(timeout=5), _connect(central.root, CAROL) as conn:  # another writer's
        started = time.monotonic()
        answer = conn.update_refs([RefUpdate(DET, head, head)])
        assert answer == RefsUpdated((RefResult(DET),), ())
        answer = conn.update_refs([RefUpdate(DET, head, head)], atomic=True)
        assert answer.results == (RefResult(DET),)
        assert time.monotonic() - started < 5  # it never waited for the lock
        # a no-op that names a HEAD the server does not have is a conflict, still without the lock
        stale = "0" * 32
        (result,) = conn.update_refs([RefUpdate(DET, stale, stale)]).results
        assert isinstance(result.error, RefConflict)
        with pytest.raises(RefConflict):
            conn.update_refs([RefUpdate(DET, stale, stale)], atomic=True)
        # one for a detector that does not exist: answered for that detector, nothing created
        (result,) = conn.update_refs([RefUpdate(BOB_DET, head, head)]).results
        assert isinstance(result.error, DetectorNotFound)
    assert len(_log(central)) == records
    assert _files(central.root) == before
    assert not (tmp_path / "hooks-ran").exists()


def test_the_log_states_the_authenticated_identity_and_labels_the_claim(
    central: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _connect(central.root, CAROL) as conn:
        laptop, _ = sync.clone(str(central.root), tmp_path / "laptop", conn=conn)
    with laptop.repository(DET) as repo, repo.transaction("dark run 7") as tx:
        tx.add("pedestals", np.full((2, 3), 7.0, np.float32), begin_ns=T0 + 10**9)
    _claiming(monkeypatch, "mallory", "evilhost")
    with _connect(central.root, CAROL) as conn:
        assert sync.push(laptop, "origin", conn=conn).pushed == [DET]
    record = _log(central)[-1]
    assert record.command == "push received" and record.user == "carol"
    assert record.extra["served_as"] == "carol"
    assert (record.extra["claimed_user"], record.extra["claimed_host"]) == ("mallory", "evilhost")
    assert "pusher" not in record.extra and "mallory" not in record.message
    shown = CliRunner().invoke(app, ["-C", str(central.root), "log", DET, "--json", "-n", "1"])
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)["entries"]
    assert entry["audit"] == "pushed by carol (client claimed mallory@evilhost)"
    assert entry["user"] == "carol"
    text = CliRunner().invoke(app, ["-C", str(central.root), "log", DET, "-n", "1"], env={"COLUMNS": "400"})
    assert "pushed by carol (client claimed mallory@evilhost)" in text.stdout


# -- item 11: one quarantine per push session -----------------------------------------------------


def _count_objects(incoming: Path) -> int:
    return len([p for p in incoming.rglob("*.npy") if not p.name.startswith(".")]) if incoming.exists() else 0


def _push_process(ws: Workspace, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dcsync", "-C", str(ws.root), "push", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_racing_pushes_the_loser_gets_a_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Push A is stopped halfway through its upload; push B to the same detector runs to the end;
    A then goes on. A must end in a conflict (exit 7), with B's commit intact: before, B's success
    emptied the quarantine A was receiving into, and A died with "server failed" (exit 9)."""
    monkeypatch.setenv("DCSYNC_CHUNK", str(16 * 1024))
    central = Workspace.init(tmp_path / "central", "experiment")
    _seed(central)
    laptops = []
    for name in ("a", "b"):
        ws, _ = sync.clone(str(central.root), tmp_path / name)
        laptops.append(ws)
    a, b = laptops
    rng = np.random.default_rng(11)
    with a.repository(DET) as repo, repo.transaction("many") as tx:
        for i in range(40):
            tx.add(
                f"pixel_c{i:02d}", rng.normal(size=(256, 256)).astype(np.float32), begin_ns=T0, new_ctype=True
            )
    with b.repository(DET) as repo, repo.transaction("one") as tx:
        tx.add("pedestals", np.full((2, 3), 9.0, np.float32), begin_ns=T0 + 10**9)
    incoming = central.root / ".dcsync" / "incoming"

    first = _push_process(a)
    deadline = time.monotonic() + 60
    while _count_objects(incoming) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(first.pid, signal.SIGSTOP)  # A's client, mid-upload: its server waits for more
    try:
        halfway = _count_objects(incoming)
        assert 2 <= halfway < 40, f"A's upload was not caught halfway ({halfway} of 40 arrived)"
        second = _push_process(b)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, out + err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 7, (out, err)
    report = json.loads(out)
    assert report["pushed"] == [] and "pull first" in report["failed"][DET], report
    assert _head(central) == _head(b)
    # A's session ended: its objects wait, unlocked, for A's next push, which takes them over
    assert _count_objects(incoming) == 40 and not list(incoming.glob("*.lock"))
    sync.pull(a)
    report = sync.push(a)
    assert report.pushed == [DET] and report.objects < 40  # what had arrived was not sent again
    assert _count_objects(incoming) == 0 and not list(incoming.rglob("*.lock"))


def test_a_live_sessions_quarantine_is_its_own(tmp_path: Path) -> None:
    """Two sessions receive side by side; the first one's success leaves the other's intact, and
    ``have`` counts only a session's own (and what it adopted of ended sessions)."""
    incoming = tmp_path / "incoming"
    one, two = Sessions(incoming), Sessions(incoming)
    mine = one.get(DET, create=True, adopt=True)
    theirs = two.get(DET, create=True, adopt=True)
    assert mine.dir != theirs.dir and mine.dir.parent == theirs.dir.parent == incoming / DET
    (mine.dir / f"{'a' * 32}.commit").write_bytes(b"x")
    (theirs.dir / f"{'b' * 32}.commit").write_bytes(b"y")
    assert mine.has("a" * 32) and not mine.has("b" * 32)  # type: ignore[arg-type]
    assert not Sessions(incoming).get(DET, adopt=True).has("a" * 32)  # type: ignore[arg-type]  # live
    one.clear(DET)
    assert theirs.has("b" * 32)  # type: ignore[arg-type]
    two.end()  # ended with an object left: the next writer's session takes it over
    three = Sessions(incoming)
    assert not three.get(DET, adopt=False).has("b" * 32)  # type: ignore[arg-type]  # a reader's
    adopted = three.get(DET, adopt=True)
    assert adopted.has("b" * 32) and adopted.dir.name == three.token  # type: ignore[arg-type]
    assert sorted(p.name for p in (incoming / DET).iterdir()) == [three.token]
    three.clear(DET)
    three.end()
    one.end()
    assert not (incoming / DET).exists() and not [p for p in incoming.iterdir() if p.suffix == ".lock"]


def test_a_killed_sessions_quarantine_is_adopted(tmp_path: Path) -> None:
    """A server killed mid-push leaves its lock and objects; once its pid is gone the lock is
    stale and the next session adopts the objects (the push resumes) and removes the directory."""
    incoming = tmp_path / "incoming"
    code = (
        "import sys, os; from pathlib import Path; from dcsync.sync.quarantine import Sessions\n"
        "s = Sessions(Path(sys.argv[1])); q = s.get(sys.argv[2], create=True)\n"
        "(q.dir / ('c' * 32 + '.commit')).write_bytes(b'z'); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(incoming), DET], check=True, timeout=60)
    assert [p.suffix for p in incoming.iterdir() if p.is_file()] == [".lock"]  # died holding it
    session = Sessions(incoming)
    assert session.get(DET, adopt=True).has("c" * 32)  # type: ignore[arg-type]
    session.end()
    left = sorted(str(p.relative_to(incoming)) for p in incoming.rglob("*"))
    assert left == [DET, f"{DET}/{session.token}", f"{DET}/{session.token}/{'c' * 32}.commit"]
    assert Quarantine(incoming / DET / session.token, create=False).ids() == {"c" * 32: "commit"}
