"""Torture: a writer SIGKILLed at random instants, hundreds of times over; and several writers and
readers on one file at once. Real processes on a real file (``tests/helpers/writer.py`` and
``reader.py``); nothing is mocked.

The promises checked: a killed commit leaves the file as it was before or after that commit; the
next writer recovers on its own; every commit a writer saw return is in the history and its value
reads back exactly; readers never see an error and never a wrong value.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcsync.model.hashing import ObjectId
from dcsync.repo.repository import Repository
from dcsync.repo.verify import verify_file
from dcsync.store.locking import FileLock
from dcsync.store.recovery import has_hot_journal, recover

pytestmark = pytest.mark.slow

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
REPO_ROOT = HELPERS.parents[1]
_spec = importlib.util.spec_from_file_location("writer", HELPERS / "writer.py")
assert _spec is not None and _spec.loader is not None
writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writer)

CRASH_BUDGET = 45.0  # seconds of kill-and-restart (longer only to reach the minimums)
MIN_KILLS = 30
MIN_COMMITS = 200
CONCURRENCY_SECONDS = 15.0
PENDING = "an interrupted commit is pending"


@dataclass(frozen=True)
class Reported:
    commit: ObjectId
    ctype: str
    version: str
    wid: int
    seq: int


def parse(stdout: str) -> list[Reported]:
    out = []
    for line in stdout.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # killed mid-line: this one was not reported
        tag, cid, ctype, vkey, wid, seq = line.split()
        assert tag == "C"
        out.append(Reported(ObjectId(cid), ctype, vkey, int(wid), int(seq)))
    return out


def spawn(script: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, str(HELPERS / script), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def chain(path: Path) -> list[ObjectId]:
    with Repository.open(path) as repo:
        return [cid for cid, _ in repo.commits()]


def check_versions(path: Path, reported: list[Reported]) -> None:
    """Every reported version is in HEAD and reads back as exactly what its writer stored."""
    with Repository.open(path) as repo:
        for r in reported:
            c = repo.get(r.ctype, version=r.version)
            assert c.version == r.version
            assert dict(c.entry.pars) == {"w": r.wid, "s": r.seq}
            writer.check(c.value, dict(c.entry.pars), c.entry.shape)


def test_writer_killed_at_random_instants(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    Repository.create(path, "epix-1").close()
    rnd = random.Random(20261121)
    reported: list[Reported] = []
    unreported = 0
    kills = recovered_by_writer = 0
    deadline = time.monotonic() + CRASH_BUDGET
    run = 0
    while time.monotonic() < deadline or (
        # a slow machine runs on until the minimums are met, up to four budgets in all
        (kills < MIN_KILLS or len(reported) < MIN_COMMITS) and time.monotonic() < deadline + 3 * CRASH_BUDGET
    ):
        proc = spawn(
            "writer.py", path, "--wid", 0, "--seed", run, "--first-seq", run * 1_000_000, "--scratch"
        )
        time.sleep(rnd.choice([rnd.uniform(0.0, 0.5), rnd.uniform(0.5, 1.0), rnd.uniform(1.0, 1.5)]))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, f"the writer died on its own:\n{err}"
        kills += 1
        run += 1
        this_round = parse(out)
        reported.extend(this_round)

        # Right after the kill, before anyone recovers, readers see a consistent state: every
        # reported commit, at most one more per kill.
        ids = chain(path)
        assert {r.commit for r in reported} <= set(ids), "a commit reported as returned is missing"
        now_unreported = len(ids) - 1 - len(reported)  # minus the create commit
        assert now_unreported - unreported in (0, 1), "more than the one commit in flight landed"
        unreported = now_unreported

        # Half the time we recover here (as a lock-holding tool would), half the time the next
        # writer must do it by itself.
        if has_hot_journal(path) and kills % 2 == 0:
            report = verify_file(path)
            assert [p for p in report.problems if not p.startswith(PENDING)] == [], report.problems
            recovered_by_writer += 1
        else:
            if has_hot_journal(path):
                with FileLock(path).held(timeout=30):
                    assert recover(path)
            report = verify_file(path)
            assert report.ok, report.problems

    if has_hot_journal(path):
        with FileLock(path).held(timeout=30):
            recover(path)
    report = verify_file(path)
    assert report.ok, report.problems
    ids = chain(path)
    assert {r.commit for r in reported} <= set(ids)
    assert len(ids) - 1 - len(reported) <= kills
    check_versions(path, reported)
    assert kills >= MIN_KILLS, kills
    assert len(reported) >= MIN_COMMITS, f"only {len(reported)} commits in {kills} runs"
    print(f"{kills} kills, {len(reported)} reported commits, {recovered_by_writer} left to the writer")


def test_writers_and_readers_at_once(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    Repository.create(path, "epix-1").close()
    writers = [
        spawn("writer.py", path, "--wid", w, "--seed", w, "--seconds", CONCURRENCY_SECONDS, "--pause", 0.3)
        for w in range(4)
    ]
    readers = [
        spawn("reader.py", path, "--seed", 100 + r, "--seconds", CONCURRENCY_SECONDS) for r in range(3)
    ]
    reported: list[Reported] = []
    for w, proc in enumerate(writers):
        out, err = proc.communicate(timeout=CONCURRENCY_SECONDS + 120)
        assert proc.returncode == 0, f"writer {w} failed:\n{err}"
        mine = parse(out)
        assert len(mine) >= 5, f"writer {w} committed only {len(mine)} times"
        assert [r.seq for r in mine] == list(range(len(mine)))
        reported.extend(mine)
    reads = 0
    for r, proc in enumerate(readers):
        out, err = proc.communicate(timeout=CONCURRENCY_SECONDS + 120)
        assert proc.returncode == 0, f"reader {r} saw an error:\n{err}"
        reads += int(out.split()[-1])
    assert reads > 0

    assert not has_hot_journal(path)
    report = verify_file(path)
    assert report.ok, report.problems
    ids = chain(path)
    # No commit lost, none invented: the history is the create commit plus every reported commit.
    assert len(ids) == 1 + len(reported)
    assert set(ids[:-1]) == {r.commit for r in reported}
    check_versions(path, reported)
    print(f"{len(reported)} commits by {len(writers)} writers, {reads} values checked by readers")
