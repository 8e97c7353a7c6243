"""Access control for real: Unix users and groups, a real sshd, forced commands, shared group areas.

A session fixture creates groups (dcsxpp1, dcsxpp2, dcsops) and users (dcsadmin and dcsreader in
dcsops, dcsmember in dcsxpp1, dcsother in dcsxpp2, dcsoutsider in none), starts its own OpenSSH server
on loopback whose ``AuthorizedKeysFile`` is ``<dir>/authorized/%u``, and builds three shared areas the
way a site would (docs/admin.md): a central repository (group dcsops's files; dcsadmin writes by a
rule, dcsreader only reads although the file system would let it write) and two
experiment areas (group dcsxpp1 / dcsxpp2), setgid group-writable, the areas' roots and ``.dcsync``
sticky so a member cannot swap the ACL. Every session logs in over SSH as one of the users, so the
server decides with that user's OS identity, exactly as in production.

Plain keys run ``<area-tools>/dcsync-serve`` (``umask 002; exec python -m dcsync``), like a site's
wrapper on PATH; forced-command keys pin ``serve --stdio --restrict-to-path P [--read-only]``.

Needs root (useradd, groupadd, sshd): skipped without them (a skip CI does not allow), and where the
machine has them, a set-up that fails is a failure.
Users and groups are removed at the end; a lock file serialises concurrent runs of this module.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sshd import _keygen, _stop, launch_sshd, sshd_config_text, sshd_unavailable_reason

from dcsync import sync
from dcsync.cli.main import app
from dcsync.cli.output import short
from dcsync.errors import AccessDenied
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.sync.client import Connection
from dcsync.sync.replies import RefResult, RefUpdate
from dcsync.transport.connect import open_channel
from dcsync.transport.paramiko import ParamikoChannel
from dcsync.transport.url import parse_remote_url
from dcsync.workspace import acl as acl_module
from dcsync.workspace import config
from dcsync.workspace.acl import Identity, Rule
from dcsync.workspace.workspace import Workspace

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: creates Unix users and groups and runs sshd (tests/workspace/test_acl.py: the rest)",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# This interpreter as started, not its resolved path: a virtual environment's python is a symlink, and
# the resolved binary would run without the environment's packages
PYTHON = sys.executable
GROUPS = ("dcsxpp1", "dcsxpp2", "dcsops")
USERS = {
    "dcsadmin": "dcsops",
    "dcsreader": "dcsops",
    "dcsmember": "dcsxpp1",
    "dcsother": "dcsxpp2",
    "dcsoutsider": None,
}
LOCK = Path(tempfile.gettempdir()) / "dcsync-access-e2e.lock"
DET = "epix100a-1"  # in xpp1, promoted to central
DET2 = "epix100a-2"  # in xpp2
DET_CENTRAL = "jungfrau-1"  # in central from the start
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SHAPE = (2, 3)

# client key name -> (user, forced command: (area, read_only) or None)
KEYS: dict[str, tuple[str, tuple[str, bool] | None]] = {
    "admin": ("dcsadmin", None),
    "member": ("dcsmember", None),
    "other": ("dcsother", None),
    "outsider": ("dcsoutsider", None),
    "member-xpp1": ("dcsmember", ("xpp1", False)),
    "member-xpp1-ro": ("dcsmember", ("xpp1", True)),
    "outsider-mirror": ("dcsoutsider", ("central", True)),
    "admin-central": ("dcsadmin", ("central", False)),
    "reader-central": ("dcsreader", ("central", False)),  # a reader's key without --read-only
}


@dataclass
class World:
    base: Path
    areas: dict[str, Path]
    port: int
    ssh_config: str  # the text of ~/.ssh/config for the test process (one Host per key)
    serve: str  # the remote dcsync command for plain keys (a wrapper that sets umask 002)
    log: Path
    heads: dict[str, str] = field(default_factory=dict)

    def url(self, key: str, path: Path | str) -> str:
        return f"ssh://dcs-{key}{path}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


# -- accounts, permissions and sshd --------------------------------------------------------------


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


def _exists(kind: str, name: str) -> bool:
    try:
        (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        return False
    return True


def _remove_accounts() -> list[str]:
    problems = []
    for user in USERS:
        if _exists("user", user):
            result = subprocess.run(["userdel", "-r", "-f", user], capture_output=True, text=True)
            if _exists("user", user):
                problems.append(f"userdel {user}: {result.stderr.strip()}")
    for group in GROUPS:
        if _exists("group", group):
            result = subprocess.run(["groupdel", group], capture_output=True, text=True)
            if _exists("group", group):
                problems.append(f"groupdel {group}: {result.stderr.strip()}")
    return problems


def _create_accounts() -> None:
    for group in GROUPS:
        _run("groupadd", group)
    for user, group in USERS.items():
        # '*' (not useradd's locked '!'): sshd without PAM refuses locked accounts even with keys
        _run("useradd", "-m", "-s", "/bin/sh", "-p", "*", *(["-G", group] if group else []), user)


def _open_path_to(targets: list[Path]) -> list[tuple[Path, int]]:
    """Make every directory above ``targets`` traversable by others (``chmod o+x``); returns what to
    restore. The users must reach this interpreter (under /root with pyenv) and this checkout."""
    changed = []
    for target in targets:
        for directory in [target, *target.parents]:
            mode = directory.stat().st_mode
            if directory.is_dir() and not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)
                changed.append((directory, stat.S_IMODE(mode)))
    return changed


def _share(root: Path, group: str) -> None:
    """A shared area as docs/admin.md describes: setgid group-writable folders, group-writable
    files, but the root and ``.dcsync`` sticky (nobody swaps the ACL) and hooks only root's."""
    gid = grp.getgrnam(group).gr_gid
    for path in [root, *root.rglob("*")]:
        os.chown(path, 0, gid, follow_symlinks=False)
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o2775)
        else:
            path.chmod(0o775 if path.stat().st_mode & stat.S_IXUSR else 0o664)
    for sticky in (root, root / ".dcsync"):
        sticky.chmod(0o3775)
    hooks = root / ".dcsync" / "hooks"
    for path in [hooks, *hooks.rglob("*")]:
        path.chmod(0o2755 if path.is_dir() else 0o755)
    (root / ".dcsync" / "acl.toml").chmod(0o644)
    (root / ".dcsync" / "config.toml").chmod(0o644)


