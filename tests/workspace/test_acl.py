"""Access control without root: the ACL model with injected identities, the server's enforcement
over an in-process channel, ``--restrict-to-path`` and ``SSH_ORIGINAL_COMMAND``, the ``dcsync acl``
commands, and local commits judged by the workspace's ACL.

The real thing (Unix users and groups, sshd, forced commands) is in test_access_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from typer.testing import CliRunner

from dcsync import sync
from dcsync.cli.main import app
from dcsync.errors import AccessDenied, HookRejected, InputError
from dcsync.model.hashing import ObjectId
from dcsync.repo.guard import DEFAULT_GUARD
from dcsync.repo.repository import Repository
from dcsync.sync.client import Connection
from dcsync.sync.replies import RefUpdate
from dcsync.sync.server import Server
from dcsync.sync.serving import resolve_root
from dcsync.transport.local import InProcessChannel, SubprocessChannel
from dcsync.workspace import acl as acl_module
from dcsync.workspace.acl import ACL, Identity, Rule, current_identity, required_permission
from dcsync.workspace.workspace import Workspace, guard_for, open_repository

DET = "epix100a-1"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

ALICE = Identity("alice", frozenset({"xpp1", "users"}))  # a member of the experiment
BOB = Identity("bob", frozenset({"xpp2", "users"}))  # a member of another experiment
CAROL = Identity("carol", frozenset({"ops"}))  # staff
MALLORY = Identity("mallory")  # nobody in particular


# -- the ACL model ---------------------------------------------------------------------------------


def test_identity_principals() -> None:
    assert ALICE.principals() == {"*", "user:alice", "group:xpp1", "group:users"}
    me = current_identity()
    assert me.user and me.groups  # the OS always knows a primary group
    assert Identity.of_user("no-such-user-dcsync").groups == frozenset()


def test_repository_defaults_everyone_reads_only_listed_write() -> None:
    acl = ACL("repository", owner="root", rules=[Rule(("group:ops",), ("add", "set-default"))])
    for who in (ALICE, BOB, CAROL, MALLORY):
        assert acl.allows(who, "read", DET)
    assert acl.allows(CAROL, "add", DET) and acl.allows(CAROL, "set-default", DET)
    assert not acl.allows(CAROL, "remove", DET) and not acl.allows(CAROL, "admin")
    for who in (ALICE, BOB, MALLORY):
        for permission in ("add", "set-default", "remove", "admin"):
            assert not acl.allows(who, permission, DET), (who, permission)
    owner = Identity("root")
    assert all(acl.allows(owner, p, DET) for p in acl_module.PERMISSIONS)


def test_experiment_defaults_group_members_write() -> None:
    acl = ACL("experiment", group="xpp1", owner="pi")
    for permission in ("read", "add", "set-default", "remove"):
        assert acl.allows(ALICE, permission, DET)
    assert not acl.allows(ALICE, "admin")  # members write constants, not the ACL
    assert acl.allows(BOB, "read", DET) and acl.allows(MALLORY, "read", DET)
    for permission in ("add", "set-default", "remove", "admin"):
        assert not acl.allows(BOB, permission, DET)
    assert acl.allows(Identity("pi"), "admin")
    nobody_writes = ACL("experiment", group=None, owner="pi")
    assert not nobody_writes.allows(ALICE, "add", DET)


def test_local_defaults_owner_only() -> None:
    acl = ACL("local", owner="alice")
    assert all(acl.allows(ALICE, p, DET) for p in acl_module.PERMISSIONS)
    for permission in acl_module.PERMISSIONS:
        assert not acl.allows(BOB, permission, DET)  # not even read


def test_rules_only_grant_and_globs_scope_them() -> None:
    rule = Rule(("user:bob",), ("add",), detectors=("epix*",), ctypes=("pixel_*", "geometry"))
    acl = ACL("repository", owner="root", rules=[rule])
    assert acl.allows(BOB, "add", "epix100a-1", "pixel_status")
    assert acl.allows(BOB, "add", "epix10ka-7", "pixel_gain")
    assert acl.allows(BOB, "add", "epix100a-1", "geometry")
    assert not acl.allows(BOB, "add", "epix100a-1", "pedestals")  # ctype outside the globs
    assert not acl.allows(BOB, "add", "jungfrau-1", "pixel_status")  # detector outside
    assert not acl.allows(BOB, "add", None, "pixel_status")  # a scoped rule needs the detector
    assert not acl.allows(BOB, "add", "epix100a-1", None)  # ... and the ctype
    assert not acl.allows(BOB, "set-default", "epix100a-1", "pixel_status")
    assert not acl.allows(ALICE, "add", "epix100a-1", "pixel_status")  # rules name principals
    everyone = ACL("repository", owner="root", rules=[Rule(("*",), ("add",), detectors=("cspad-*",))])
    assert everyone.allows(MALLORY, "add", "cspad-0001")
    assert not everyone.allows(MALLORY, "add", "epix100a-1")


def test_admin_implies_every_permission() -> None:
    acl = ACL("repository", owner="root", rules=[Rule(("group:ops",), ("admin",))])
    for permission in acl_module.PERMISSIONS:
        assert acl.allows(CAROL, permission, DET, "pedestals")
    scoped = ACL("repository", owner="root", rules=[Rule(("user:bob",), ("admin",), detectors=("epix*",))])
    assert scoped.allows(BOB, "remove", "epix100a-1") and not scoped.allows(BOB, "remove", "jungfrau-1")


def test_refusal_names_user_permission_detector_and_location(tmp_path: Path) -> None:
    acl = ACL("repository", owner="root", where=str(tmp_path))
    with pytest.raises(AccessDenied) as info:
        acl.require(BOB, "set-default", DET, "pedestals")
    message = str(info.value)
    for word in ("bob", "set-default", DET, "pedestals", "repository", str(tmp_path)):
        assert word in message, (word, message)
    with pytest.raises(AccessDenied):
        acl.require(MALLORY, "admin")
    with pytest.raises(ValueError, match="invalid permission"):
        acl.allows(BOB, "write", DET)


def test_required_permission_per_change_kind() -> None:
    assert required_permission("added") == "add"
    assert required_permission("changed") == "add"
    assert required_permission("pars") == "add"
    assert required_permission("removed") == "remove"
    assert required_permission("default") == "set-default"
    assert required_permission("links") == "admin"
    assert required_permission("something-new") == "admin"  # unknown changes need the most


def _write_acl(root: Path, doc: dict[str, Any]) -> None:
    (root / ".dcsync" / "acl.toml").write_text(tomli_w.dumps(doc), encoding="utf-8")


def test_acl_file_round_trip_and_kind_defaults(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "xpp", "experiment", group="xpp1")
    acl = ws.acl()
    assert (acl.kind, acl.group, acl.owner) == ("experiment", "xpp1", current_identity().user)
    assert ws.kind == "experiment" and ws.policy().kind == "experiment"
    acl.rules.append(Rule(("user:bob", "group:ops"), ("add", "set-default"), ("epix*",), ("pedestals",)))
    acl_module.save(ws.root, acl, current_identity(), "test")
    again = ws.acl()
    assert again.rules == acl.rules and again.kind == "experiment"
    assert again.allows(BOB, "add", "epix100a-1", "pedestals")
    assert Workspace.init(tmp_path / "central", "repository").acl().kind == "repository"
    assert Workspace.init(tmp_path / "laptop").acl().kind == "local"


@pytest.mark.parametrize(
    "doc, what",
    [
        ({"kind": "experimnt"}, "unknown location kind"),
        ({"kind": "repository", "rule": [{"principals": ["bob"], "allow": ["add"]}]}, "invalid principal"),
        ({"kind": "repository", "rule": [{"principals": ["user:bob"], "allow": ["write"]}]}, "permission"),
        ({"kind": "repository", "rule": [{"principals": "user:bob", "allow": ["add"]}]}, "list of strings"),
        ({"kind": "repository", "rule": [{"allow": ["add"]}]}, "principals"),
    ],
)
def test_a_bad_acl_file_is_an_input_error_naming_it(tmp_path: Path, doc: dict[str, Any], what: str) -> None:
    ws = Workspace.init(tmp_path / "ws", "repository")
    _write_acl(ws.root, doc)
    with pytest.raises(InputError, match=what) as info:
        ws.acl()
    assert "acl.toml" in str(info.value)
    (ws.root / ".dcsync" / "acl.toml").write_text("kind = [", encoding="utf-8")
    with pytest.raises(InputError, match=r"acl\.toml"):
        ws.acl()


# -- the server over an in-process channel ---------------------------------------------------------


def _connect(root: Path, who: Identity, *, read_only: bool = False) -> Connection:
    server = Server(root, identity=who, read_only=read_only)

    def serve(read: Any, write: Any) -> None:
        try:
            server.serve(read, write)
        finally:
            server.close()

    return Connection(InProcessChannel(serve, description=f"in-process {root} as {who.user}"))


def _seed(ws: Workspace, value: float = 1.0) -> str:
    if DET in ws.detectors():
        repo = ws.repository(DET)
    else:
        ws.new_detector(DET).close()
        repo = ws.repository(DET)
    with repo, repo.transaction(f"pedestals {value}") as tx:
        tx.add("pedestals", np.full((2, 3), value, np.float32), begin_ns=T0, pars={"run": 1})
    with ws.repository(DET) as repo:
        return str(repo.head())


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a digest of its bytes: 'nothing changed' made checkable."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _clone_and_commit(url: Path, to: Path, who: Identity, value: float) -> Workspace:
    with _connect(url, who) as conn:
        ws, _ = sync.clone(str(url), to, conn=conn)
    with ws.repository(DET) as repo, repo.transaction(f"new pedestals {value}") as tx:
        tx.add("pedestals", np.full((2, 3), value, np.float32), begin_ns=T0 + 10**9)
    return ws


@pytest.fixture
def experiment(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "xpp1", "experiment", group="xpp1")
    _seed(ws)
    return ws


def test_an_outsider_cannot_read_a_local_workspace(tmp_path: Path) -> None:
    laptop = Workspace.init(tmp_path / "laptop", "local")
    head = _seed(laptop)
    with _connect(laptop.root, BOB) as conn:
        assert conn.heads(None).heads == {}  # not even its names
        with pytest.raises(AccessDenied, match="bob may not read"):
            conn.negotiate([{"detector": DET, "want": head, "have": []}])
    with _connect(laptop.root, BOB) as conn, pytest.raises(AccessDenied, match="bob may not read"):
        list(conn.get_objects([(DET, head)]))
    with _connect(laptop.root, BOB) as conn:
        cloned, _ = sync.clone(str(laptop.root), tmp_path / "stolen", conn=conn)
    assert cloned.detectors() == []
    owner = Identity(current_identity().user)
    with _connect(laptop.root, owner) as conn:
        assert conn.heads(None).heads == {DET: head}


def test_a_member_pushes_to_the_experiment_a_non_member_cannot(experiment: Workspace, tmp_path: Path) -> None:
    laptop = _clone_and_commit(experiment.root, tmp_path / "laptop", ALICE, 2.0)
    before = _files(experiment.root)
    with _connect(experiment.root, BOB) as conn, pytest.raises(AccessDenied) as info:
        sync.push(laptop, "origin", conn=conn)
    for word in ("bob", "add", DET, "experiment", str(experiment.root)):
        assert word in str(info.value)
    assert _files(experiment.root) == before  # not even a quarantine directory
    with _connect(experiment.root, ALICE) as conn:
        report = sync.push(laptop, "origin", conn=conn)
    assert report.pushed == [DET] and not report.failed
    with experiment.repository(DET) as repo, laptop.repository(DET) as mine:
        assert repo.head() == mine.head()
        assert float(repo.get("pedestals", at_ns=T0 + 2 * 10**9).value[0, 0]) == 2.0
        record = repo.log()[-1]
        assert record.command == "push received"
        assert record.extra["served_as"] == "alice"  # the identity the server runs as decides


def test_the_client_cannot_claim_another_identity(experiment: Workspace, tmp_path: Path) -> None:
    """hello carries the client's user name (root here); the server ignores it for decisions."""
    laptop = _clone_and_commit(experiment.root, tmp_path / "laptop", ALICE, 3.0)
    with _connect(experiment.root, MALLORY) as conn:
        assert conn.server.kind == "experiment"
        with pytest.raises(AccessDenied, match="mallory"):
            sync.push(laptop, "origin", conn=conn)


