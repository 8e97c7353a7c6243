"""Sync end to end: the same scenarios over every transport (STYLE.md item 13).

``inprocess`` serves the remote workspace with :class:`~dcsync.sync.server.Server` in a thread and hands
the connection to the API as ``conn=``; ``pipe`` names the remote by its local path, so the API runs
``python -m dcsync serve --stdio`` over pipes; ``ssh`` goes through a real OpenSSH server on loopback
(tests/sshd.py) with paramiko, and a few scenarios also with the system ``ssh`` binary.

A session-scoped central workspace (three detectors, payloads of several dtypes including a
multi-MB one, and geometry text) and a clone of it are built once; each test copies them, so most
tests open a connection only for the operation they test. Chunks are shrunk (``DCSYNC_CHUNK``) so
megabytes cross as many frames.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from helpers.channels import RecordingChannel, in_process
from sshd import SSHServer

from dcsync import sync
from dcsync.errors import (
    CorruptObject,
    MergeConflict,
    NotFastForward,
    ObjectNotFound,
    RefConflict,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.identity import current_host, current_user
from dcsync.model.objects import Commit, VersionEntry
from dcsync.model.times import now_ns, parse_time
from dcsync.repo.diff import summarize
from dcsync.repo.trees import Located
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.sync import client, compare
from dcsync.sync.client import Connection
from dcsync.transport import parse_remote_url
from dcsync.transport.base import Channel
from dcsync.workspace import config
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

T_OLD = parse_time("2023-06-01T00:00:00Z")
T0 = parse_time("2024-01-01T00:00:00Z")
T1 = parse_time("2024-06-01T00:00:00Z")
T2 = parse_time("2025-01-01T00:00:00Z")
EPIX, CSPAD, JUNGFRAU = "epix100a-0001", "cspad-0002", "jungfrau-0003"
DETS = sorted([EPIX, CSPAD, JUNGFRAU])
GEOMETRY = (
    "# TITLE      Geometry parameters of CSPAD\n"
    "QUAD:V2   0  SENS2X1:V1 0  21136 -21106 0  90 0 0  0.1 0 0\n"
    "IP        0  CSPAD:V2   0  0 0 1000000    0 0 0  0 0 0\n"
)
TRANSPORTS = ["inprocess", "pipe", "ssh"]
CHUNK = 64 * 1024


@pytest.fixture(autouse=True)
def _small_chunks_and_no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(CHUNK))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


# -- transports ------------------------------------------------------------------------------------


class Transport:
    """How a test reaches a remote workspace; its methods call the sync API the way a user would."""

    def __init__(self, kind: str, server: SSHServer | None = None) -> None:
        self.kind = kind
        self.server = server

    def __repr__(self) -> str:
        return self.kind

    @property
    def remote_dcsync(self) -> str | None:
        return self.server.remote_dcsync if self.server is not None else None

    @property
    def ssh_command(self) -> str | None:
        return self.server.ssh_command if self.server is not None and self.kind == "system-ssh" else None

    def url(self, path: Path) -> str:
        if self.server is None:
            return str(path)
        return self.server.url(str(path), alias=self.kind == "system-ssh")

    def diff_url(self, path: Path) -> str:
        """A URL ``diff`` reaches through the transport (a plain path it reads directly)."""
        return self.url(path) if self.server is not None else f"file://{path}"

    def remote(self, name: str, path: Path, **filters: Any) -> config.RemoteConfig:
        return config.RemoteConfig(name, self.url(path), self.remote_dcsync, self.ssh_command, **filters)

    def set_remote(self, ws: Workspace, path: Path, name: str = "origin") -> None:
        config = ws.config()
        config.setdefault("remotes", {})[name] = self.remote(name, path).to_toml()
        ws.write_config(config)

    @contextlib.contextmanager
    def connection(self, root: Path | str) -> Iterator[Connection | None]:
        """An in-process connection to ``root`` (``inprocess``), else None: the API dials the URL."""
        if self.kind != "inprocess":
            yield None
            return
        with in_process(Path(root)) as conn:
            yield conn

    def _remote_root(self, ws: Workspace, remote: str) -> Path:
        url = config.get_remote(ws, remote).url
        assert self.kind == "inprocess" and url.startswith("/"), url
        return Path(url)

    @contextlib.contextmanager
    def connection_for(self, ws: Workspace, remote: str) -> Iterator[Connection | None]:
        if self.kind != "inprocess":
            yield None
            return
        with self.connection(self._remote_root(ws, remote)) as conn:
            yield conn

    def clone(self, source: Path, dest: Path, **options: Any) -> tuple[Workspace, sync.PullReport]:
        with self.connection(source) as conn:
            return sync.clone(
                self.url(source),
                dest,
                remote_dcsync=self.remote_dcsync,
                ssh_command=self.ssh_command,
                conn=conn,
                **options,
            )

    def fetch(self, ws: Workspace, remote: str = "origin", **options: Any) -> sync.FetchReport:
        with self.connection_for(ws, remote) as conn:
            return sync.fetch(ws, remote, conn=conn, **options)

    def pull(self, ws: Workspace, remote: str = "origin", **options: Any) -> sync.PullReport:
        with self.connection_for(ws, remote) as conn:
            return sync.pull(ws, remote, conn=conn, **options)

    def push(self, ws: Workspace, remote: str = "origin", **options: Any) -> sync.PushReport:
        with self.connection_for(ws, remote) as conn:
            return sync.push(ws, remote, conn=conn, **options)

    def dial_in_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """For APIs without ``conn=`` (diff): in-process connections wherever they would dial."""
        if self.kind == "inprocess":
            monkeypatch.setattr(
                sync, "connect", lambda remote, **_: in_process(Path(parse_remote_url(remote.url).path))
            )


def ssh_home(server: SSHServer) -> None:
    """What a user's ~/.ssh holds for paramiko: the server's host key and the client key."""
    dot_ssh = Path(os.environ["HOME"]) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(server.known_hosts, dot_ssh / "known_hosts")
    shutil.copy(server.client_key, dot_ssh / "id_ed25519")
    (dot_ssh / "id_ed25519").chmod(0o600)


def make_transport(kind: str, request: pytest.FixtureRequest) -> Transport:
    if kind in ("ssh", "system-ssh"):
        server: SSHServer = request.getfixturevalue("sshd")
        ssh_home(server)
        return Transport(kind, server)
    return Transport(kind)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    return make_transport(request.param, request)


@pytest.fixture(params=[*TRANSPORTS, "system-ssh"])
def any_transport(request: pytest.FixtureRequest) -> Transport:
    """The transports plus the system ``ssh`` binary (for the scenarios that also run over it)."""
    return make_transport(request.param, request)


# -- data ------------------------------------------------------------------------------------------


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def build_central(root: Path) -> Workspace:
    """Three detectors; payloads of many dtypes, a 4.6 MB one, text, two commits on one detector."""
    ws = Workspace.init(root, kind="repository")
    r = rng(1)
    with ws.new_detector(EPIX) as repo:
        with repo.transaction("dark run 1") as tx:
            tx.add(
                "pedestals", r.normal(1000, 5, (352, 384)).astype(np.float32), begin_ns=T0, pars={"run": 1}
            )
            tx.add("pixel_status", r.integers(0, 4, (352, 384), dtype=np.uint16), begin_ns=T0)
            tx.add("pixel_mask", r.integers(0, 2, (352, 384)).astype(bool), begin_ns=T0)
            tx.add("common_mode", np.array([1, 25, 25, 100], np.int32), begin_ns=T0)
        with repo.transaction("dark run 2") as tx:
            tx.add(
                "pedestals", r.normal(1001, 5, (352, 384)).astype(np.float32), begin_ns=T1, pars={"run": 2}
            )
    with ws.new_detector(CSPAD) as repo, repo.transaction("geometry and pedestals") as tx:
        tx.add("geometry", GEOMETRY, begin_ns=T0)
        tx.add("pedestals", r.integers(-2000, 2000, (32, 185, 388), dtype=np.int16), begin_ns=T0)  # 4.6 MB
    with ws.new_detector(JUNGFRAU) as repo, repo.transaction("constants") as tx:
        tx.add("pedestals", r.normal(3000, 9, (2, 64, 128)).astype(np.float32), begin_ns=T_OLD, end_ns=T0)
        tx.add("pedestals", r.normal(3010, 9, (2, 64, 128)).astype(np.float32), begin_ns=T0)
        tx.add("pixel_gain", r.normal(1, 0.01, (2, 64, 128)), begin_ns=T0)  # float64
        tx.add(
            "pixel_rms",
            (r.normal(size=(8, 8)) + 1j * r.normal(size=(8, 8))).astype(np.complex64),
            begin_ns=T0,
        )
        tx.add("pixel_status", r.integers(0, 255, (2, 64, 128), dtype=np.uint8), begin_ns=T0)
    return ws


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(central, laptop): the central workspace and a clone of it (origin = central), built once."""
    root = tmp_path_factory.mktemp("base")
    central = build_central(root / "central")
    with in_process(central.root) as conn:
        sync.clone(str(central.root), root / "laptop", conn=conn)
    return central.root, root / "laptop"


