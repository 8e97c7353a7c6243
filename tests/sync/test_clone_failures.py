"""A clone that fails leaves nothing behind, or a state that resumes with corrected options.

Every way a clone fails before anything arrives (a refused port, an unknown host key, a user the
server refuses, a path outside a key's ``--restrict-to-path``, a missing remote path, a remote that
is not a workspace, no dcsync on the remote, a detector filter that matches nothing) leaves no
workspace and no directory the clone made, and a directory that was empty before stays empty, so
the corrected command simply runs. A clone cut in the middle (its real server killed) leaves a
workspace that the same command, with options corrected, resumes: the options given again win and
are saved. SSH failures run against the real sshd of tests/sshd.py, the rest over local paths.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sshd import SSHServer, _stop, start_sshd
from test_sync_faults import free_port, quarantined_ids, ssh_home
from typer.testing import CliRunner

from dcsync import sync
from dcsync.cli.main import app
from dcsync.errors import (
    AccessDenied,
    AuthenticationFailed,
    ConnectionFailed,
    DetectorNotFound,
    HostKeyError,
    RemoteError,
    UsageError,
    WorkspaceNotFound,
)
from dcsync.model.times import parse_time
from dcsync.store.refs import HEAD
from dcsync.workspace import config
from dcsync.workspace.workspace import Workspace

T0 = parse_time("2024-01-01T00:00:00Z")
DETS = ("epix100a-0001", "jungfrau-0100")
PYTHON_DCSYNC = f"{shlex.quote(sys.executable)} -m dcsync"
NOT_INSTALLED = "dcsync-not-installed-here"


@pytest.fixture(autouse=True)
def _small_chunks_and_no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(32 * 1024))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two detectors; jungfrau has 24 256 KiB arrays, dozens of chunks to cut a transfer in: far
    more than the 1 MiB pipe buffers hold, so a server killed a third of the way has not sent all."""
    ws = Workspace.init(tmp_path_factory.mktemp("central") / "central", kind="experiment")
    rng = np.random.default_rng(8)
    for det in DETS:
        with ws.new_detector(det) as repo, repo.transaction("first") as tx:
            tx.add("pedestals", np.zeros((4, 4), np.float32), begin_ns=T0)
    with ws.repository(DETS[1]) as repo, repo.transaction("big") as tx:
        for i in range(24):
            tx.add(
                f"pixel_c{i:02d}", rng.normal(size=(256, 256)).astype(np.float32), begin_ns=T0, new_ctype=True
            )
    return ws.root


@pytest.fixture(scope="module")
def restricted_sshd(tmp_path_factory: pytest.TempPathFactory, central: Path) -> Iterator[SSHServer]:
    """An sshd whose only key is pinned to ``dcsync serve --restrict-to-path <an empty area>``."""
    area = tmp_path_factory.mktemp("area")
    server, process = start_sshd(tmp_path_factory.mktemp("restricted-sshd"))
    serve = f"exec {PYTHON_DCSYNC} serve --stdio --restrict-to-path {shlex.quote(str(area))}"
    pubkey = server.client_key.with_suffix(".pub").read_text().strip()
    server.authorized_keys.write_text(f'command="{serve}",restrict {pubkey}\n')
    try:
        yield server
    finally:
        _stop(process)


def ssh_clone_args(
    server: SSHServer, tmp: Path, binary: bool, path: str, **config: str
) -> tuple[str, dict[str, Any]]:
    """A URL and ``sync.clone`` options reaching ``server`` (through an ssh_config ``Host`` with
    ``config``) with paramiko or the system ssh."""
    ssh_home(server)
    ssh_config = tmp / "ssh_config"
    ssh_config.write_text(server.config_block("target", **config))
    if binary:
        return f"ssh://target{path}", {"ssh_command": f"ssh -F {shlex.quote(str(ssh_config))}"}
    user = config.get("User", server.user)
    port = config.get("Port", server.port)
    known = config.get("UserKnownHostsFile")
    if known is not None:  # paramiko reads ~/.ssh/known_hosts: make it the one the case wants
        shutil.copy(known, Path(os.environ["HOME"]) / ".ssh" / "known_hosts")
    return f"ssh://{user}@{server.host}:{port}{path}", {}