def test_repository_kind_everyone_reads_only_granted_users_write(tmp_path: Path) -> None:
    central = Workspace.init(tmp_path / "central", "repository")
    _seed(central)
    acl = central.acl()
    acl.rules.append(Rule(("group:ops",), ("add", "set-default")))
    acl_module.save(central.root, acl, current_identity(), "test")
    laptop = _clone_and_commit(central.root, tmp_path / "laptop", MALLORY, 4.0)  # anyone reads
    before = _files(central.root)
    for who in (ALICE, BOB, MALLORY):
        with _connect(central.root, who) as conn, pytest.raises(AccessDenied, match=who.user):
            sync.push(laptop, "origin", conn=conn)
        assert _files(central.root) == before
    with _connect(central.root, CAROL) as conn:
        assert sync.push(laptop, "origin", conn=conn).pushed == [DET]
    with central.repository(DET) as repo:
        assert float(repo.get("pedestals", at_ns=T0 + 2 * 10**9).value[0, 0]) == 4.0


def test_may_write_ignores_the_ctype_scope() -> None:
    acl = ACL("repository", owner="root", rules=[Rule(("user:bob",), ("add",), ("epix*",), ("pixel_*",))])
    assert acl.may_write(BOB, "epix100a-1") and not acl.may_write(BOB, "jungfrau-1")
    assert not acl.may_write(ALICE, "epix100a-1") and acl.may_write(Identity("root"), "jungfrau-1")
    assert ACL("experiment", group="xpp1").may_write(ALICE, DET)
    assert not ACL("repository", rules=[Rule(("*",), ("read",))]).may_write(ALICE, DET)