class World:
    """Per-test copies of the central workspace and of clones of it, wired to one transport."""

    def __init__(self, transport: Transport, base: tuple[Path, Path], tmp_path: Path) -> None:
        self.t = transport
        self.tmp = tmp_path
        shutil.copytree(base[0], tmp_path / "central")
        self.central = Workspace(tmp_path / "central")
        self._laptop = base[1]

    def laptop(self, name: str = "laptop") -> Workspace:
        """A clone of central (as ``dcsync clone`` made it), its origin reached over the transport."""
        shutil.copytree(self._laptop, self.tmp / name)
        ws = Workspace(self.tmp / name)
        self.t.set_remote(ws, self.central.root)
        return ws

    def experiment(self) -> Workspace:
        """Central's copy re-labelled as an experiment area (where dark-run constants are pushed)."""
        self.central.write_config({**self.central.config(), "kind": "experiment"})
        return self.central


@pytest.fixture
def world(transport: Transport, base: tuple[Path, Path], tmp_path: Path) -> World:
    return World(transport, base, tmp_path)


# -- helpers ---------------------------------------------------------------------------------------


def add(
    ws: Workspace, det: str, ctype: str, value: Any, begin: int, end: int | None = None, **kw: Any
) -> Located:
    with ws.repository(det) as repo, repo.transaction(f"add {ctype}") as tx:
        return tx.add(ctype, value, begin_ns=begin, end_ns=end, **kw)