def _seed(ws: Workspace, det: str, value: float) -> str:
    ws.new_detector(det).close()
    with ws.repository(det) as repo:
        with repo.transaction(f"first pedestals of {det}") as tx:
            tx.add("pedestals", np.full(SHAPE, value, np.float32), begin_ns=T0, pars={"run": 1})
            tx.add("pixel_status", np.zeros(SHAPE, np.uint16), begin_ns=T0)
        return str(repo.head())


def _install_hooks(ws: Workspace) -> None:
    from typer.testing import CliRunner

    for sample in ("check-dtype-shape", "no-nan-inf"):
        result = CliRunner().invoke(app, ["-C", str(ws.root), "hooks", "install", sample])
        if result.exit_code != 0:
            raise RuntimeError(f"dcsync hooks install {sample}: {result.output}")


def _forced_line(python: str, area: Path, read_only: bool, pubkey: str) -> str:
    serve = f"{python} -m dcsync serve --stdio --restrict-to-path {area}" + (
        " --read-only" if read_only else ""
    )
    return f'command="umask 002; exec {serve}",restrict {pubkey}'


def _ssh_config_block(alias: str, port: int, user: str, key: Path, known_hosts: Path) -> str:
    options = {
        "HostName": "127.0.0.1",
        "Port": str(port),
        "User": user,
        "IdentityFile": str(key),
        "IdentitiesOnly": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "BatchMode": "yes",
    }
    return f"Host {alias}\n" + "".join(f"    {k} {v}\n" for k, v in options.items())