def test_a_ctype_scoped_grant_pushes_its_ctypes_only(tmp_path: Path) -> None:
    central = Workspace.init(tmp_path / "central", "repository")
    _seed(central)
    acl = central.acl()
    acl.rules.append(Rule(("user:bob",), ("add", "set-default"), ctypes=("pixel_*",)))
    acl_module.save(central.root, acl, current_identity(), "test")
    with _connect(central.root, BOB) as conn:
        laptop, _ = sync.clone(str(central.root), tmp_path / "laptop", conn=conn)
    with laptop.repository(DET) as repo, repo.transaction("status") as tx:
        tx.add("pixel_status", np.zeros((2, 3), np.uint16), begin_ns=T0)
    with _connect(central.root, BOB) as conn:
        assert sync.push(laptop, "origin", conn=conn).pushed == [DET]
    with laptop.repository(DET) as repo, repo.transaction("peds") as tx:
        tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)
    with _connect(central.root, BOB) as conn:  # refused when the ref moves, by ctype
        report = sync.push(laptop, "origin", conn=conn)
    assert report.pushed == [] and "bob may not" in report.failed[DET]
    assert "epix100a-1 pedestals" in report.failed[DET]


def test_a_read_only_server_refuses_every_write(experiment: Workspace, tmp_path: Path) -> None:
    laptop = _clone_and_commit(experiment.root, tmp_path / "laptop", ALICE, 5.0)
    before = _files(experiment.root)
    owner = Identity(current_identity().user)
    for who in (ALICE, owner):
        with _connect(experiment.root, who, read_only=True) as conn:
            assert conn.server.read_only is True
            with pytest.raises(AccessDenied, match="read-only"):
                sync.push(laptop, "origin", conn=conn)
        with _connect(experiment.root, who, read_only=True) as conn, pytest.raises(AccessDenied):
            conn.update_refs([RefUpdate(DET, None, ObjectId("0" * 32))])
    assert _files(experiment.root) == before
    with _connect(experiment.root, ALICE, read_only=True) as conn:  # reading still works
        sync.pull(laptop, "origin", conn=conn)