def head(ws: Workspace, det: str) -> ObjectId | None:
    with ws.repository(det) as repo:
        return repo.head()


def heads(ws: Workspace) -> dict[str, ObjectId | None]:
    return {det: head(ws, det) for det in ws.detectors()}


def refs(ws: Workspace, det: str) -> dict[str, ObjectId]:
    with ws.repository(det) as repo:
        return repo.store.refs()


def log(ws: Workspace, det: str) -> list[LogRecord]:
    with ws.repository(det) as repo:
        return repo.log()


def get(ws: Workspace, det: str, ctype: str, at: int) -> Any:
    with ws.repository(det) as repo:
        return repo.get(ctype, at_ns=at).value


def assert_verifies(*workspaces: Workspace) -> None:
    for ws in workspaces:
        for det in ws.detectors():
            report = verify_path(ws.detector_path(det))
            assert report.ok, (ws.root, det, report.problems)


def contents(ws: Workspace, det: str) -> dict[tuple[str, str, str], Any]:
    """Every version of every range (entry and payload) and every range's default, by key."""
    out: dict[tuple[str, str, str], Any] = {}
    with ws.repository(det) as repo:
        for ctype in repo.ctypes():
            for rk, tree in repo.ranges(ctype):
                out[(ctype, rk, "default")] = tree.default
                for vk, entry in tree.versions.items():
                    out[(ctype, rk, vk)] = (entry, repo.store.read_payload(entry.obj))
    return out


def assert_same_constants(a: Workspace, b: Workspace, det: str) -> None:
    ca, cb = contents(a, det), contents(b, det)
    assert ca.keys() == cb.keys()
    for key, value in ca.items():
        if key[2] == "default":
            assert value == cb[key], key
            continue
        (entry_a, payload_a), (entry_b, payload_b) = value, cb[key]
        assert entry_a == entry_b, key
        if isinstance(payload_a, str):
            assert payload_a == payload_b
        else:
            assert payload_a.dtype == payload_b.dtype and np.array_equal(payload_a, payload_b), key


def quarantined(ws: Workspace) -> list[Path]:
    incoming = ws.root / ".dcsync" / "incoming"
    return sorted(p for p in incoming.rglob("*") if p.is_file()) if incoming.exists() else []


# -- clone, fetch, pull ----------------------------------------------------------------------------


def test_clone_copies_every_detector_and_a_refetch_is_a_no_op(
    any_transport: Transport, base: tuple[Path, Path], tmp_path: Path
) -> None:
    world = World(any_transport, base, tmp_path)
    ws, report = any_transport.clone(world.central.root, tmp_path / "laptop")
    assert ws.detectors() == DETS
    assert sorted(report.fast_forwarded) == DETS
    assert report.fetch.bytes > 4_000_000  # the cspad pedestals crossed, in 64 KiB chunks
    for det in DETS:
        assert head(ws, det) == head(world.central, det)
        assert refs(ws, det)[remote_ref("origin")] == head(ws, det)
        assert_same_constants(world.central, ws, det)
    assert_verifies(ws, world.central)
    assert quarantined(ws) == []
    assert config.remotes(ws)["origin"].url == any_transport.url(world.central.root)

    before = {det: (log(ws, det), ws.detector_path(det).stat().st_size) for det in DETS}
    again = any_transport.fetch(ws)
    assert (again.updated, again.objects, again.bytes) == ({}, 0, 0)
    assert {det: (log(ws, det), ws.detector_path(det).stat().st_size) for det in DETS} == before
    assert any_transport.pull(ws).fast_forwarded == []


def test_pull_fast_forwards_after_the_central_side_commits(world: World) -> None:
    laptop = world.laptop()
    new = add(world.central, EPIX, "pedestals", np.full((352, 384), 7, np.float32), T2)
    add(world.central, CSPAD, "pixel_status", np.zeros((32, 185, 388), np.uint8), T0)

    fetched = world.t.fetch(laptop)
    assert sorted(fetched.updated) == [CSPAD, EPIX]
    assert head(laptop, EPIX) != head(world.central, EPIX)  # fetch leaves HEAD alone
    behind = {row.detector: (row.ahead, row.behind) for row in sync.status(laptop)}
    assert behind == {CSPAD: (0, 1), EPIX: (0, 1), JUNGFRAU: (0, 0)}

    report = world.t.pull(laptop)
    assert sorted(report.fast_forwarded) == [CSPAD, EPIX] and report.merged == []
    assert heads(laptop) == heads(world.central)
    assert np.array_equal(get(laptop, EPIX, "pedestals", T2 + 1), np.full((352, 384), 7, np.float32))
    assert get(laptop, EPIX, "pedestals", T2 + 1).dtype == np.float32
    with laptop.repository(EPIX) as repo:
        assert repo.get("pedestals", at_ns=T2 + 1).version == new.version
        assert repo.log()[-1].command == "pull"
    assert_verifies(laptop)