def _build(base: Path, stack: contextlib.ExitStack) -> World:
    base.chmod(0o755)
    areas_dir = base / "areas"
    areas_dir.mkdir()
    areas_dir.chmod(0o755)
    areas = {name: areas_dir / name for name in ("central", "xpp1", "xpp2")}

    problems = _remove_accounts()  # a crashed earlier run (we hold the lock: no run is active)
    if problems:
        raise RuntimeError("; ".join(problems))
    stack.callback(_check_removed)
    _create_accounts()
    for directory, mode in _open_path_to(
        [Path(PYTHON).parent, Path(os.path.realpath(PYTHON)).parent, REPO_ROOT]
    ):
        stack.callback(directory.chmod, mode)

    # the areas
    central = Workspace.init(areas["central"], "repository")
    acl = central.acl()
    acl.rules.append(Rule(("user:dcsadmin",), ("read", "add", "set-default", "remove")))
    acl_module.save(central.root, acl, Identity("root"), "e2e setup")
    heads = {DET_CENTRAL: _seed(central, DET_CENTRAL, 5.0)}
    xpp1 = Workspace.init(areas["xpp1"], "experiment", group="dcsxpp1")
    heads[DET] = _seed(xpp1, DET, 1.0)
    xpp2 = Workspace.init(areas["xpp2"], "experiment", group="dcsxpp2")
    heads[DET2] = _seed(xpp2, DET2, 2.0)
    for ws in (central, xpp1, xpp2):
        _install_hooks(ws)
    _share(areas["central"], "dcsops")
    _share(areas["xpp1"], "dcsxpp1")
    _share(areas["xpp2"], "dcsxpp2")
    (areas["xpp1"] / "escape").symlink_to(areas["xpp2"])  # planted by someone with a shell

    # a site's wrapper for plain keys: sshd forces umask >= 022, a shared area needs 002
    tools = base / "tools"
    tools.mkdir(mode=0o755)
    serve = tools / "dcsync-serve"
    serve.write_text(f'#!/bin/sh\numask 002\nexec {shlex.quote(PYTHON)} -m dcsync "$@"\n')
    serve.chmod(0o755)

    # keys: the client's private keys stay root's; authorized_keys per user, readable by that user
    secret = base / "ssh"
    secret.mkdir(mode=0o700)
    host_key = secret / "host_ed25519"
    _keygen(host_key, "dcsync-e2e-host")
    authorized = base / "authorized"
    authorized.mkdir(mode=0o755)
    lines: dict[str, list[str]] = {user: [] for user in USERS}
    for name, (user, forced) in KEYS.items():
        key = secret / f"{name}_ed25519"
        _keygen(key, f"dcsync-e2e-{name}")
        pub = key.with_suffix(".pub").read_text().strip()
        lines[user].append(pub if forced is None else _forced_line(PYTHON, areas[forced[0]], forced[1], pub))
    for user, keys in lines.items():
        path = authorized / user
        path.write_text("\n".join(keys) + "\n")
        path.chmod(0o644)

    with contextlib.suppress(FileExistsError):
        Path("/run/sshd").mkdir(mode=0o755)
    options = {
        "AuthorizedKeysFile": f"{authorized}/%u",
        "PermitRootLogin": "no",
        "AllowUsers": " ".join(USERS),
        "UsePAM": "no",
        "AllowTcpForwarding": "no",
        "SetEnv": f"PYTHONPATH={REPO_ROOT}",
    }
    process, port, log = launch_sshd(
        base, lambda free: sshd_config_text(free, host_key, base / "sshd.pid", options)
    )
    stack.callback(_stop, process)
    host_pub = host_key.with_suffix(".pub").read_text().split()
    known_hosts = secret / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    config = "".join(
        _ssh_config_block(f"dcs-{name}", port, user, secret / f"{name}_ed25519", known_hosts)
        for name, (user, _) in KEYS.items()
    )

    # dcsadmin's own client setup, for the promotion run as dcsadmin
    home = Path(pwd.getpwnam("dcsadmin").pw_dir)
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(secret / "admin_ed25519", dot_ssh / "id_ed25519")
    (dot_ssh / "known_hosts").write_text(known_hosts.read_text())
    (dot_ssh / "config").write_text(
        _ssh_config_block("dcs-e2e", port, "dcsadmin", dot_ssh / "id_ed25519", dot_ssh / "known_hosts")
    )
    entry = pwd.getpwnam("dcsadmin")
    for path in [dot_ssh, *dot_ssh.iterdir()]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o700 if path.is_dir() else 0o600)
    return World(base, areas, port, config, f"{serve}", log, heads)


def _check_removed() -> None:
    problems = _remove_accounts()
    if problems:
        raise RuntimeError("; ".join(problems))


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    reason = sshd_unavailable_reason() or next(
        (
            f"{tool} is not installed"
            for tool in ("useradd", "groupadd", "userdel", "runuser")
            if not shutil.which(tool)
        ),
        None,
    )
    if reason is not None:  # a machine that cannot run these; under CI the skip fails the run
        pytest.skip(reason)
    with LOCK.open("a") as lock, contextlib.ExitStack() as stack:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a local /tmp file: flock is fine here
        base = Path(tempfile.mkdtemp(prefix="dcsync-e2e-"))
        stack.callback(shutil.rmtree, base, True)
        # The machine has root and every tool: a set-up that fails here is a failure, not a skip
        yield _build(base, stack)