# -- --restrict-to-path and SSH_ORIGINAL_COMMAND -----------------------------------------------------


@pytest.fixture
def areas(tmp_path: Path) -> tuple[Path, Path]:
    """Two sibling areas; the first is the one a key is restricted to."""
    base = tmp_path / "areas"
    one, two = base / "xpp1", base / "xpp1-evil"
    for area in (one, two):
        Workspace.init(area, "experiment", group="xpp1")
    (one / "sub").mkdir()
    return one, two


def test_resolve_root_accepts_paths_inside(areas: tuple[Path, Path]) -> None:
    one, _ = areas
    assert resolve_root(one, [one]) == (one.resolve(), False)
    assert resolve_root(one / "sub", [one]) == ((one / "sub").resolve(), False)
    assert resolve_root(one / "sub" / "..", [one]) == (one.resolve(), False)
    (one / "inner-link").symlink_to(one / "sub")
    assert resolve_root(one / "inner-link", [one])[0] == (one / "sub").resolve()
    assert resolve_root(one, [])[0] == one.resolve()  # no restriction: anything


def test_resolve_root_refuses_escapes(areas: tuple[Path, Path], tmp_path: Path) -> None:
    one, two = areas
    (one / "escape").symlink_to(two)
    (one / "sub" / "up").symlink_to("../..")
    for path in (
        one / "..",
        one / ".." / "xpp1-evil",  # a sibling whose name starts with the allowed one
        one / "escape",
        one / "sub" / "up",
        two,
        Path("/"),
        Path("/etc"),
        tmp_path,
    ):
        with pytest.raises(AccessDenied, match="outside the paths"):
            resolve_root(path, [one])
    with pytest.raises(AccessDenied, match="NUL"):
        resolve_root(Path(f"{one}/\0/x"), [one])


