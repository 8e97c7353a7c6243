"""Sync when things go wrong: a server killed mid-transfer, connections cut at arbitrary bytes, a
corrupted chunk, a full remote disk, a missing or chatty remote dcsync, unreachable or unknown SSH
hosts, and hand-made requests for paths outside the served root.

After every failure: each repository on both sides verifies, nothing is half-visible (HEAD and
``remotes/*`` are the old or the new commit, never one whose objects are missing), and re-running
the same command completes without re-sending what already arrived (checked on the wire with
:class:`helpers.channels.RecordingChannel`). The long ones are marked ``slow``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.channels import (
    CorruptingChannel,
    CuttingChannel,
    Direction,
    RecordingChannel,
    in_process,
)
from sshd import SSHServer

from dcsync import sync
from dcsync.errors import (
    AccessDenied,
    ConnectionFailed,
    CorruptObject,
    DcsyncError,
    HostKeyError,
    InvalidName,
    ProtocolError,
    RemoteError,
    StorageFull,
)
from dcsync.model.hashing import ObjectId
from dcsync.model.times import parse_time
from dcsync.store.refs import HEAD, remote_ref
from dcsync.sync.client import Connection
from dcsync.transport.base import Channel
from dcsync.transport.local import SubprocessChannel
from dcsync.workspace import config
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

T0 = parse_time("2024-01-01T00:00:00Z")
T1 = parse_time("2024-06-01T00:00:00Z")
DET = "jungfrau-0100"
HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PYTHON_DCSYNC = f"{shlex.quote(sys.executable)} -m dcsync"


@pytest.fixture(autouse=True)
def _small_chunks_and_no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(32 * 1024))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


# -- helpers ---------------------------------------------------------------------------------------


def serve_channel(root: Path, *, close_timeout: float = 0.3) -> SubprocessChannel:
    """``python -m dcsync serve --stdio`` for ``root`` over pipes (what a local path URL runs),
    quick to stop once a test has cut it."""
    return SubprocessChannel(
        [sys.executable, "-m", "dcsync", "serve", "--stdio", "--root", str(root)],
        description=str(root),
        close_timeout=close_timeout,
    )


def connect(root: Path, wrap: Callable[[Channel], Channel] = lambda c: c) -> Connection:
    return Connection(wrap(serve_channel(root)))


def arrays(count: int, shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(count)]


def commit_arrays(ws: Workspace, values: list[np.ndarray], begin: int) -> ObjectId:
    with ws.repository(DET) as repo, repo.transaction(f"{len(values)} constants") as tx:
        for i, value in enumerate(values):
            tx.add(f"pixel_c{i:02d}", value, begin_ns=begin, new_ctype=True)
    assert tx.commit_id is not None
    return tx.commit_id


def refs_of(ws: Workspace) -> dict[str, dict[str, ObjectId]]:
    out = {}
    for det in ws.detectors():
        with ws.repository(det) as repo:
            out[det] = repo.store.refs()
    return out


def quarantined_ids(ws: Workspace) -> set[str]:
    """Objects that arrived complete (and verified) but are not in a repository yet."""
    incoming = ws.root / ".dcsync" / "incoming"
    if not incoming.exists():
        return set()
    return {p.name.split(".")[0] for p in incoming.rglob("*") if p.is_file() and not p.name.startswith(".")}


def assert_consistent(ws: Workspace, allowed: dict[str, set[ObjectId | None]]) -> None:
    """Every repository verifies and each ref is one of ``allowed[ref]``, its objects present."""
    for det in ws.detectors():
        report = verify_path(ws.detector_path(det))
        assert report.ok, (ws.root, det, report.problems)
        with ws.repository(det) as repo:
            refs = repo.store.refs()
            for ref in allowed:
                assert refs.get(ref) in allowed[ref], (ws.root, det, ref, refs.get(ref), allowed[ref])
            for target in refs.values():
                assert repo.store.has(target)
                assert repo.root(target) is not None


def assert_nothing_cloned(dest: Path) -> None:
    """A clone that could not connect leaves nothing, so the corrected command runs as is."""
    assert not dest.exists()


def ssh_home(server: SSHServer, *, known_hosts: bool = True) -> None:
    dot_ssh = Path(os.environ["HOME"]) / ".ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    if known_hosts:
        shutil.copy(server.known_hosts, dot_ssh / "known_hosts")
    shutil.copy(server.client_key, dot_ssh / "id_ed25519")
    (dot_ssh / "id_ed25519").chmod(0o600)


# -- the data: one detector; the remote ahead (for pulls) or the laptop ahead (for pushes) --------


@dataclass(frozen=True)
class Sides:
    central0: Path  # the remote before
    central1: Path  # the remote after someone committed `added` to it
    laptop0: Path  # a clone of central0
    laptop1: Path  # laptop0 after committing `added` locally
    old: ObjectId  # HEAD of central0 and laptop0
    new_remote: ObjectId  # HEAD of central1
    new_local: ObjectId  # HEAD of laptop1

    def copy(self, tmp: Path, central: Path, laptop: Path) -> tuple[Workspace, Workspace]:
        shutil.copytree(central, tmp / "central")
        shutil.copytree(laptop, tmp / "laptop")
        ws = Workspace(tmp / "laptop")
        config = ws.config()
        config["remotes"]["origin"]["url"] = str(tmp / "central")
        ws.write_config(config)
        return Workspace(tmp / "central"), ws


def build_sides(root: Path, added: list[np.ndarray]) -> Sides:
    central = Workspace.init(root / "central0", kind="experiment")
    with central.new_detector(DET) as repo, repo.transaction("first") as tx:
        tx.add("pedestals", np.zeros((4, 4), np.float32), begin_ns=T0)
    with in_process(central.root) as conn:
        laptop, _ = sync.clone(str(central.root), root / "laptop0", conn=conn)
    with laptop.repository(DET) as repo:
        old = repo.head()
    assert old is not None
    shutil.copytree(central.root, root / "central1")
    new_remote = commit_arrays(Workspace(root / "central1"), added, T0)
    shutil.copytree(laptop.root, root / "laptop1")
    new_local = commit_arrays(Workspace(root / "laptop1"), added, T1)
    return Sides(central.root, root / "central1", laptop.root, root / "laptop1", old, new_remote, new_local)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Sides:
    """Six 256 KiB arrays: dozens of chunk frames, several objects to resume between."""
    return build_sides(tmp_path_factory.mktemp("medium"), arrays(6, (256, 256), seed=3))


# -- connections cut at arbitrary bytes ------------------------------------------------------------


def run_pull(laptop: Workspace, central: Path, wrap: Callable[[Channel], Channel]) -> Any:
    with connect(central, wrap) as conn:
        return sync.pull(laptop, conn=conn)


def run_push(laptop: Workspace, central: Path, wrap: Callable[[Channel], Channel]) -> Any:
    with connect(central, wrap) as conn:
        return sync.push(laptop, conn=conn)


def measure(sides: Sides, tmp: Path, push: bool) -> RecordingChannel:
    """The bytes a complete pull (or push) moves each way, on throwaway copies."""
    central, laptop = sides.copy(
        tmp, sides.central0 if push else sides.central1, sides.laptop1 if push else sides.laptop0
    )
    recorded: list[RecordingChannel] = []

    def record(channel: Channel) -> Channel:
        recorded.append(RecordingChannel(channel))
        return recorded[-1]

    (run_push if push else run_pull)(laptop, central.root, record)
    return recorded[0]


def cut_then_rerun(sides: Sides, tmp: Path, push: bool, direction: Direction, limit: int) -> None:
    """Cut a pull (or push) after ``limit`` bytes, check both sides, re-run it, check again."""
    central, laptop = sides.copy(
        tmp, sides.central0 if push else sides.central1, sides.laptop1 if push else sides.laptop0
    )
    old, new = sides.old, sides.new_local if push else sides.new_remote
    run = run_push if push else run_pull
    cutter: list[CuttingChannel] = []

    def cut(channel: Channel) -> Channel:
        cutter.append(CuttingChannel(channel, limit, direction))
        return cutter[-1]

    try:
        run(laptop, central.root, cut)
    except RemoteError as exc:
        assert cutter and cutter[0].cut, f"failed without a cut: {exc}"
    # nothing half-visible: old or new, every object of it present, everything verifies
    assert_consistent(central, {HEAD: {old, new} if push else {new}})
    laptop_heads = {new} if push else {old, new}
    assert_consistent(laptop, {HEAD: laptop_heads, remote_ref("origin"): {old, new}})

    already_here = quarantined_ids(central if push else laptop)
    recorded: list[RecordingChannel] = []

    def record(channel: Channel) -> Channel:
        recorded.append(RecordingChannel(channel))
        return recorded[-1]

    run(laptop, central.root, record)
    sent_again = set(recorded[0].uploaded if push else recorded[0].requested)
    assert not sent_again & already_here, "objects that had arrived were sent again"
    assert_consistent(central, {HEAD: {new}})
    assert_consistent(laptop, {HEAD: {new}, remote_ref("origin"): {new}})
    assert quarantined_ids(central) == quarantined_ids(laptop) == set()


def cut_points(sides: Sides, tmp: Path, push: bool, count: int, seed: int) -> list[tuple[Direction, int]]:
    """Random offsets in the bulk direction, plus the last bytes of the other (a lost final answer)."""
    full = measure(sides, tmp / "measure", push)
    bulk, back = ("write", "read") if push else ("read", "write")
    bulk_total = full.bytes_written if push else full.bytes_read
    back_total = full.bytes_read if push else full.bytes_written
    rnd = random.Random(seed)
    points: list[tuple[Direction, int]] = [(bulk, rnd.randrange(1, bulk_total)) for _ in range(count)]  # type: ignore[misc]
    return [*points, (back, back_total - 1), (bulk, 3)]  # type: ignore[list-item]


@pytest.mark.parametrize("push", [False, True], ids=["pull", "push"])
def test_a_connection_cut_at_a_few_offsets_then_rerun(medium: Sides, tmp_path: Path, push: bool) -> None:
    for i, (direction, limit) in enumerate(cut_points(medium, tmp_path, push, count=1, seed=11)):
        cut_then_rerun(medium, tmp_path / f"cut{i}", push, direction, limit)


@pytest.mark.slow
@pytest.mark.parametrize("push", [False, True], ids=["pull", "push"])
def test_a_connection_cut_at_many_random_offsets_then_rerun(
    medium: Sides, tmp_path: Path, push: bool
) -> None:
    for i, (direction, limit) in enumerate(cut_points(medium, tmp_path, push, count=25, seed=12)):
        cut_then_rerun(medium, tmp_path / f"cut{i}", push, direction, limit)


# -- the server killed mid-transfer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Sides:
    """Eight 8 MiB arrays: 64 MiB, so a transfer is long enough to kill in the middle."""
    return build_sides(tmp_path_factory.mktemp("large"), arrays(8, (1024, 2048), seed=4))


@contextlib.contextmanager
def kill_when_quarantined(channel: SubprocessChannel, incoming: Path, arrays: int) -> Iterator[list[int]]:
    """SIGKILL the server process once ``arrays`` complete arrays have arrived in ``incoming``."""
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if (
                incoming.exists()
                and len([p for p in incoming.rglob("*.npy") if not p.name.startswith(".")]) >= arrays
            ):
                os.kill(channel.pid, signal.SIGKILL)
                killed.append(channel.pid)
                return
            time.sleep(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join()


def recording(channel: Channel, into: list[RecordingChannel]) -> Channel:
    into.append(RecordingChannel(channel))
    return into[-1]


@pytest.mark.slow
def test_the_server_killed_in_the_middle_of_a_clone_then_the_clone_resumes(
    large: Sides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Object by object (as a clone with a filter, or from a partial clone, goes)."""
    monkeypatch.setenv("DCSYNC_CHUNK", str(256 * 1024))
    monkeypatch.setenv("DCSYNC_WHOLE_FILES", "0")
    central = Workspace(shutil.copytree(large.central1, tmp_path / "central"))
    dest = tmp_path / "laptop"
    channel = serve_channel(central.root)
    with (
        kill_when_quarantined(channel, dest / ".dcsync" / "incoming", 3) as killed,
        pytest.raises(RemoteError),
        Connection(channel) as conn,
    ):
        sync.clone(str(central.root), dest, conn=conn)
    assert killed, "the clone finished before the kill"
    assert channel.returncode == -signal.SIGKILL
    laptop = Workspace(dest)
    assert_consistent(laptop, {HEAD: {large.new_remote}})  # no detector yet, or complete
    here = quarantined_ids(laptop)
    assert len(here) >= 3

    recorded: list[RecordingChannel] = []
    with connect(central.root, lambda c: recording(c, recorded)) as conn:
        _, report = sync.clone(str(central.root), dest, conn=conn)  # the same command: it resumes
    assert report.fast_forwarded == [DET]
    assert not set(recorded[0].requested) & here, "objects that had arrived were sent again"
    assert recorded[0].bytes_read < 6.5 * 8 * 2**20  # the (at least two) big arrays that arrived stayed
    assert_consistent(laptop, {HEAD: {large.new_remote}, remote_ref("origin"): {large.new_remote}})
    assert quarantined_ids(laptop) == set()