def test_status_counts_commits_ahead_and_behind(world: World) -> None:
    laptop = world.laptop()
    add(laptop, JUNGFRAU, "pixel_mask", np.ones((2, 64, 128), np.uint8), T1)
    add(laptop, JUNGFRAU, "pixel_bkgd", np.zeros((2, 64, 128), np.float32), T1)
    add(world.central, JUNGFRAU, "pedestals", np.ones((2, 64, 128), np.float32), T2)
    add(world.central, EPIX, "pedestals", np.ones((352, 384), np.float32), T2)
    assert {r.detector: (r.ahead, r.behind) for r in sync.status(laptop)}[JUNGFRAU] == (2, 0)
    world.t.fetch(laptop)
    rows = {r.detector: (r.ahead, r.behind) for r in sync.status(laptop)}
    assert rows == {CSPAD: (0, 0), EPIX: (0, 1), JUNGFRAU: (2, 1)}


# -- push ------------------------------------------------------------------------------------------


def test_push_to_the_experiment_area_then_pull_into_a_second_clone(world: World) -> None:
    experiment = world.experiment()
    alice, bob = world.laptop("alice"), world.laptop("bob")
    dark = rng(5).normal(999, 4, (352, 384)).astype(np.float32)
    new = add(alice, EPIX, "pedestals", dark, T2, pars={"run": 42})
    records, old = len(log(experiment, EPIX)), head(experiment, EPIX)

    report = world.t.push(alice, message="dark run 42")
    assert report.pushed == [EPIX] and report.failed == {}
    assert report.planned == {EPIX: (old, head(alice, EPIX))}
    assert head(experiment, EPIX) == head(alice, EPIX)
    assert refs(alice, EPIX)[remote_ref("origin")] == head(alice, EPIX)
    assert {r.detector: (r.ahead, r.behind) for r in sync.status(alice)}[EPIX] == (0, 0)
    # the remote log: one record, naming who pushed from where
    received = log(experiment, EPIX)[records:]
    assert [r.command for r in received] == ["push received"]
    assert received[0].message == "dark run 42"
    assert received[0].extra["claimed_user"] == current_user()  # what the client said, labelled so
    assert received[0].extra["claimed_host"] == current_host()
    assert (received[0].old, received[0].new) == (report.planned[EPIX][0], head(alice, EPIX))
    assert quarantined(experiment) == []
    assert_verifies(experiment, alice)

    pulled = world.t.pull(bob)
    assert pulled.fast_forwarded == [EPIX]
    with bob.repository(EPIX) as repo:
        got = repo.get("pedestals", at_ns=T2)
        assert got.version == new.version and got.entry.pars == {"run": 42}
        assert got.value.dtype == np.float32 and np.array_equal(got.value, dark)
    assert heads(bob) == heads(experiment)


def test_push_is_refused_when_not_a_fast_forward_and_the_remote_is_unchanged(world: World) -> None:
    alice = world.laptop("alice")
    add(world.central, EPIX, "pedestals", np.full((352, 384), 2, np.float32), T2)  # someone else's
    add(alice, EPIX, "pixel_gain", np.ones((352, 384), np.float32), T0)
    remote_before = (heads(world.central), log(world.central, EPIX))
    local_before = (heads(alice), log(alice, EPIX))

    with pytest.raises(NotFastForward, match=r"epix100a-0001.*pull first \(dcsync pull origin\)"):
        world.t.push(alice)
    assert (heads(world.central), log(world.central, EPIX)) == remote_before
    assert (heads(alice), log(alice, EPIX)) == local_before
    assert quarantined(world.central) == []
    assert_verifies(world.central, alice)
    # the way out, pull then push: test_diverged_histories_merge_cleanly