def failing_clone(case: str, request: pytest.FixtureRequest, tmp: Path) -> tuple[str, dict[str, Any], type]:
    """(URL, clone options, the error) of each way a clone fails before anything arrives."""
    central: Path = request.getfixturevalue("central")
    transport, _, what = case.partition(":")
    if transport == "pipe":
        not_a_workspace = tmp / "plain-directory"
        not_a_workspace.mkdir(exist_ok=True)
        return {
            "missing-path": (str(tmp / "no-such-calib"), {}, WorkspaceNotFound),
            "not-a-workspace": (str(not_a_workspace), {}, WorkspaceNotFound),
            "no-dcsync": (str(central), {"remote_dcsync": f"sh -c '{NOT_INSTALLED} \"$@\"' sh"}, RemoteError),
            "no-match": (str(central), {"detectors": ["epx100a-*"]}, DetectorNotFound),
        }[what]
    binary = transport == "ssh-binary"
    if what == "restrict-to-path":
        server = request.getfixturevalue("restricted_sshd")
        return (*ssh_clone_args(server, tmp, binary, str(central)), AccessDenied)
    server = request.getfixturevalue("sshd")
    if what == "refused-port":
        url, options = ssh_clone_args(server, tmp, binary, str(central), Port=str(free_port()))
        return url, {**options, "remote_dcsync": server.remote_dcsync}, ConnectionFailed
    if what == "unknown-host-key":
        empty = tmp / "empty_known_hosts"
        empty.write_text("")
        url, options = ssh_clone_args(server, tmp, binary, str(central), UserKnownHostsFile=str(empty))
        return url, {**options, "remote_dcsync": server.remote_dcsync}, HostKeyError
    if what == "bad-user":
        url, options = ssh_clone_args(server, tmp, binary, str(central), User="nobody-dcsync-test")
        return url, {**options, "remote_dcsync": server.remote_dcsync}, AuthenticationFailed
    assert what == "no-dcsync"
    url, options = ssh_clone_args(server, tmp, binary, str(central))
    return url, {**options, "remote_dcsync": NOT_INSTALLED}, RemoteError


CASES = [
    "pipe:missing-path",
    "pipe:not-a-workspace",
    "pipe:no-dcsync",
    "pipe:no-match",
    *(
        f"{transport}:{what}"
        for transport in ("paramiko", "ssh-binary")
        for what in ("refused-port", "unknown-host-key", "bad-user", "restrict-to-path", "no-dcsync")
    ),
]