@pytest.mark.slow
def test_the_server_killed_in_the_middle_of_a_whole_file_clone_then_it_resumes_at_that_byte(
    large: Sides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(256 * 1024))
    central = Workspace(shutil.copytree(large.central1, tmp_path / "central"))
    size = central.detector_path(DET).stat().st_size
    dest = tmp_path / "laptop"
    part = dest / ".dcsync" / "incoming" / f"{DET}.h5.part"
    channel = serve_channel(central.root)
    killed: list[int] = []

    def kill_past_a_third(phase: str, done: int, total: int) -> None:
        if not killed and part.exists() and part.stat().st_size > size // 3:
            os.kill(channel.pid, signal.SIGKILL)
            killed.append(part.stat().st_size)

    with pytest.raises(RemoteError), Connection(channel) as conn:
        sync.clone(str(central.root), dest, conn=conn, progress=kill_past_a_third)
    assert killed and channel.returncode == -signal.SIGKILL
    assert Workspace(dest).detectors() == []  # nothing half-visible: the copy is not in place
    kept = part.stat().st_size
    assert size // 3 < kept < size

    recorded: list[RecordingChannel] = []
    with connect(central.root, lambda c: recording(c, recorded)) as conn:
        _, report = sync.clone(str(central.root), dest, conn=conn)  # the same command: it resumes
    assert report.fetch.files == 1 and report.fast_forwarded == [DET]
    [(det, offset, token)] = recorded[0].files_requested
    assert (det, offset) == (DET, kept) and token
    assert recorded[0].bytes_read < size - kept + 2**20  # only the rest of the file came
    laptop = Workspace(dest)
    assert_consistent(laptop, {HEAD: {large.new_remote}, remote_ref("origin"): {large.new_remote}})
    assert not part.exists()