def test_a_new_local_detector_is_pushed_and_created_remotely(world: World) -> None:
    laptop = world.laptop()
    with laptop.new_detector("rayonix-0042") as repo, repo.transaction("first constants") as tx:
        tx.add("pedestals", np.arange(64 * 64, dtype=np.float32).reshape(64, 64), begin_ns=T0)
        tx.add("geometry", GEOMETRY, begin_ns=T0)
    report = world.t.push(laptop)
    assert report.pushed == ["rayonix-0042"] and report.planned["rayonix-0042"][0] is None
    assert "rayonix-0042" in world.central.detectors()
    assert_same_constants(laptop, world.central, "rayonix-0042")
    assert [r.command for r in log(world.central, "rayonix-0042")] == ["push received"]
    assert_verifies(world.central)


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "non-atomic"])
def test_push_of_several_detectors_with_one_not_a_fast_forward(world: World, atomic: bool) -> None:
    alice = world.laptop("alice")
    add(world.central, CSPAD, "pixel_gain", np.ones(4, np.float32), T0)  # someone else's
    for det in DETS:
        add(alice, det, "pixel_bkgd", np.full(16, 3, np.float32), T1)
    before = heads(world.central)
    tracking = refs(alice, CSPAD)[remote_ref("origin")]

    if atomic:
        with pytest.raises(NotFastForward, match=r"cspad-0002.*pull first"):
            world.t.push(alice, atomic=True)
        assert heads(world.central) == before
        assert quarantined(world.central) == []
        return
    report = world.t.push(alice)
    assert report.pushed == [EPIX, JUNGFRAU]
    assert list(report.failed) == [CSPAD] and "pull first" in report.failed[CSPAD]
    assert heads(world.central) == {**before, EPIX: head(alice, EPIX), JUNGFRAU: head(alice, JUNGFRAU)}
    assert refs(alice, CSPAD)[remote_ref("origin")] == tracking  # not moved: nothing landed
    assert_verifies(world.central, alice)


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "non-atomic"])
def test_push_raced_by_another_pusher_is_decided_on_the_server(world: World, atomic: bool) -> None:
    """Someone moves jungfrau's remote HEAD after our push looked (between heads and update_refs):
    the server's compare-and-swap catches it; atomic leaves every detector as it was."""
    laptop = world.laptop()
    for det in DETS:
        add(laptop, det, "pixel_bkgd", np.full(70_000, 1, np.float32), T1)  # > 1 chunk each
    before = heads(world.central)
    raced: list[str] = []

    def race(phase: str, done: int, total: int) -> None:
        if not raced:
            raced.append(phase)
            add(world.central, JUNGFRAU, "pixel_mask", np.ones(3, np.uint8), T0)

    if atomic:
        with pytest.raises(RefConflict, match="jungfrau-0003"):
            world.t.push(laptop, atomic=True, progress=race)
        assert heads(world.central) == {**before, JUNGFRAU: head(world.central, JUNGFRAU)}
        assert head(world.central, JUNGFRAU) != before[JUNGFRAU]  # only the racer's commit
        for det in (CSPAD, EPIX):
            assert [r.command for r in log(world.central, det)][-1] != "push received"
    else:
        report = world.t.push(laptop, progress=race)
        assert report.pushed == [CSPAD, EPIX] and list(report.failed) == [JUNGFRAU]
        assert "pull first" in report.failed[JUNGFRAU]
        assert head(world.central, CSPAD) == head(laptop, CSPAD)
        assert refs(laptop, JUNGFRAU)[remote_ref("origin")] == before[JUNGFRAU]
    assert raced
    assert_verifies(world.central, laptop)


# -- merging ---------------------------------------------------------------------------------------


def test_diverged_histories_merge_cleanly(world: World) -> None:
    laptop = world.laptop()
    ours = add(laptop, EPIX, "pixel_gain", np.full((352, 384), 1.5, np.float32), T0)
    with laptop.repository(EPIX) as repo, repo.transaction("note") as tx:
        tx.set_pars({"operator": "alice"}, ctype="pedestals")
    theirs = add(world.central, EPIX, "pixel_rms", np.full((352, 384), 0.5, np.float64), T0)
    with world.central.repository(EPIX) as repo, repo.transaction("quality") as tx:
        tx.set_pars({"quality": "good"}, ctype="pedestals")
    our_head, their_head = head(laptop, EPIX), head(world.central, EPIX)

    report = world.t.pull(laptop)
    assert report.merged == [EPIX] and report.fast_forwarded == [] and report.resolved == {}
    with laptop.repository(EPIX) as repo:
        merge = repo.commit()
        assert merge.parents == (our_head, their_head)
        assert repo.get("pixel_gain", at_ns=T1).version == ours.version
        assert repo.get("pixel_rms", at_ns=T1).version == theirs.version
        assert repo.ctype_tree("pedestals").pars == {"operator": "alice", "quality": "good"}
        assert repo.log()[-1].command == "pull"
    assert_verifies(laptop)
    assert world.t.push(laptop).pushed == [EPIX]  # now a fast-forward of the remote
    assert head(world.central, EPIX) == head(laptop, EPIX)


def _pin_a_new_default(ws: Workspace, side: str) -> str:
    """Each side adds its own version to the same range and pins it: the defaults conflict."""
    value = 5.0 if side == "ours" else 6.0
    return add(ws, EPIX, "pedestals", np.full((352, 384), value, np.float32), T1).version


def _set_a_range_par(ws: Workspace, side: str) -> str:
    value = "fixed" if side == "ours" else "auto"
    with ws.repository(EPIX) as repo, repo.transaction("gain mode") as tx:
        tx.set_pars({"gain_mode": value}, ctype="pedestals", range=repo.locate("pedestals", at_ns=T1).range)
    return value