def test_ssh_original_command_gives_the_root_and_read_only(areas: tuple[Path, Path]) -> None:
    one, two = areas
    python = "/usr/bin/python3 -m dcsync"
    assert resolve_root(None, [one], original_command=f"{python} serve --stdio --root {one}/sub") == (
        (one / "sub").resolve(),
        False,
    )
    assert resolve_root(None, [one], original_command=f"dcsync serve --stdio --root={one}") == (
        one.resolve(),
        False,
    )
    assert resolve_root(None, [one], original_command=f"dcsync serve --stdio --read-only --root '{one}'") == (
        one.resolve(),
        True,
    )
    # the forced command's own --root wins over the client's
    assert resolve_root(one, [one], original_command=f"dcsync serve --stdio --root {two}")[0] == one.resolve()
    for command in (
        f"dcsync serve --stdio --root {two}",
        f"dcsync serve --stdio --root {one}/../xpp1-evil",
        "dcsync serve --stdio --root /etc",
        f"dcsync serve --stdio --root {one} --root {two}",  # the last one counts, and is checked
    ):
        with pytest.raises(AccessDenied, match="outside"):
            resolve_root(None, [one], original_command=command)
    for command in ("rm -rf /", "sh -c 'cat /etc/shadow'", f"dcsync pull --root {one}"):
        with pytest.raises(AccessDenied, match="only run 'dcsync serve'"):
            resolve_root(None, [one], original_command=command)
    with pytest.raises(AccessDenied, match="cannot parse"):
        resolve_root(None, [one], original_command="dcsync serve --root 'unterminated")


