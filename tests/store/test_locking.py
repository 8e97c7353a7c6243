"""The repository lock under contention and crashes, with real threads and processes (no mocks)."""

from __future__ import annotations

import contextlib
import getpass
import inspect
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import dcsync
from dcsync.errors import LockError, LockTimeout, NotMyLock, UsageError
from dcsync.store.locking import FileLock, LockInfo, _break, break_lock, lock_status

HOST = socket.gethostname()
REPO_ROOT = str(Path(dcsync.__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DCSYNC_"):
            monkeypatch.delenv(name)
    yield
    beating = [t.name for t in threading.enumerate() if t.name.startswith("dcsync-lock-heartbeat")]
    assert beating == [], "a heartbeat thread outlived its lock"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "calib.h5"


def lock_file(repo: Path) -> Path:
    return Path(str(repo) + ".lock")


def write_foreign_lock(
    repo: Path, *, host: str = HOST, pid: int = 1, start: int | None = None, age: float = 0.0
) -> None:
    """A lock file as another holder would leave it, with its mtime ``age`` seconds in the past."""
    record: dict[str, object] = {
        "user": "alice",
        "host": host,
        "pid": pid,
        "start": time.time_ns() if start is None else start,
        "token": "f" * 32,
        "command": "dcsync commit elsewhere",
    }
    path = lock_file(repo)
    path.write_text(json.dumps(record))
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def python(code: str, *args: str, stdout: int | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, stdout=stdout)


def leftovers(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.parent.iterdir() if ".lock" in p.name)


# --- basics ---------------------------------------------------------------------------------------


def test_acquire_release_and_content(repo: Path) -> None:
    lock = FileLock(repo, command="dcsync commit test")
    before = time.time_ns()
    lock.acquire()
    try:
        assert lock.is_held
        lock.verify()
        record = json.loads(lock_file(repo).read_text())
        assert set(record) == {"user", "host", "pid", "start", "token", "command"}
        assert record["user"] == getpass.getuser()
        assert record["host"] == HOST
        assert record["pid"] == os.getpid()
        assert before <= record["start"] <= time.time_ns()
        assert len(record["token"]) == 32 and int(record["token"], 16) >= 0
        assert record["command"] == "dcsync commit test"
    finally:
        lock.release()
    assert not lock.is_held
    assert leftovers(repo) == []


def test_tokens_differ_between_acquisitions(repo: Path) -> None:
    lock = FileLock(repo)
    tokens = []
    for _ in range(2):
        with lock:
            tokens.append(json.loads(lock_file(repo).read_text())["token"])
    assert tokens[0] != tokens[1]


def test_context_managers_release_on_error(repo: Path) -> None:
    with pytest.raises(RuntimeError), FileLock(repo):
        assert lock_file(repo).exists()
        raise RuntimeError("boom")
    assert not lock_file(repo).exists()
    with FileLock(repo).held(timeout=1) as lock:
        assert lock.is_held and lock_file(repo).exists()
    assert not lock_file(repo).exists()


def test_double_acquire_and_stray_release_raise(repo: Path) -> None:
    lock = FileLock(repo)
    with pytest.raises(LockError, match="not held"):
        lock.release()
    with lock:
        start = time.monotonic()
        with pytest.raises(LockError, match="already held") as info:
            lock.acquire(timeout=5)
        assert not isinstance(info.value, LockTimeout)
        assert time.monotonic() - start < 1
    assert leftovers(repo) == []


def test_timeout_names_the_holder(repo: Path) -> None:
    with FileLock(repo, command="dcsync commit holder"):
        start = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            FileLock(repo).acquire(timeout=0.3)
        waited = time.monotonic() - start
    assert 0.3 <= waited < 2
    message = str(info.value)
    assert isinstance(info.value, TimeoutError)
    assert str(repo) in message
    assert f"{getpass.getuser()}@{HOST} pid {os.getpid()}" in message
    assert "dcsync commit holder" in message and "heartbeat" in message


def test_settings_from_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (FileLock(repo).stale_after, FileLock(repo).heartbeat_interval) == (120.0, 10.0)
    monkeypatch.setenv("DCSYNC_LOCK_STALE_AFTER", "2.5")
    monkeypatch.setenv("DCSYNC_LOCK_HEARTBEAT", "0.5")
    assert (FileLock(repo).stale_after, FileLock(repo).heartbeat_interval) == (2.5, 0.5)
    assert FileLock(repo, stale_after=9).stale_after == 9
    monkeypatch.setenv("DCSYNC_LOCK_STALE_AFTER", "soon")
    with pytest.raises(UsageError, match="DCSYNC_LOCK_STALE_AFTER"):
        FileLock(repo)
    monkeypatch.setenv("DCSYNC_LOCK_STALE_AFTER", "0.4")
    with pytest.raises(UsageError, match="shorter"):
        FileLock(repo)
    with pytest.raises(UsageError):
        FileLock(repo, stale_after=-1)
    monkeypatch.delenv("DCSYNC_LOCK_HEARTBEAT")
    assert FileLock(repo, stale_after=2).heartbeat_interval == 0.5  # a quarter of stale_after


# --- stale locks ----------------------------------------------------------------------------------


def test_dead_pid_on_this_host_is_broken(repo: Path) -> None:
    write_foreign_lock(repo, pid=dead_pid())
    info = lock_status(repo)
    assert info is not None and info.is_stale(120)
    start = time.monotonic()
    with FileLock(repo).held(timeout=5):
        assert time.monotonic() - start < 1
        assert json.loads(lock_file(repo).read_text())["pid"] == os.getpid()
    assert leftovers(repo) == []


def test_reused_pid_is_dead(repo: Path) -> None:
    """A live process created after the lock was taken cannot be its holder."""
    child = python("import time; time.sleep(30)")
    try:
        created = int(psutil.Process(child.pid).create_time() * 1e9)
        write_foreign_lock(repo, pid=child.pid, start=created + 10**9 * 5)
        with pytest.raises(LockTimeout):
            FileLock(repo).acquire(timeout=0.2)
        write_foreign_lock(repo, pid=child.pid, start=created - 10**9 * 3600)
        with FileLock(repo).held(timeout=1):
            pass
    finally:
        child.kill()
        child.wait()


def test_silent_heartbeat_is_broken_fresh_one_is_not(repo: Path) -> None:
    write_foreign_lock(repo, host="elsewhere.invalid", pid=os.getpid(), age=10)
    with pytest.raises(LockTimeout, match=r"alice@elsewhere\.invalid"):
        FileLock(repo).acquire(timeout=0.2)
    with FileLock(repo, stale_after=5, heartbeat_interval=1).held(timeout=1):
        pass
    write_foreign_lock(repo, host="elsewhere.invalid", pid=os.getpid(), age=1000)
    with FileLock(repo).held(timeout=1):
        pass
    assert leftovers(repo) == []


@pytest.mark.parametrize("content", [b"", b'{"user": "al', b"\x00\xff", b'{"pid": "1"}'])
def test_unreadable_lock_waits_for_grace_then_breaks(repo: Path, content: bytes) -> None:
    lock_file(repo).write_bytes(content)
    info = lock_status(repo)
    assert info is not None and not info.readable and "unreadable" in info.describe()
    with pytest.raises(LockTimeout, match="unreadable"):
        FileLock(repo).acquire(timeout=0.2)
    old = time.time() - 10
    os.utime(lock_file(repo), (old, old))
    with FileLock(repo).held(timeout=1):
        pass


def test_heartbeat_keeps_a_long_held_lock_fresh(repo: Path) -> None:
    holder = FileLock(repo, stale_after=0.6, heartbeat_interval=0.1)
    with holder:
        first = lock_file(repo).stat().st_mtime_ns
        with pytest.raises(LockTimeout):
            FileLock(repo, stale_after=0.6).acquire(timeout=1.5)
        assert lock_file(repo).stat().st_mtime_ns > first
        info = lock_status(repo)
        assert info is not None and info.heartbeat_age() < 0.5 and not info.is_stale(0.6)


def test_lock_without_heartbeat_is_broken_and_holder_learns_it(repo: Path) -> None:
    holder = FileLock(repo, stale_after=100, heartbeat_interval=50)
    holder.acquire()
    with FileLock(repo, stale_after=0.3).held(timeout=3):
        with pytest.raises(NotMyLock, match="no longer hold"):
            holder.verify()
        with pytest.raises(NotMyLock, match="lost the lock"):
            holder.release()
        assert lock_file(repo).exists()  # the new holder's file is left alone
    assert leftovers(repo) == []


def test_not_my_lock_when_replaced_and_heartbeat_spares_the_stranger(repo: Path) -> None:
    lock = FileLock(repo, stale_after=1, heartbeat_interval=0.05)
    lock.acquire()
    replacement = Path(str(lock_file(repo)) + ".new")
    record = {"user": "bob", "host": "x", "pid": 1, "start": 0, "token": "e" * 32, "command": ""}
    replacement.write_text(json.dumps(record))
    os.utime(replacement, (1_000_000, 1_000_000))
    os.replace(replacement, lock_file(repo))
    time.sleep(0.3)
    assert lock_file(repo).stat().st_mtime == 1_000_000  # never touched: not our token
    with pytest.raises(NotMyLock, match="bob@x"):
        lock.release()
    assert json.loads(lock_file(repo).read_text())["user"] == "bob"
    with pytest.raises(NotMyLock, match="gone"):
        lock.acquire()
        lock_file(repo).unlink()
        lock.release()


# --- breaking races and the CLI functions ---------------------------------------------------------


def test_break_restores_a_lock_that_changed_since_judged(repo: Path) -> None:
    write_foreign_lock(repo, pid=dead_pid())
    judged = lock_status(repo)
    assert judged is not None
    lock_file(repo).unlink()
    with FileLock(repo):  # a new holder arrives between the breaker's read and its rename
        assert not _break(judged)
        info = lock_status(repo)
        assert info is not None and info.pid == os.getpid()
        assert leftovers(repo) == ["calib.h5.lock"]
    assert leftovers(repo) == []


def test_many_breakers_of_one_stale_lock_take_turns(repo: Path) -> None:
    write_foreign_lock(repo, pid=dead_pid())
    barrier = threading.Barrier(8)
    intervals: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def grab() -> None:
        try:
            barrier.wait()
            with FileLock(repo).held(timeout=10):
                enter = time.monotonic_ns()
                time.sleep(0.02)
                intervals.append((enter, time.monotonic_ns()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_disjoint(intervals)
    assert leftovers(repo) == []


def test_crashed_holders_are_broken_one_at_a_time(repo: Path) -> None:
    """Every third turn a holder "crashes", leaving its lock behind; the others race to break it."""
    pid, lock_path = dead_pid(), str(lock_file(repo))
    intervals: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def crash_holding(token: str) -> None:
        while True:
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                with contextlib.suppress(LockError):
                    break_lock(repo)
                time.sleep(0.005)
                continue
            enter = time.monotonic_ns()
            record = {"user": "x", "host": HOST, "pid": pid, "start": 0, "token": token, "command": ""}
            os.write(fd, json.dumps(record).encode())
            os.close(fd)
            intervals.append((enter, time.monotonic_ns()))
            return

    def work(who: int) -> None:
        try:
            for turn in range(15):
                if turn % 3 == who % 3:
                    crash_holding(f"{who:02d}{turn:02d}" * 8)
                    continue
                with FileLock(repo).held(timeout=20):
                    enter = time.monotonic_ns()
                    time.sleep(0.001)
                    intervals.append((enter, time.monotonic_ns()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(intervals) == 6 * 15
    assert_disjoint(intervals)
    assert [name for name in leftovers(repo) if name != "calib.h5.lock"] == []


def test_lock_status_and_break_lock(repo: Path) -> None:
    assert lock_status(repo) is None
    assert break_lock(repo) is None
    holder = FileLock(repo, command="dcsync commit x")
    holder.acquire()
    info = lock_status(repo)
    assert isinstance(info, LockInfo)
    assert (info.pid, info.host, info.command) == (os.getpid(), HOST, "dcsync commit x")
    assert info.path == str(lock_file(repo)) and not info.is_stale(120) and 0 <= info.age() < 5
    assert info.describe().startswith(f"held by {getpass.getuser()}@{HOST} pid {os.getpid()} since ")
    with pytest.raises(LockError, match="live") as refused:
        break_lock(repo)
    assert "pid" in str(refused.value) and lock_file(repo).exists()
    assert break_lock(repo, force=True) == info
    assert lock_status(repo) is None
    with pytest.raises(NotMyLock):
        holder.release()
    write_foreign_lock(repo, pid=dead_pid())
    broken = break_lock(repo)
    assert broken is not None and broken.user == "alice" and lock_status(repo) is None
    write_foreign_lock(repo, host="elsewhere.invalid", age=5)
    assert break_lock(repo, stale_after=1) is not None
    assert leftovers(repo) == []


# --- contention and crashes -----------------------------------------------------------------------


def hammer(repo: str, who: str, rounds: str) -> None:
    """Increment the counter next to ``repo`` under the lock, logging entry and exit times."""
    lock = FileLock(repo)
    counter = repo + ".counter"
    for _ in range(int(rounds)):
        with lock.held(timeout=60):
            enter = time.monotonic_ns()
            with open(repo + ".log", "a") as log:
                log.write(f"E {who} {enter}\n")
            with open(counter) as f:
                value = int(f.read())
            time.sleep(0.001)  # widen the window a broken lock would show
            with open(counter, "w") as f:
                f.write(str(value + 1))
            with open(repo + ".log", "a") as log:
                log.write(f"X {who} {time.monotonic_ns()}\n")


HAMMER = "\n".join(
    [
        "import sys, time",
        "from dcsync.store.locking import FileLock",
        inspect.getsource(hammer),
        "hammer(*sys.argv[1:])",
    ]
)


def assert_disjoint(intervals: list[tuple[int, int]]) -> None:
    ordered = sorted(intervals)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert end <= start, "two holders overlapped"


def test_contention_threads_and_processes(repo: Path) -> None:
    rounds, n_threads, n_procs = 20, 8, 6
    Path(str(repo) + ".counter").write_text("0")
    procs = [python(HAMMER, str(repo), f"p{i}", str(rounds)) for i in range(n_procs)]
    errors: list[BaseException] = []

    def run(who: str) -> None:
        try:
            hammer(str(repo), who, str(rounds))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=60) for p in procs] == [0] * n_procs
    assert errors == []
    assert Path(str(repo) + ".counter").read_text() == str(rounds * (n_threads + n_procs))

    lines = [line.split() for line in Path(str(repo) + ".log").read_text().splitlines()]
    assert len(lines) == 2 * rounds * (n_threads + n_procs)
    intervals = []
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert (enter[0], leave[0], enter[1]) == ("E", "X", leave[1]), "entries interleaved"
        intervals.append((int(enter[2]), int(leave[2])))
    assert_disjoint(intervals)
    assert lock_status(repo) is None


def test_holder_killed_with_sigkill_is_recovered(repo: Path) -> None:
    code = (
        "import sys, time\nfrom dcsync.store.locking import FileLock\n"
        "FileLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
    )
    child = python(code, str(repo), stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        info = lock_status(repo)
        assert info is not None and info.pid == child.pid and not info.is_stale(120)
        os.kill(child.pid, signal.SIGKILL)
        # Not reaped yet: a zombie holds nothing.
        start = time.monotonic()
        with FileLock(repo).held(timeout=10):
            assert time.monotonic() - start < 2
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert leftovers(repo) == []