@pytest.mark.parametrize(
    ("what", "prefer"),
    [("default", "theirs"), ("par", "ours")],
    ids=["both-pin-a-default-then-theirs", "both-set-a-par-then-ours"],
)
def test_a_conflict_stops_the_pull_and_prefer_resolves_it(
    world: World, what: str, prefer: Literal["ours", "theirs"]
) -> None:
    laptop = world.laptop()
    change = _pin_a_new_default if what == "default" else _set_a_range_par
    ours, theirs = change(laptop, "ours"), change(world.central, "theirs")
    before = (head(laptop, EPIX), log(laptop, EPIX)[-1])

    with pytest.raises(MergeConflict) as info:
        world.t.pull(laptop)
    message = str(info.value)
    assert EPIX in message and "pedestals" in message
    assert ("default" in message) if what == "default" else ("gain_mode" in message)
    assert (head(laptop, EPIX), [r for r in log(laptop, EPIX) if r.ref == HEAD][-1]) == before
    assert_verifies(laptop)

    report = world.t.pull(laptop, prefer=prefer)
    assert report.merged == [EPIX] and len(report.resolved[EPIX]) == 1
    winner = ours if prefer == "ours" else theirs
    with laptop.repository(EPIX) as repo:
        assert len(repo.commit().parents) == 2
        tree = repo.locate("pedestals", at_ns=T1).tree
        assert (tree.default if what == "default" else tree.pars["gain_mode"]) == winner
    assert_verifies(laptop)


# -- partial clones --------------------------------------------------------------------------------


def test_a_partial_clone_holds_only_matching_payloads_and_later_pulls_keep_the_filter(
    world: World, tmp_path: Path
) -> None:
    ws, _ = world.t.clone(
        world.central.root,
        tmp_path / "partial",
        detectors=["epix*", "jungfrau-*"],
        ctypes=["pedestals", "pixel_status"],
        since_ns=T0 + 1,
    )
    assert ws.detectors() == [EPIX, JUNGFRAU]  # cspad: not matched
    spec = config.remotes(ws)["origin"]
    assert (spec.detectors, spec.ctypes, spec.since_ns) == (
        ("epix*", "jungfrau-*"),
        ("pedestals", "pixel_status"),
        T0 + 1,
    )
    assert np.array_equal(get(ws, EPIX, "pedestals", T1), get(world.central, EPIX, "pedestals", T1))
    assert np.array_equal(
        get(ws, JUNGFRAU, "pixel_status", T1), get(world.central, JUNGFRAU, "pixel_status", T1)
    )
    not_fetched = [(EPIX, "pixel_mask"), (EPIX, "common_mode"), (JUNGFRAU, "pixel_gain")]
    not_fetched.append((JUNGFRAU, "pedestals@old"))  # its range ends before --since
    for det, what in not_fetched:
        ctype, _, old = what.partition("@")
        with ws.repository(det) as repo:
            entry = repo.locate(ctype, at_ns=T_OLD if old else T1).entry  # the tree knows the version...
            assert not repo.store.has(entry.obj)  # ...but its payload was not fetched
    for det, ctype, at in [(EPIX, "pixel_mask", T1), (JUNGFRAU, "pedestals", T_OLD)]:
        with ws.repository(det) as repo, pytest.raises((ObjectNotFound, CorruptObject)):
            repo.get(ctype, at_ns=at)
    assert heads(ws) == {det: head(world.central, det) for det in (EPIX, JUNGFRAU)}

    wanted = add(world.central, EPIX, "pedestals", np.full((352, 384), 3, np.float32), T2)
    unwanted = add(world.central, EPIX, "pixel_mask", np.zeros((352, 384), bool), T2)
    add(world.central, CSPAD, "pixel_gain", np.ones(4, np.float32), T0)
    report = world.t.pull(ws)
    assert report.fast_forwarded == [EPIX]
    assert ws.detectors() == [EPIX, JUNGFRAU]
    with ws.repository(EPIX) as repo:
        assert repo.get("pedestals", at_ns=T2).version == wanted.version
        assert repo.locate("pixel_mask", at_ns=T2).version == unwanted.version
        assert not repo.store.has(unwanted.entry.obj)


# -- diff ------------------------------------------------------------------------------------------


def commit_other_payload(
    ws: Workspace, det: str, ctype: str, at: int, value: np.ndarray
) -> tuple[Located, VersionEntry]:
    """A hand-made commit: the same version key with another payload (what a diff calls "changed")."""
    with ws.repository(det) as repo:
        store, old_head, root = repo.store, repo.head(), repo.root()
        assert old_head is not None
        loc = repo.locate(ctype, at_ns=at)
        entry = VersionEntry.describe(
            value, tsprod=loc.entry.tsprod, author="tester", pars=dict(loc.entry.pars)
        )
        ct = repo.ctype_tree(ctype)
        with store.writing():
            store.put_payload(value)
            rid = store.put_object(replace(loc.tree, versions={**loc.tree.versions, loc.version: entry}))
            cid = store.put_object(
                replace(ct, ranges={**ct.ranges, loc.range: replace(ct.ranges[loc.range], tree=rid)})
            )
            root_id = store.put_object(replace(root, ctypes={**root.ctypes, ctype: cid}))
            commit = Commit(root_id, (old_head,), "tester", "host", now_ns(), "same version, other payload")
            new = store.put_object(commit)
            store.set_ref(HEAD, old_head, new, LogRecord(HEAD, old_head, new, "commit", commit.message))
    return loc, entry