@pytest.fixture(autouse=True)
def _client(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process is every user's client: ~/.ssh/config names one Host per key."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    dot_ssh = Path(os.environ["HOME"]) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    (dot_ssh / "config").write_text(world.ssh_config)


# -- helpers ----------------------------------------------------------------------------------------


def _digest(root: Path) -> dict[str, str]:
    """Every file of an area but the quarantine, with a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and ".dcsync/incoming" not in str(p)
    }


def _clone(world: World, key: str, area: str, to: Path) -> Workspace:
    ws, _ = sync.clone(world.url(key, world.areas[area]), to, remote_dcsync=world.serve)
    return ws


def _commit(ws: Workspace, det: str, value: Any, message: str = "new pedestals") -> None:
    with ws.repository(det) as repo, repo.transaction(message) as tx:
        tx.add("pedestals", value, begin_ns=T0 + 3600 * 10**9, pars={"run": 2})


def _dial(world: World, key: str, command: str) -> Connection:
    """A session whose remote command line is exactly ``command`` (what a hostile client sends)."""
    return Connection(ParamikoChannel(parse_remote_url(world.url(key, "/unused")), command))


def _served_as(ws_root: Path, det: str) -> dict[str, Any]:
    with Workspace(ws_root).repository(det) as repo:
        return dict(repo.log()[-1].extra)


def _owner_and_mode(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


# -- what each user may do ----------------------------------------------------------------------------


def test_a_member_pushes_to_their_experiment_not_to_another(world: World, tmp_path: Path) -> None:
    mine = _clone(world, "member", "xpp1", tmp_path / "xpp1")
    _commit(mine, DET, np.full(SHAPE, 1.5, np.float32))
    report = sync.push(mine, "origin")
    assert report.pushed == [DET], report.failed
    extra = _served_as(world.areas["xpp1"], DET)
    assert extra["served_as"] == "dcsmember"  # the SSH login decided, not the client's claim
    assert extra["claimed_user"] == current_user()  # what the client says, kept as its claim
    # what the member's server wrote stays usable by the group
    user, group, mode = _owner_and_mode(world.areas["xpp1"] / ".dcsync" / "incoming")
    assert (user, group) == ("dcsmember", "dcsxpp1") and mode & 0o2070 == 0o2070

    theirs = _clone(world, "member", "xpp2", tmp_path / "xpp2")  # everyone reads an experiment
    assert theirs.detectors() == [DET2]
    _commit(theirs, DET2, np.full(SHAPE, 2.5, np.float32))
    before = _digest(world.areas["xpp2"])
    with pytest.raises(AccessDenied) as info:
        sync.push(theirs, "origin")
    assert f"user dcsmember may not add on {DET2} in experiment location {world.areas['xpp2']}" in str(
        info.value
    )
    assert _digest(world.areas["xpp2"]) == before
    assert not (world.areas["xpp2"] / ".dcsync" / "incoming").exists()


def test_a_member_of_another_experiment_cannot_push(world: World, tmp_path: Path) -> None:
    ws = _clone(world, "other", "xpp1", tmp_path / "xpp1")
    _commit(ws, DET, np.full(SHAPE, 9.0, np.float32))
    before = _digest(world.areas["xpp1"])
    with pytest.raises(AccessDenied, match=f"user dcsother may not add on {DET}"):
        sync.push(ws, "origin")
    assert _digest(world.areas["xpp1"]) == before


def test_an_outsider_reads_central_but_cannot_write(world: World, tmp_path: Path) -> None:
    ws = _clone(world, "outsider", "central", tmp_path / "central")
    assert DET_CENTRAL in ws.detectors()
    with ws.repository(DET_CENTRAL) as repo:
        assert float(repo.get("pedestals", at_ns=T0).value[0, 0]) == 5.0
    _commit(ws, DET_CENTRAL, np.full(SHAPE, 6.0, np.float32))
    before = _digest(world.areas["central"])
    with pytest.raises(
        AccessDenied, match="user dcsoutsider may not add on jungfrau-1 in repository location"
    ):
        sync.push(ws, "origin")
    assert _digest(world.areas["central"]) == before


def test_the_admin_pushes_to_central(world: World, tmp_path: Path) -> None:
    ws = _clone(world, "admin", "central", tmp_path / "central")
    _commit(ws, DET_CENTRAL, np.full(SHAPE, 7.0, np.float32))
    assert sync.push(ws, "origin").pushed == [DET_CENTRAL]
    assert _served_as(world.areas["central"], DET_CENTRAL)["served_as"] == "dcsadmin"
    with Workspace(world.areas["central"]).repository(DET_CENTRAL) as repo:
        assert float(repo.get("pedestals", at_ns=T0 + 7200 * 10**9).value[0, 0]) == 7.0
    # the same through the admin's forced-command key for central
    _commit(ws, DET_CENTRAL, np.full(SHAPE, 7.5, np.float32))
    config.add_remote(ws, config.RemoteConfig("forced", world.url("admin-central", world.areas["central"])))
    assert sync.push(ws, "forced").pushed == [DET_CENTRAL]


# -- forced commands ------------------------------------------------------------------------------------


def test_a_forced_command_serves_its_area(world: World, tmp_path: Path) -> None:
    ws = _clone(world, "member-xpp1", "xpp1", tmp_path / "xpp1")  # remote_dcsync is ignored
    assert ws.detectors() == [DET]
    _commit(ws, DET, np.full(SHAPE, 1.25, np.float32))
    assert sync.push(ws, "origin").pushed == [DET]
    assert "umask 002; exec" in (world.base / "authorized" / "dcsmember").read_text()
    assert _served_as(world.areas["xpp1"], DET)["served_as"] == "dcsmember"


@pytest.mark.parametrize(
    "path",
    [
        "{xpp2}",  # another area, by name
        "{xpp1}/../xpp2",  # climbing out
        "{xpp1}/escape",  # a symlink inside pointing at another area
        "{central}",  # an absolute path elsewhere
        "/etc",
    ],
)
def test_a_forced_command_holds_against_escapes(world: World, path: str) -> None:
    target = path.format(**{k: str(v) for k, v in world.areas.items()})
    command = f"{shlex.quote(PYTHON)} -m dcsync serve --stdio --root {shlex.quote(target)}"
    with pytest.raises(AccessDenied, match="outside the paths this server may serve"):
        _dial(world, "member-xpp1", command)


@pytest.mark.parametrize(
    "command",
    ["cat /etc/shadow", "sh -c id", "rm -rf {xpp1}", "python3 -m dcsync pull --root {xpp1}"],
)
def test_a_forced_command_runs_nothing_else(world: World, command: str) -> None:
    text = command.format(**{k: str(v) for k, v in world.areas.items()})
    with pytest.raises(AccessDenied, match="this key may only run 'dcsync serve'"):
        _dial(world, "member-xpp1", text)
    assert (world.areas["xpp1"] / ".dcsync" / "acl.toml").exists()


def test_read_only_forced_commands_refuse_pushes(world: World, tmp_path: Path) -> None:
    ws = _clone(world, "member-xpp1-ro", "xpp1", tmp_path / "xpp1")  # reading is fine
    _commit(ws, DET, np.full(SHAPE, 1.75, np.float32))
    before = _digest(world.areas["xpp1"])
    with pytest.raises(AccessDenied, match="served read-only"):
        sync.push(ws, "origin")
    assert _digest(world.areas["xpp1"]) == before
    mirror = _clone(world, "outsider-mirror", "central", tmp_path / "mirror")
    assert DET_CENTRAL in mirror.detectors()
    _commit(mirror, DET_CENTRAL, np.full(SHAPE, 8.0, np.float32))
    before = _digest(world.areas["central"])
    with pytest.raises(AccessDenied, match="served read-only"):
        sync.push(mirror, "origin")
    assert _digest(world.areas["central"]) == before
    # a client that does not ask for --read-only gets it all the same
    plain = open_channel(
        world.url("member-xpp1-ro", world.areas["xpp1"]), remote_dcsync=f"{PYTHON} -m dcsync"
    )
    with Connection(plain) as conn:
        assert conn.server.read_only is True


# -- hooks on the real path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, hook",
    [
        (np.full(SHAPE, 1.0, np.float64), "check-dtype-shape"),  # float64 where float32 is deployed
        (np.full((3, 2), 1.0, np.float32), "check-dtype-shape"),  # the wrong shape
        (np.full(SHAPE, np.nan, np.float32), "no-nan-inf"),
    ],
    ids=["float64", "shape", "nan"],
)
def test_hooks_reject_bad_constants_over_ssh(world: World, tmp_path: Path, value: Any, hook: str) -> None:
    ws = _clone(world, "member", "xpp1", tmp_path / "xpp1")
    _commit(ws, DET, value, message="a bad dark run")
    detector_file = world.areas["xpp1"] / "epix100a" / f"{DET}.h5"
    before, raw = _digest(world.areas["xpp1"]), detector_file.read_bytes()
    report = sync.push(ws, "origin")
    assert report.pushed == [] and hook in report.failed[DET], report.failed
    assert detector_file.read_bytes() == raw  # byte-identical
    assert _digest(world.areas["xpp1"]) == before


# -- promotion ------------------------------------------------------------------------------------------


def _as_admin(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "LANG": "C.UTF-8"}
    return subprocess.run(
        ["runuser", "-u", "dcsadmin", "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
         PYTHON, "-m", "dcsync", *args],
        capture_output=True, text=True, timeout=120, cwd=home,
    )  # fmt: skip


def test_the_admin_promotes_from_an_experiment_to_central(world: World) -> None:
    home = Path(pwd.getpwnam("dcsadmin").pw_dir)
    desk = home / "desk"
    xpp1_url, central_url = f"ssh://dcs-e2e{world.areas['xpp1']}", f"ssh://dcs-e2e{world.areas['central']}"
    for args in (
        ["init", str(desk)],
        ["-C", str(desk), "remote", "add", "xpp1", xpp1_url, "--remote-dcsync", world.serve],
        ["-C", str(desk), "remote", "add", "central", central_url, "--remote-dcsync", world.serve],
    ):
        result = _as_admin(*args, home=home)
        assert result.returncode == 0, result.stdout + result.stderr
    with Workspace(world.areas["xpp1"]).repository(DET) as repo:
        source_head = str(repo.head())
        good = repo.get("pedestals", at_ns=T0)
    promote = ["-C", str(desk), "promote", DET, "--from", "xpp1", "--to", "central", "--ctype", "pedestals"]
    at = ["--at", "2026-01-01T00:30:00Z"]
    dry = _as_admin(*promote, *at, "--dry-run", "--json", home=home)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [p["action"] for p in json.loads(dry.stdout)["picks"]] == ["promote"]
    assert not (world.areas["central"] / "epix100a").exists()

    done = _as_admin(*promote, *at, "-m", "pedestals of run 1 for everyone", "--json", home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert list(doc["commits"]) == [DET] and doc["picks"][0]["version"] == good.version

    central_file = world.areas["central"] / "epix100a" / f"{DET}.h5"
    user, group, mode = _owner_and_mode(central_file)  # created by dcsadmin's server, for the group
    assert (user, group) == ("dcsadmin", "dcsops") and mode & 0o060 == 0o060
    with Workspace(world.areas["central"]).repository(DET) as repo:
        record = repo.log()[-1]
        assert record.command == "push received" and record.message == "pedestals of run 1 for everyone"
        assert record.extra["claimed_user"] == "dcsadmin" and record.extra["served_as"] == "dcsadmin"
        assert record.extra["claimed_host"] == current_host()
        assert record.extra["promoted_from"] == [{"from": xpp1_url, "commit": source_head}]
        promoted = repo.get("pedestals", at_ns=T0)
        assert promoted.obj == good.obj and promoted.pinned
        assert promoted.version == good.version  # the key the promoter chose by
        assert promoted.entry.origin["location"] == xpp1_url
        assert promoted.entry.origin["commit"] == source_head
        assert promoted.entry.origin["version"] == good.version
        assert promoted.entry.origin["promoted_by"] == "dcsadmin"
    from typer.testing import CliRunner

    log = CliRunner().invoke(app, ["-C", str(world.areas["central"]), "log", DET, "--json"])
    entry = json.loads(log.stdout)["entries"][0]
    pushed = f"pushed by dcsadmin (client claimed dcsadmin@{current_host()})"
    assert entry["audit"] == f"{pushed}; promoted from {xpp1_url} commit {short(source_head)}"

    before = _digest(world.areas["central"])
    again = _as_admin(*promote, *at, "--json", home=home)
    assert again.returncode == 0, again.stdout + again.stderr
    doc = json.loads(again.stdout)
    assert doc["commits"] == {} and doc["picks"][0]["action"].startswith("skip: already in the target")
    assert _digest(world.areas["central"]) == before


def test_a_member_cannot_promote_to_central(world: World, tmp_path: Path) -> None:
    from dcsync.sync.promote import promote

    desk = Workspace.init(tmp_path / "desk")
    config.add_remote(
        desk, config.RemoteConfig("xpp1", world.url("member", world.areas["xpp1"]), world.serve)
    )
    config.add_remote(
        desk, config.RemoteConfig("central", world.url("member", world.areas["central"]), world.serve)
    )
    before = _digest(world.areas["central"])
    with pytest.raises(AccessDenied, match="user dcsmember may not add on epix100a-1 in repository location"):
        promote([DET], "xpp1", "central", here=desk)
    assert _digest(world.areas["central"]) == before


# -- attacks on the calls that write (issue 9, item 9) ------------------------------------------------


def _claiming(monkeypatch: pytest.MonkeyPatch, user: str, host: str) -> None:
    """A hostile client says whatever it likes about itself in hello."""
    monkeypatch.setattr("dcsync.sync.client.current_user", lambda: user)
    monkeypatch.setattr("dcsync.sync.client.current_host", lambda: host)


def _incoming(root: Path) -> list[str]:
    incoming = root / ".dcsync" / "incoming"
    return sorted(str(p.relative_to(incoming)) for p in incoming.rglob("*")) if incoming.exists() else []


@pytest.mark.parametrize(
    "key, area, det",
    [("reader-central", "central", DET_CENTRAL), ("other", "xpp1", DET)],
    ids=["reader-forced-key", "outsider"],
)
def test_a_reader_or_outsider_cannot_touch_refs(
    world: World, monkeypatch: pytest.MonkeyPatch, key: str, area: str, det: str
) -> None:
    """Refused by put_objects, they sent update_refs with old = new = HEAD and a forged message:
    each call logged a record "pushed by mallory@evilhost", took the write lock and ran the hooks,
    and a new detector's name made a directory under .dcsync/incoming."""
    _claiming(monkeypatch, "mallory", "evilhost")
    root, user = world.areas[area], KEYS[key][0]
    with Workspace(root).repository(det) as repo:
        head, records = str(repo.head()), len(repo.log())
    before, incoming = _digest(root), _incoming(root)
    with Connection(open_channel(world.url(key, root), remote_dcsync=world.serve)) as conn:
        assert conn.server.read_only is False
        for atomic in (False, True, False):
            with pytest.raises(AccessDenied, match=f"user {user} may not add on {det}"):
                conn.update_refs(
                    [RefUpdate(det, ObjectId(head), ObjectId(head))],
                    atomic=atomic,
                    message="pushed by mallory@evilhost",
                )
        with pytest.raises(AccessDenied, match=f"user {user} may not add on epix100a-77"):
            conn.update_refs([RefUpdate("epix100a-77", None, ObjectId(head))])
    with Workspace(root).repository(det) as repo:
        assert len(repo.log()) == records and str(repo.head()) == head
    assert _digest(root) == before
    assert _incoming(root) == incoming


def test_the_log_names_the_login_and_labels_the_clients_claim(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    _claiming(monkeypatch, "mallory", "evilhost")
    ws = _clone(world, "member", "xpp1", tmp_path / "xpp1")
    _commit(ws, DET, np.full(SHAPE, 1.125, np.float32))
    assert sync.push(ws, "origin").pushed == [DET]
    root = world.areas["xpp1"]
    with Workspace(root).repository(DET) as repo:
        record, records, head = repo.log()[-1], len(repo.log()), str(repo.head())
    assert record.user == "dcsmember" and record.extra["served_as"] == "dcsmember"
    assert (record.extra["claimed_user"], record.extra["claimed_host"]) == ("mallory", "evilhost")
    shown = CliRunner().invoke(app, ["-C", str(root), "log", DET, "--json", "-n", "1"])
    assert (
        json.loads(shown.stdout)["entries"][0]["audit"]
        == "pushed by dcsmember (client claimed mallory@evilhost)"
    )
    # the member's own no-op: answered, and nothing written
    before, incoming = _digest(root), _incoming(root)
    with Connection(open_channel(world.url("member", root), remote_dcsync=world.serve)) as conn:
        answer = conn.update_refs([RefUpdate(DET, ObjectId(head), ObjectId(head))], message="x")
    assert answer.results == (RefResult(DET),)
    with Workspace(root).repository(DET) as repo:
        assert len(repo.log()) == records
    assert _digest(root) == before and _incoming(root) == incoming