def _forced(
    monkeypatch: pytest.MonkeyPatch, original: str | None, *extra: str
) -> Callable[[Path], Connection]:
    """``dcsync serve --stdio --restrict-to-path P`` as sshd runs a forced command: the client's
    command line only in SSH_ORIGINAL_COMMAND."""
    if original is None:
        monkeypatch.delenv("SSH_ORIGINAL_COMMAND", raising=False)
    else:
        monkeypatch.setenv("SSH_ORIGINAL_COMMAND", original)

    def open_(restrict: Path) -> Connection:
        argv = [
            sys.executable,
            "-m",
            "dcsync",
            "serve",
            "--stdio",
            "--restrict-to-path",
            str(restrict),
            *extra,
        ]
        return Connection(SubprocessChannel(argv, description="forced command"))

    return open_


def test_forced_command_process(areas: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = areas
    _seed(Workspace(one))
    with _forced(monkeypatch, f"dcsync serve --stdio --root {one}")(one) as conn:
        assert conn.server.read_only is False
        assert list(conn.heads(None).heads) == [DET]
    with _forced(monkeypatch, f"dcsync serve --stdio --root {one} --read-only")(one) as conn:
        assert conn.server.read_only is True  # a client may ask for less
    with _forced(monkeypatch, f"dcsync serve --stdio --root {one}", "--read-only")(one) as conn:
        assert conn.server.read_only is True  # and cannot ask for more
    for original in (f"dcsync serve --stdio --root {two}", "cat /etc/passwd", None):
        with pytest.raises(AccessDenied):
            _forced(monkeypatch, original)(one)


# -- dcsync acl ... ----------------------------------------------------------------------------------


def _cli(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def _log_lines(ws: Workspace) -> list[dict[str, Any]]:
    path = ws.root / ".dcsync" / "acl.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_acl_cli_grant_show_check_revoke_set(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "central", "repository")
    me = current_identity().user
    shown = json.loads(_cli("-C", ws.root, "acl", "show", "--json").stdout)
    assert shown == {"kind": "repository", "group": None, "owner": me, "rules": []}
    _cli("-C", ws.root, "acl", "check", "nobody", "add", DET, code=10)
    _cli("-C", ws.root, "acl", "check", "nobody", "read", DET)

    out = _cli("-C", ws.root, "acl", "grant", "user:nobody", "add", "set-default", "--detector", "epix*")
    assert "granted" in out.output
    assert _log_lines(ws)[-1]["action"] == "grant user:nobody add,set-default"
    assert _log_lines(ws)[-1]["user"] == me
    checked = json.loads(_cli("-C", ws.root, "acl", "check", "nobody", "add", DET, "--json").stdout)
    assert checked == {"user": "nobody", "permission": "add", "detector": DET, "ctype": None, "allowed": True}
    _cli("-C", ws.root, "acl", "check", "nobody", "add", "jungfrau-1", code=10)
    _cli("-C", ws.root, "acl", "check", "nobody", "remove", DET, code=10)
    _cli("-C", ws.root, "acl", "grant", "group:ops", "admin", "--ctype", "pixel_*")
    text = _cli("-C", ws.root, "acl", "show").output
    assert (
        "user:nobody: add,set-default detectors=epix*" in text and "group:ops: admin ctypes=pixel_*" in text
    )
    assert [r["principals"] for r in ws.acl().summary()["rules"]] == [["user:nobody"], ["group:ops"]]

    # revoke needs the rule exactly as granted
    _cli("-C", ws.root, "acl", "revoke", "user:nobody", "add", "set-default", code=2)
    _cli("-C", ws.root, "acl", "revoke", "user:nobody", "add", "set-default", "--detector", "epix*")
    _cli("-C", ws.root, "acl", "check", "nobody", "add", DET, code=10)

    _cli("-C", ws.root, "acl", "set", "--kind", "experiment", "--group", "xpp1")
    acl = ws.acl()
    assert (acl.kind, acl.group, acl.owner) == ("experiment", "xpp1", me)
    _cli("-C", ws.root, "acl", "set", "--kind", "laboratory", code=2)
    _cli("-C", ws.root, "acl", "grant", "bob", "add", code=2)
    _cli("-C", ws.root, "acl", "grant", "user:bob", "write", code=2)

    actions = [entry["action"] for entry in _log_lines(ws)]
    assert actions == [
        "grant user:nobody add,set-default",
        "grant group:ops admin",
        "revoke user:nobody add,set-default",
        "set kind=experiment group=xpp1 owner=" + me,
    ]
    assert all(entry["acl"]["kind"] for entry in _log_lines(ws))


def test_acl_changes_need_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "xpp", "experiment", group="xpp1")
    _cli("-C", ws.root, "acl", "grant", "group:ops", "add")
    before = ((ws.root / ".dcsync" / "acl.toml").read_bytes(), (ws.root / ".dcsync" / "acl.log").read_bytes())
    for who in (ALICE, MALLORY):  # a member writes constants, not the ACL
        monkeypatch.setattr("dcsync.cli.acl.current_identity", lambda who=who: who)
        for args in (
            ["grant", "user:mallory", "admin"],
            ["revoke", "group:ops", "add"],
            ["set", "--owner", who.user],
            ["set", "--kind", "local"],
        ):
            out = _cli("-C", ws.root, "acl", *args, code=10)
            assert f"user {who.user} may not admin" in out.output
    after = ((ws.root / ".dcsync" / "acl.toml").read_bytes(), (ws.root / ".dcsync" / "acl.log").read_bytes())
    assert after == before
    # an admin granted by a rule may
    monkeypatch.setattr("dcsync.cli.acl.current_identity", lambda: CAROL)
    _cli("-C", ws.root, "acl", "grant", "group:ops", "admin", code=10)
    monkeypatch.undo()
    _cli("-C", ws.root, "acl", "grant", "group:ops", "admin")
    monkeypatch.setattr("dcsync.cli.acl.current_identity", lambda: CAROL)
    _cli("-C", ws.root, "acl", "grant", "user:alice", "add")
    assert _log_lines(ws)[-1]["user"] == "carol"


# -- local commits ---------------------------------------------------------------------------------


@pytest.fixture
def foreign_repository(tmp_path: Path) -> Iterator[Workspace]:
    """A central repository owned by someone else: we may read, not write."""
    ws = Workspace.init(tmp_path / "central", "repository")
    _seed(ws)
    acl = ws.acl()
    acl.owner = "someone-else"
    acl_module.save(ws.root, acl, current_identity(), "hand over")
    yield ws


def test_local_commits_without_add_are_refused(foreign_repository: Workspace) -> None:
    ws = foreign_repository
    me = current_identity().user
    before = _files(ws.root)
    with ws.repository(DET) as repo:
        assert float(repo.get("pedestals", at_ns=T0).value[0, 0]) == 1.0  # reading is fine
        with pytest.raises(AccessDenied) as info, repo.transaction("mine") as tx:
            tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0, make_default=False)
        assert f"user {me} may not add on {DET} pedestals in repository location {ws.root}" in str(info.value)
        denied = f"user {me} may not (add|set-default) on {DET} pedestals"
        with pytest.raises(AccessDenied, match=denied), repo.transaction("mine, pinned") as tx:
            tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)  # pins: needs set-default too
        with pytest.raises(AccessDenied, match="set-default"), repo.transaction("pin") as tx:
            tx.set_default("pedestals", None, range=repo.get("pedestals", at_ns=T0).range)  # unpin
    with pytest.raises(AccessDenied, match=f"{me} may not add on jungfrau-2"):
        ws.new_detector("jungfrau-2")
    with pytest.raises(AccessDenied, match="may not admin"):
        ws.acl().require(current_identity(), "admin")
    assert _files(ws.root) == before