def _laptop_with_changes(world: World) -> tuple[Workspace, dict[str, Any]]:
    laptop = world.laptop()
    added = add(laptop, EPIX, "pedestals", np.full((352, 384), 9, np.float32), T1)
    with laptop.repository(JUNGFRAU) as repo, repo.transaction("drop the old range") as tx:
        removed = repo.locate("pedestals", at_ns=T_OLD)
        tx.remove("pedestals", range=removed.range)
    old_cspad = get(laptop, CSPAD, "pedestals", T0)
    changed = commit_other_payload(laptop, CSPAD, "pedestals", T0, (old_cspad + 3).astype(np.int16))
    return laptop, {"added": added, "removed": removed, "changed": changed}


def _check_changes(report: sync.DiffReport, expect: dict[str, Any]) -> None:
    by = {(c.detname, c.ctype, c.kind): c for c in report.changes}
    added, removed = expect["added"], expect["removed"]
    (was, now) = expect["changed"]
    assert by[(EPIX, "pedestals", "added")].new.obj == added.entry.obj
    assert by[(EPIX, "pedestals", "added")].version == added.version
    default = by[(EPIX, "pedestals", "default")]
    assert default.new == added.version and default.old != added.version
    assert by[(JUNGFRAU, "pedestals", "removed")].old.obj == removed.entry.obj
    assert by[(JUNGFRAU, "pedestals", "removed")].range == removed.range
    change = by[(CSPAD, "pedestals", "changed")]
    assert (change.old.obj, change.new.obj, change.version) == (was.entry.obj, now.obj, was.version)
    assert summarize(report.changes) == {
        "added": 1,
        "removed": 1,
        "changed": 1,
        "default": 2,
        "pars": 0,
        "links": 0,
        "range": 1,  # the dropped range
        "ctype": 0,
        "detector": 0,
    }