def test_a_whole_file_that_changed_on_the_server_starts_over(medium: Sides, tmp_path: Path) -> None:
    """A resume token that no longer names the server's file: the server sends from byte 0."""
    central = Workspace(shutil.copytree(medium.central1, tmp_path / "central"))
    dest = tmp_path / "laptop"
    incoming = dest / ".dcsync" / "incoming"
    Workspace.init(dest, kind="local")
    config.add_remote(Workspace(dest), config.RemoteConfig("origin", str(central.root)))
    incoming.mkdir(parents=True)
    (incoming / f"{DET}.h5.part").write_bytes(b"stale bytes of an older snapshot")
    (incoming / f"{DET}.h5.token").write_text("1-2-3")
    recorded: list[RecordingChannel] = []
    with connect(central.root, lambda c: recording(c, recorded)) as conn:
        report = sync.pull(Workspace(dest), conn=conn)
    assert recorded[0].files_requested == [[DET, 32, "1-2-3"]]
    assert report.fetch.files == 1
    assert_consistent(Workspace(dest), {HEAD: {medium.new_remote}})


@pytest.mark.slow
def test_the_server_killed_in_the_middle_of_a_push_then_push_resumes(
    large: Sides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_CHUNK", str(256 * 1024))
    central, laptop = large.copy(tmp_path, large.central0, large.laptop1)
    channel = serve_channel(central.root)
    with (
        kill_when_quarantined(channel, central.root / ".dcsync" / "incoming", 3) as killed,
        pytest.raises(RemoteError),
        Connection(channel) as conn,
    ):
        sync.push(laptop, conn=conn)
    assert killed, "the push finished before the kill"
    assert_consistent(central, {HEAD: {large.old}})
    assert_consistent(laptop, {HEAD: {large.new_local}, remote_ref("origin"): {large.old}})
    here = quarantined_ids(central)
    assert len(here) >= 3

    recorded: list[RecordingChannel] = []
    with connect(central.root, lambda c: recording(c, recorded)) as conn:
        report = sync.push(laptop, conn=conn)
    assert report.pushed == [DET]
    assert not set(recorded[0].uploaded) & here, "objects that had arrived were sent again"
    assert recorded[0].bytes_written < 5.5 * 8 * 2**20  # the three arrays that arrived stayed
    assert_consistent(central, {HEAD: {large.new_local}})
    assert_consistent(laptop, {HEAD: {large.new_local}, remote_ref("origin"): {large.new_local}})
    assert quarantined_ids(central) == set()


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Sides:
    """One 64 MiB array (a Jungfrau pedestal set is bigger): a kill lands inside the object."""
    return build_sides(tmp_path_factory.mktemp("huge"), arrays(1, (4096, 4096), seed=5))


@pytest.mark.slow
def test_the_server_killed_inside_one_huge_array_then_push_completes(
    huge: Sides, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects are the unit of resumption: a half-received array is dropped (its .part file goes
    once its writer is dead) and sent again whole; everything else is as after any cut."""
    monkeypatch.setenv("DCSYNC_CHUNK", str(256 * 1024))
    central, laptop = huge.copy(tmp_path, huge.central0, huge.laptop1)
    incoming = central.root / ".dcsync" / "incoming"
    channel = serve_channel(central.root)
    killed: list[int] = []

    def kill_at_16_mib(phase: str, done: int, total: int) -> None:
        parts = list(incoming.rglob(".*.part")) if incoming.exists() else []
        if not killed and parts and parts[0].stat().st_size > 16 * 2**20:
            os.kill(channel.pid, signal.SIGKILL)
            killed.append(done)

    with pytest.raises(RemoteError), Connection(channel) as conn:
        sync.push(laptop, conn=conn, progress=kill_at_16_mib)
    assert killed and killed[0] < 64 * 2**20
    assert_consistent(central, {HEAD: {huge.old}})
    assert_consistent(laptop, {HEAD: {huge.new_local}, remote_ref("origin"): {huge.old}})
    assert list(incoming.rglob(".*.part"))  # the dead server's partial object, not an object

    with connect(central.root) as conn:
        assert sync.push(laptop, conn=conn).pushed == [DET]
    assert_consistent(central, {HEAD: {huge.new_local}})
    assert_consistent(laptop, {HEAD: {huge.new_local}, remote_ref("origin"): {huge.new_local}})
    assert not incoming.exists() or not list(incoming.rglob("*"))


# -- corruption on the wire ------------------------------------------------------------------------


def test_a_corrupted_chunk_on_the_way_down_is_refused_and_nothing_is_stored(
    medium: Sides, tmp_path: Path
) -> None:
    central, laptop = medium.copy(tmp_path, medium.central1, medium.laptop0)
    before = refs_of(laptop)
    corrupter: list[CorruptingChannel] = []

    def corrupt(channel: Channel) -> Channel:
        corrupter.append(CorruptingChannel(channel, "read", nth=5))
        return corrupter[-1]

    with pytest.raises(CorruptObject, match="arrived corrupt"):
        run_pull(laptop, central.root, corrupt)
    assert corrupter[0].corrupted_id is not None
    assert corrupter[0].corrupted_id not in quarantined_ids(laptop)
    assert refs_of(laptop) == before
    assert_consistent(laptop, {HEAD: {medium.old}})
    assert run_pull(laptop, central.root, lambda c: c).fast_forwarded == [DET]  # a clean line: fine
    assert_consistent(laptop, {HEAD: {medium.new_remote}})


def test_a_corrupted_chunk_on_the_way_up_is_refused_and_nothing_is_stored(
    medium: Sides, tmp_path: Path
) -> None:
    central, laptop = medium.copy(tmp_path, medium.central0, medium.laptop1)
    before = (refs_of(central), refs_of(laptop))
    corrupter: list[CorruptingChannel] = []

    def corrupt(channel: Channel) -> Channel:
        corrupter.append(CorruptingChannel(channel, "write", nth=5))
        return corrupter[-1]

    with pytest.raises(CorruptObject, match="arrived corrupt"):
        run_push(laptop, central.root, corrupt)
    assert corrupter[0].corrupted_id is not None
    assert corrupter[0].corrupted_id not in quarantined_ids(central)
    assert (refs_of(central), refs_of(laptop)) == before
    assert_consistent(central, {HEAD: {medium.old}})
    assert run_push(laptop, central.root, lambda c: c).pushed == [DET]
    assert_consistent(central, {HEAD: {medium.new_local}})


# -- a full disk on the remote ---------------------------------------------------------------------


def fsize_remote(laptop: Workspace, limit: int) -> None:
    """Point origin at the same path, served under a file-size limit (a disk that is full)."""
    config = laptop.config()
    helper = shlex.quote(str(HELPERS / "fsize_serve.py"))
    config["remotes"]["origin"]["remote_dcsync"] = f"{shlex.quote(sys.executable)} {helper} {limit}"
    laptop.write_config(config)


@pytest.mark.parametrize("where", ["quarantine", "repository", "repository-atomic"])
def test_a_full_remote_disk_is_reported_and_nothing_changes(
    medium: Sides, tmp_path: Path, where: str
) -> None:
    central, laptop = medium.copy(tmp_path, medium.central0, medium.laptop1)
    size = central.detector_path(DET).stat().st_size
    # 100 KiB: the first 256 KiB array cannot even be received; size + 512 KiB: all six arrive,
    # but the repository file cannot grow by their 1.5 MiB
    fsize_remote(laptop, 100 * 1024 if where == "quarantine" else size + 512 * 1024)
    before = (refs_of(central), refs_of(laptop))
    if where == "repository":
        report = sync.push(laptop)
        assert report.pushed == [] and list(report.failed) == [DET]
        assert "full" in report.failed[DET] or "limit" in report.failed[DET], report.failed
    else:
        with pytest.raises(StorageFull):
            sync.push(laptop, atomic=where == "repository-atomic")
    assert (refs_of(central), refs_of(laptop)) == before
    assert_consistent(central, {HEAD: {medium.old}})
    assert_consistent(laptop, {HEAD: {medium.new_local}, remote_ref("origin"): {medium.old}})
    assert central.detector_path(DET).stat().st_size <= size + 512 * 1024


# -- remote dcsync missing or chatty; SSH hosts unreachable or unknown -----------------------------


def remote_url(kind: str, request: pytest.FixtureRequest, path: Path) -> str:
    if kind == "pipe":
        return str(path)
    server: SSHServer = request.getfixturevalue("sshd")
    ssh_home(server)
    return server.url(str(path), alias=False)


@pytest.mark.parametrize("kind", ["pipe", "ssh"])
def test_a_missing_remote_dcsync_is_named(
    kind: str, request: pytest.FixtureRequest, medium: Sides, tmp_path: Path
) -> None:
    url = remote_url(kind, request, medium.central0)
    with pytest.raises(RemoteError, match="/nonexistent/dcsync"):
        sync.clone(url, tmp_path / "laptop", remote_dcsync="/nonexistent/dcsync")
    assert_nothing_cloned(tmp_path / "laptop")


# A server that refuses at once, as a forced command does for a key that may not run dcsync: it
# closes its input, says why in an error frame and exits, before the client's hello is out.
REFUSING_SERVER = """
import os, sys
from dcsync.errors import AccessDenied
from dcsync.sync.protocol import PREAMBLE, error_to_wire, write_frame
os.close(0)  # the client's hello can no longer be written: the refusal must still be read
out = sys.stdout.buffer
out.write(PREAMBLE)
write_frame(out.write, {"i": 0, "e": error_to_wire(AccessDenied("this key may not"))})
out.flush()
"""


@pytest.mark.parametrize("kind", ["pipe", "ssh"])
def test_a_refusal_sent_before_the_hello_is_read_is_reported(
    kind: str, request: pytest.FixtureRequest, medium: Sides, tmp_path: Path
) -> None:
    """Before, the hello's failed write reported 'connection lost' and the refusal went unread."""
    url = remote_url(kind, request, medium.central0)
    script = tmp_path / "refuse.py"
    script.write_text(REFUSING_SERVER)
    refusing = f"sh -c 'exec {shlex.quote(sys.executable)} {shlex.quote(str(script))}' sh"
    for _ in range(5):  # the write fails whatever the timing: the server closed its input first
        with pytest.raises(AccessDenied, match="this key may not"):
            sync.clone(url, tmp_path / "laptop", remote_dcsync=refusing)
        assert_nothing_cloned(tmp_path / "laptop")


@pytest.mark.parametrize("kind", ["pipe", "ssh"])
def test_a_login_banner_on_stdout_is_reported_not_misparsed(
    kind: str, request: pytest.FixtureRequest, medium: Sides, tmp_path: Path
) -> None:
    url = remote_url(kind, request, medium.central0)
    chatty = f"sh -c 'echo Welcome to the beamline; exec {PYTHON_DCSYNC} \"$@\"' sh"
    with pytest.raises(ProtocolError, match="Welcome to the beamline") as info:
        sync.clone(url, tmp_path / "laptop", remote_dcsync=chatty)
    assert "banner" in str(info.value)
    assert_nothing_cloned(tmp_path / "laptop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("binary", [False, True], ids=["paramiko", "ssh-binary"])
def test_ssh_to_a_closed_port_is_connection_failed(sshd: SSHServer, tmp_path: Path, binary: bool) -> None:
    ssh_home(sshd)
    port = free_port()
    config = tmp_path / "ssh_config"
    config.write_text(sshd.config_block("closed", Port=str(port)))
    url = "ssh://closed/calib" if binary else f"ssh://{sshd.user}@127.0.0.1:{port}/calib"
    with pytest.raises(ConnectionFailed, match=r"refused|Connection refused") as info:
        sync.clone(
            url,
            tmp_path / "laptop",
            remote_dcsync=sshd.remote_dcsync,
            ssh_command=f"ssh -F {config}" if binary else None,
        )
    assert binary or str(port) in str(info.value)
    assert_nothing_cloned(tmp_path / "laptop")


@pytest.mark.parametrize("binary", [False, True], ids=["paramiko", "ssh-binary"])
def test_an_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path, binary: bool) -> None:
    ssh_home(sshd, known_hosts=False)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(sshd.config_block("unknown", UserKnownHostsFile=str(empty)))
    url = "ssh://unknown/calib" if binary else sshd.url("/calib", alias=False)
    with pytest.raises(HostKeyError):
        sync.clone(
            url,
            tmp_path / "laptop",
            remote_dcsync=sshd.remote_dcsync,
            ssh_command=f"ssh -F {config}" if binary else None,
        )
    assert_nothing_cloned(tmp_path / "laptop")
    assert empty.read_text() == ""  # nothing accepted behind the user's back


# -- requests for paths outside the served root ------------------------------------------------------

OUTSIDE = ["../outside-1", "../../etc-passwd", "jungfrau/../../x-1", "/tmp/evil-1", "jungfrau-0100/../x-2"]
NO_OBJECT = "0" * 32


@pytest.mark.parametrize("kind", ["inprocess", "pipe"])
def test_requests_naming_paths_outside_the_served_root_are_refused(
    kind: str, medium: Sides, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(medium.central0, tmp_path / "served" / "central"))
    before = sorted(tmp_path.rglob("*"))

    def open_conn() -> Connection:
        return in_process(root) if kind == "inprocess" else connect(root)

    with open_conn() as conn:
        assert conn.heads(["../*", "/*", "*/../*"]).heads == {}
        for name in OUTSIDE:
            for method, args in [
                ("negotiate", {"wants": [{"detector": name, "want": NO_OBJECT, "have": []}]}),
                ("get_objects", {"items": [[name, NO_OBJECT]]}),
                ("have", {"items": [[name, NO_OBJECT]]}),
                ("update_refs", {"updates": [{"detector": name, "old": None, "new": NO_OBJECT}]}),
                ("update_refs", {"updates": [{"detector": name, "new": NO_OBJECT}], "atomic": True}),
            ]:
                with pytest.raises(InvalidName, match="invalid detector name"):
                    conn._request(method, args)  # requests no typed method would send
        assert conn.heads().heads == {DET: medium.old}  # the session is still usable
    for name in OUTSIDE[:2]:
        with open_conn() as conn, pytest.raises(InvalidName, match="invalid detector name"):
            conn.put_objects(name, [{"h": {"id": NO_OBJECT, "k": "text", "n": 1}}, {"c": b"x"}])
    after = sorted(tmp_path.rglob("*"))
    assert after == before
    with pytest.raises(DcsyncError):
        Workspace(root).detector_path("../outside-1")