def test_local_commits_follow_a_grant(foreign_repository: Workspace) -> None:
    ws = foreign_repository
    acl = ws.acl()
    acl.rules.append(Rule((f"user:{current_identity().user}",), ("add",), ctypes=("pixel_*",)))
    acl_module.save(ws.root, acl, Identity("someone-else"), "grant")
    with ws.repository(DET) as repo:
        with repo.transaction("status") as tx:
            tx.add("pixel_status", np.zeros((2, 3), np.uint16), begin_ns=T0, make_default=False)
        denied = "set-default on epix100a-1 pixel_status"  # adding pins the new version by default
        with pytest.raises(AccessDenied, match=denied), repo.transaction("pinned status") as tx:
            tx.add("pixel_status", np.ones((2, 3), np.uint16), begin_ns=T0)
        with pytest.raises(AccessDenied, match="pedestals"), repo.transaction("peds") as tx:
            tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)
        assert sorted(repo.root().ctypes) == ["pedestals", "pixel_status"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_the_directory_owner_is_the_default_owner(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "central", "repository")
    _seed(ws)
    (ws.root / ".dcsync" / "acl.toml").write_text('kind = "repository"\n', encoding="utf-8")
    os.chown(ws.root, 54321, -1)  # a uid without a passwd entry: no owner by name
    try:
        assert ws.acl().owner in (None, "54321")
        with ws.repository(DET) as repo, pytest.raises(AccessDenied), repo.transaction("x") as tx:
            tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)
    finally:
        os.chown(ws.root, 0, -1)