def test_diff_between_workspaces_a_remote_name_and_a_url(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop, expect = _laptop_with_changes(world)
    world.t.dial_in_process(monkeypatch)
    options = {"remote_dcsync": world.t.remote_dcsync, "ssh_command": world.t.ssh_command}
    url = world.t.diff_url(world.central.root)
    local = sync.diff_sources(str(world.central.root), str(laptop.root))
    by_name = sync.diff_sources("origin", str(laptop.root), here=laptop)
    by_url = sync.diff_sources(url, str(laptop.root), values=True, **options)
    for report in (local, by_name, by_url):
        _check_changes(report, expect)
    assert local.to_json()["changes"] == by_name.to_json()["changes"]
    assert local.values == by_name.values == {}
    reverse = sync.diff_sources(str(laptop.root), str(world.central.root))
    assert summarize(reverse.changes) == summarize(local.changes)
    [gone] = [c for c in reverse.changes if c.kind == "removed"]
    assert gone.old.obj == expect["added"].entry.obj

    # --values: the changed payload, and the old and new defaults of the moved one, crossed and
    # were compared (nothing else: the removed range has no new side)
    compared = {(by_url.changes[i].detname, by_url.changes[i].kind): v for i, v in by_url.values.items()}
    assert sorted(compared) == [(CSPAD, "changed"), (EPIX, "default")]
    assert compared[(EPIX, "default")]["dtype_old"] == compared[(EPIX, "default")]["dtype_new"] == "<f4"
    stats = compared[(CSPAD, "changed")]
    index = next(i for i, c in enumerate(by_url.changes) if c.kind == "changed")
    assert stats["comparable"] and stats["max_abs_diff"] == 3.0 and stats["mean_diff"] == 3.0
    assert stats["changed_elements"] == 32 * 185 * 388
    assert stats["dtype_old"] == stats["dtype_new"] == "<i2"
    assert by_url.to_json()["changes"][index]["values"]["max_abs_diff"] == 3.0

    # without --values a remote side is its HEAD trees only: no payload crosses
    snap = compare.snapshot(url, **options)
    try:
        assert sorted(snap.roots) == DETS
        for store, _root in snap.roots.values():
            assert isinstance(store, MemoryStore)
            assert {store.kind_of(oid) for oid in store.object_ids()} == {"tree", "commit"}
            assert (
                len({store.kind_of(oid) for oid in store.object_ids() if store.kind_of(oid) == "commit"}) == 1
            )
    finally:
        snap.close()


# -- one connection, few round trips ---------------------------------------------------------------

FIFTY = [f"epix10ka-{i:04d}" for i in range(50)]


@pytest.fixture(scope="module")
def fifty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A central workspace of 50 detectors and an up-to-date clone of it."""
    root = tmp_path_factory.mktemp("fifty")
    central = Workspace.init(root / "central", kind="repository")
    for det in FIFTY:
        central.new_detector(det).close()
    shutil.copytree(central.root, root / "laptop")
    laptop = Workspace(root / "laptop")
    laptop.write_config({"kind": "local"})
    config.add_remote(laptop, config.RemoteConfig("origin", str(central.root)))
    for det in FIFTY:
        with laptop.repository(det) as repo, repo.store.writing():
            ref, tip = remote_ref("origin"), repo.head()
            repo.store.set_ref(ref, None, tip, LogRecord(ref, None, tip, "fetch"))
    return central.root, laptop.root


def test_an_up_to_date_pull_of_50_detectors_is_one_connection_and_two_requests(
    transport: Transport, fifty: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    central = Workspace(shutil.copytree(fifty[0], tmp_path / "central"))
    laptop = Workspace(shutil.copytree(fifty[1], tmp_path / "laptop"))
    transport.set_remote(laptop, central.root)
    channels: list[RecordingChannel] = []

    def record(channel: Channel) -> Channel:
        channels.append(RecordingChannel(channel))
        return channels[-1]

    real_open = client.open_channel
    monkeypatch.setattr(client, "open_channel", lambda url, **options: record(real_open(url, **options)))
    if transport.kind == "inprocess":
        monkeypatch.setattr(client, "open_channel", None)  # must not dial at all
        with in_process(central.root, record) as conn:
            report = sync.pull(laptop, conn=conn)
    else:
        report = sync.pull(laptop)
    assert report.fast_forwarded == report.merged == [] and report.fetch.updated == {}
    assert len(channels) == 1  # one connection, one handshake
    assert channels[0].methods == ["hello", "heads"]
    assert channels[0].bytes_read < 20_000


# -- the command line ------------------------------------------------------------------------------


def dcsync_cli(*args: str | Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dcsync", *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == expect, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.mark.parametrize("kind", ["pipe", "ssh"])
def test_the_cli_clones_pulls_pushes_diffs_and_reports_status(
    kind: str, request: pytest.FixtureRequest, base: tuple[Path, Path], tmp_path: Path
) -> None:
    t = make_transport(kind, request)
    world = World(t, base, tmp_path)
    url = t.url(world.central.root)
    remote = ["--remote-dcsync", t.remote_dcsync or f"{sys.executable} -m dcsync"]
    laptop = tmp_path / "laptop"
    cloned = json.loads(dcsync_cli("clone", url, laptop, *remote, "--json").stdout)
    assert Path(cloned["workspace"]) == laptop.resolve() and sorted(cloned["fast_forwarded"]) == DETS
    ws = Workspace(laptop)

    central_new = add(world.central, EPIX, "pedestals", np.full((352, 384), 4, np.float32), T2)
    pulled = json.loads(dcsync_cli("-C", laptop, "pull", "--json").stdout)
    assert pulled["fast_forwarded"] == [EPIX]

    add(ws, CSPAD, "pixel_gain", np.ones(8, np.float32), T0)
    pushed = json.loads(dcsync_cli("-C", laptop, "push", "-m", "gain", "--json").stdout)
    assert pushed["pushed"] == [CSPAD] and pushed["failed"] == {}
    status = json.loads(dcsync_cli("-C", laptop, "status", "--json").stdout)
    assert {row["detector"]: (row["ahead"], row["behind"]) for row in status} == dict.fromkeys(DETS, (0, 0))

    add(world.central, JUNGFRAU, "pixel_mask", np.ones(8, np.uint8), T0)
    add(ws, JUNGFRAU, "pixel_bkgd", np.ones(8, np.float32), T0)
    add(ws, EPIX, "pixel_bkgd", np.ones(8, np.float32), T0)
    mixed = dcsync_cli("-C", laptop, "push", expect=7).stdout  # one refused: exit 7, the other lands
    assert f"{EPIX}: " in mixed and " pushed" in mixed
    assert f"{JUNGFRAU}: refused: " in mixed and "pull first" in mixed
    assert head(world.central, EPIX) == head(ws, EPIX)
    diff = json.loads(dcsync_cli("diff", url, laptop, *remote, "--json").stdout)
    kinds = {(c["detector"], c["ctype"], c["kind"]) for c in diff["changes"]}
    assert (JUNGFRAU, "pixel_mask", "removed") in kinds and (JUNGFRAU, "pixel_bkgd", "added") in kinds
    assert central_new.entry.obj not in json.dumps(diff)  # both sides have it: not a difference


def test_a_relative_local_url_is_stored_absolute(
    base: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dcsync clone ../central laptop``, then ``dcsync pull`` from anywhere: origin must not
    depend on the directory the clone ran in."""
    shutil.copytree(base[0], tmp_path / "central")
    monkeypatch.chdir(tmp_path)
    with in_process(tmp_path / "central") as conn:
        ws, _ = sync.clone("central", "laptop", conn=conn)
    assert config.remotes(ws)["origin"].url == str(tmp_path / "central")
    monkeypatch.chdir(ws.root)
    assert sync.fetch(ws).updated == {}  # dials python -m dcsync serve --root <absolute path>