@pytest.mark.parametrize("into", ["new", "empty"], ids=["new-directory", "empty-directory"])
@pytest.mark.parametrize("case", CASES)
def test_a_clone_that_fails_before_anything_arrives_leaves_nothing(
    case: str, into: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, options, error = failing_clone(case, request, tmp_path)
    if into == "new":
        dest = tmp_path / "made" / "by" / "clone"  # every missing level goes again
    else:
        dest = tmp_path / "empty"
        dest.mkdir()
    with pytest.raises(error) as info:
        sync.clone(url, dest, **options)
    if into == "new":
        assert not (tmp_path / "made").exists()
    else:
        assert list(dest.iterdir()) == []
    if case.endswith("no-dcsync"):  # what the remote said, and what to do about it
        assert f"{NOT_INSTALLED}: " in str(info.value) and "not found" in str(info.value)
        assert "--remote-dcsync" in str(info.value)
    if case.endswith("no-match"):
        assert "'epx100a-*'" in str(info.value) and ", ".join(DETS) in str(info.value)


def test_the_corrected_command_then_clones(central: Path, tmp_path: Path) -> None:
    dest = tmp_path / "laptop"
    with pytest.raises(RemoteError):
        sync.clone(str(central), dest, remote_dcsync=NOT_INSTALLED)
    ws, report = sync.clone(str(central), dest, remote_dcsync=PYTHON_DCSYNC)
    assert sorted(report.fast_forwarded) == list(DETS)
    assert config.remotes(ws)["origin"].remote_dcsync == PYTHON_DCSYNC
    assert sync.unfinished_clone(dest) is None


def cli(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def test_a_detector_filter_that_matches_nothing_is_an_error_naming_the_detectors(
    central: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "laptop"
    result = cli("clone", central, dest, "-d", "epx100a-*", "-q", code=3)
    assert "no detector" in result.stderr and "'epx100a-*'" in result.stderr
    assert ", ".join(DETS) in result.stderr
    assert not dest.exists()
    cli("clone", central, dest, "-d", "epix100a-*", "-q")  # the right glob
    assert Workspace(dest).detectors() == [DETS[0]]
    # fetch and pull share the code: the same error, and nothing changes
    before = sorted(p.name for p in dest.rglob("*"))
    for command in ("fetch", "pull"):
        result = cli("-C", dest, command, "origin", "-d", "jungfrua-*", "-q", code=3)
        assert "'jungfrua-*'" in result.stderr and ", ".join(DETS) in result.stderr
    assert sorted(p.name for p in dest.rglob("*")) == before


def test_a_clone_of_a_new_detector_by_promotion_is_not_a_filter_mistake(
    central: Path, tmp_path: Path
) -> None:
    """Promotion clones its target with the detectors to promote, which it may lack."""
    ws, report = sync.clone(str(central), tmp_path / "scratch", detectors=["cspad-*"], must_match=False)
    assert ws.detectors() == [] and report.fetch.updated == {}


# -- cut in the middle: the same command, corrected, resumes ------------------------------------------


def big_arrays_in(incoming: Path) -> list[Path]:
    """The 256 KiB arrays that arrived complete (a part file starts with a dot)."""
    return [
        p for p in incoming.rglob("*.npy") if not p.name.startswith(".") and p.stat().st_size >= 256 * 1024
    ]


@pytest.mark.parametrize("whole_files", [False, True], ids=["objects", "whole-file"])
def test_a_clone_cut_in_the_middle_resumes_with_the_options_given_again(
    central: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whole_files: bool
) -> None:
    """The first server (run by a --remote-dcsync that notes its pid) is killed mid-transfer; the
    re-run names another --remote-dcsync, which must be the one that runs and is saved."""
    monkeypatch.setenv("DCSYNC_WHOLE_FILES", "1" if whole_files else "0")
    dest = tmp_path / "laptop"
    incoming = dest / ".dcsync" / "incoming"
    pid_file = tmp_path / "server.pid"
    noting = f"sh -c 'echo $$ > {shlex.quote(str(pid_file))}; exec {PYTHON_DCSYNC} \"$@\"' sh"
    big = Workspace(central).detector_path(DETS[1]).stat().st_size
    killed: list[int] = []
    totals: list[int] = []

    def kill_the_server(phase: str, done: int, total: int) -> None:
        totals.append(total)
        arrived = (
            (incoming / f"{DETS[1]}.h5.part").exists()
            and (incoming / f"{DETS[1]}.h5.part").stat().st_size > big // 3
            if whole_files
            else len(big_arrays_in(incoming)) >= 3
        )
        if not killed and arrived:
            killed.append(int(pid_file.read_text()))
            os.kill(killed[0], signal.SIGKILL)
            pid_file.unlink()

    with pytest.raises(RemoteError):
        sync.clone(str(central), dest, remote_dcsync=noting, progress=kill_the_server)
    assert killed, "the clone finished before the kill"
    assert sync.unfinished_clone(dest) is not None
    if whole_files:  # the small detector came whole before the cut, the big one in part
        assert Workspace(dest).detectors() == [DETS[0]]
        kept = (incoming / f"{DETS[1]}.h5.part").stat().st_size
    else:  # objects of both wait in quarantine
        assert Workspace(dest).detectors() == []
        kept = len(quarantined_ids(Workspace(dest)))
    assert kept

    assert Workspace(dest).kind == "local"
    resumed = cli("clone", central, dest, "--remote-dcsync", PYTHON_DCSYNC, "--kind", "experiment", "--json")
    out = json.loads(resumed.stdout)
    assert out["resumed"] is True
    assert not pid_file.exists(), "the saved --remote-dcsync ran, not the one given again"
    ws = Workspace(dest)
    assert config.remotes(ws)["origin"].remote_dcsync == PYTHON_DCSYNC  # saved for later pulls
    assert ws.kind == "experiment"
    assert sync.unfinished_clone(dest) is None
    assert sorted(out["fast_forwarded"]) == list(DETS[1:] if whole_files else DETS)
    # only what had not arrived came: the rest of the file, or all but (at least) three arrays
    assert out["fetch"]["bytes"] <= (big - kept if whole_files else totals[-1] - 3 * 256 * 1024)
    for det in DETS:
        with ws.repository(det) as repo, Workspace(central).repository(det) as theirs:
            assert repo.store.refs()[HEAD] == theirs.head()
    assert not incoming.exists() or quarantined_ids(ws) == set()


def test_an_unfinished_clone_resumes_but_other_contents_are_refused(central: Path, tmp_path: Path) -> None:
    dest = tmp_path / "laptop"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty directory"):
        sync.clone(str(central), dest)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]
    with pytest.raises(UsageError, match="not an empty directory"):
        sync.clone(str(central), dest / "notes.txt")