def test_commits_on_a_just_created_detector_are_judged(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "xpp", "experiment", group="xpp1")
    hook = ws.root / ".dcsync" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'nothing may be committed here' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    repo = ws.new_detector(DET)
    with repo, pytest.raises(HookRejected), repo.transaction("first") as tx:
        tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0)


def test_a_file_opened_on_its_own_gets_the_default_guard_and_says_so(
    foreign_repository: Workspace, tmp_path: Path
) -> None:
    """The same bytes outside any workspace: no ACL judges them, and the guard says why."""
    bare = tmp_path / "elsewhere" / f"{DET}.h5"
    bare.parent.mkdir()
    shutil.copyfile(foreign_repository.detector_path(DET), bare)
    assert guard_for(bare) is DEFAULT_GUARD
    with Repository.open(bare) as opened, open_repository(bare) as found:
        for repo in (opened, found):
            assert repo.guard is DEFAULT_GUARD and "no workspace: default rules" in repr(repo.guard)
        with found.transaction("mine") as tx:
            tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0, make_default=False)
        assert len(found.ranges("pedestals")[0][1].versions) == 2


def test_a_file_in_a_workspace_gets_the_workspace_acl(foreign_repository: Workspace) -> None:
    ws = foreign_repository
    me = current_identity().user
    before = _files(ws.root)
    with open_repository(ws.detector_path(DET)) as found, ws.repository(DET) as named:
        assert f"the ACL and hooks of workspace {ws.root}" in repr(found.guard)
        assert f"the ACL and hooks of repository workspace {ws.root}" in repr(named.guard)
        for repo in (found, named):
            denied = pytest.raises(AccessDenied, match=f"user {me} may not add on {DET}")
            with denied, repo.transaction("mine") as tx:
                tx.add("pedestals", np.zeros((2, 3), np.float32), begin_ns=T0, make_default=False)
    assert _files(ws.root) == before
    # A fetched copy waiting for a pull is judged by the same workspace.
    assert f"workspace {ws.root}" in repr(guard_for(ws.fetched_path("jungfrau-2")))
