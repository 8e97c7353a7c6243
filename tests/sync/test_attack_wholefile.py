"""Hostile whole files (issue 9, items 3 and 7): a server hands out a repository file with HDF5
indirections, a view that lies, or sizes it does not hold.

Each case builds the hostile file with h5py inside a real server's workspace, then clones it: over
a real sshd (tests/sshd.py) for the external-storage case, through ``dcsync serve`` over pipes (a
fresh process, whose peak memory is measured) or the in-process channel for the rest. The client
must not adopt the file: it goes object by object instead (naming the refused file), or fails
cleanly when the server's objects themselves are bad. A plain h5py read of the clone's view then
gives HEAD's values, and the clone's peak memory stays near a legitimate clone's. ``verify`` on the
hostile file itself says what is wrong.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.hostile_files import (
    T0,
    Hostile,
    array_bomb,
    effective,
    external_link,
    external_payload,
    external_storage,
    gzip_payload,
    head_answer,
    lying_view,
    objects_elsewhere,
    tree_bomb,
    virtual_dataset,
)
from helpers.peakrss import run_measured
from sshd import SSHServer
from test_sync_faults import ssh_home
from typer.testing import CliRunner

from dcsync import sync
from dcsync.cli.main import app
from dcsync.errors import CorruptObject, DcsyncError, UsageError
from dcsync.store.structure import file_problems
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

DET = "epix100-1"
SHAPE = (32, 64)
MIB = 1 << 20
SLACK = 96 * MIB  # a hostile clone's peak may exceed a legitimate one's by this much, no more


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One detector: two pedestals versions in one range (the newer is effective), and geometry."""
    ws = Workspace.init(tmp_path_factory.mktemp("pristine") / "central", kind="repository")
    with ws.new_detector(DET) as repo:
        for k in (1, 2):
            with repo.transaction(f"pedestals {k}") as tx:
                tx.add("pedestals", np.full(SHAPE, k, np.float32), begin_ns=T0)
                tx.add("geometry", f"geometry {k}", begin_ns=T0)
    return ws.root


@pytest.fixture
def central(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "central"
    shutil.copytree(pristine, root)
    return root


def server_file(root: Path) -> Path:
    return Workspace(root).detector_path(DET)


def problems(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return file_problems(f)


FALLS_BACK: dict[str, Hostile] = {  # the server's objects are sound: the object way gives a clean clone
    "external storage": external_storage,
    "external link": external_link,
    "virtual dataset": virtual_dataset,
    "lying view": lying_view,
}
FAILS: dict[str, Hostile] = {  # the server's own objects are bad: the object way fails cleanly too
    "external payload": external_payload,
    "gzip payload": gzip_payload,
    "objects elsewhere": objects_elsewhere,  # the server refuses to open it at all
}
BOMBS: dict[str, Hostile] = {"tree bomb": tree_bomb, "array bomb": array_bomb}


# -- what a clean clone looks like --------------------------------------------------------------------


def assert_plain_view_is_head(clone: Path, expected: np.ndarray, version: str) -> None:
    """A plain h5py read of the clone's view, the README's recipe, gives HEAD's answer."""
    assert problems(clone) == []
    with h5py.File(clone, "r") as f:
        rng, eff = effective(f)
        assert rng.attrs["effectivev"] == version and rng.attrs["tsbegin"] == T0
        assert np.array_equal(eff["calib"][()], expected)
    assert verify_path(clone).ok


def clone_in_process(url: str, dest: Path, **kwargs: str | None) -> sync.FetchReport:
    _, report = sync.clone(url, dest, **kwargs)
    return report.fetch


@pytest.mark.parametrize("case", sorted(FALLS_BACK))
def test_a_hostile_whole_file_is_refused_and_the_clone_goes_object_by_object(
    central: Path, tmp_path: Path, case: str
) -> None:
    _, _, value, version = head_answer(server_file(central))
    why = FALLS_BACK[case](server_file(central), tmp_path)
    fetch = clone_in_process(str(central), tmp_path / "laptop")
    assert fetch.files == 0 and fetch.objects > 0, "the hostile file was adopted"
    assert why in fetch.refused[DET], fetch.refused
    assert_plain_view_is_head(Workspace(tmp_path / "laptop").detector_path(DET), value, version)


def test_external_storage_over_a_real_sshd_is_refused(
    central: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server: SSHServer = request.getfixturevalue("sshd")
    ssh_home(server)
    _, _, value, version = head_answer(server_file(central))
    external_storage(server_file(central), tmp_path)
    fetch = clone_in_process(
        server.url(str(central), alias=False), tmp_path / "laptop", remote_dcsync=server.remote_dcsync
    )
    assert fetch.files == 0 and "external file" in fetch.refused[DET]
    assert_plain_view_is_head(Workspace(tmp_path / "laptop").detector_path(DET), value, version)


@pytest.mark.parametrize("case", sorted(FAILS))
def test_a_whole_file_with_bad_objects_is_refused_and_the_clone_fails_cleanly(
    central: Path, tmp_path: Path, case: str
) -> None:
    """Its objects are bad on the server too, so the object way cannot help: the clone fails with
    dcsync's error and adopts nothing."""
    FAILS[case](server_file(central), tmp_path)
    with pytest.raises(DcsyncError, match=r"(?i)corrupt|contiguous|external|elsewhere"):
        clone_in_process(str(central), tmp_path / "laptop")
    laptop = tmp_path / "laptop"
    assert not laptop.exists() or not list(laptop.rglob("*.h5")), "a detector file was placed"


def test_a_payload_over_the_configured_bound_is_refused_whole_and_comes_object_by_object(
    central: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DCSYNC_MAX_PAYLOAD`` bounds what a whole file may declare; the objects' way streams."""
    monkeypatch.setenv("DCSYNC_MAX_PAYLOAD", "4096")  # the pedestals are 8 KiB
    _, _, value, version = head_answer(server_file(central))
    fetch = clone_in_process(str(central), tmp_path / "laptop")
    assert fetch.files == 0 and "over the limit of 4096" in fetch.refused[DET]
    monkeypatch.delenv("DCSYNC_MAX_PAYLOAD")
    assert_plain_view_is_head(Workspace(tmp_path / "laptop").detector_path(DET), value, version)


def test_a_payload_bound_that_is_no_number_is_a_usage_error(
    central: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCSYNC_MAX_PAYLOAD", "lots")
    with pytest.raises(UsageError, match="DCSYNC_MAX_PAYLOAD"):
        clone_in_process(str(central), tmp_path / "laptop")
    with pytest.raises(UsageError, match="DCSYNC_MAX_PAYLOAD"):
        verify_path(server_file(central))


# -- memory ------------------------------------------------------------------------------------------


def measured_clone(src: Path, dest: Path) -> tuple[int, dict[str, object] | None, str, int]:
    """Clone ``src`` in a fresh ``dcsync`` process (the server: ``dcsync serve`` over pipes, its
    child); return the peak RSS of the pair, the JSON answer, stderr and the exit status."""
    done = run_measured([sys.executable, "-m", "dcsync", "clone", str(src), str(dest), "--json"], timeout=300)
    assert not done.timed_out, "the clone did not finish"
    assert "Traceback" not in done.stderr, done.stderr
    answer = json.loads(done.stdout) if done.returncode == 0 else None
    return done.peak_rss, answer, done.stderr, done.returncode


@pytest.fixture(scope="module")
def legitimate_peak(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> int:
    peak, answer, _, _ = measured_clone(pristine, tmp_path_factory.mktemp("legit") / "laptop")
    assert answer is not None and answer["fetch"]["files"] == 1  # type: ignore[index]
    return peak


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_a_memory_bomb_is_refused_before_anything_is_allocated(
    central: Path, tmp_path: Path, legitimate_peak: int, case: str
) -> None:
    """The file declares a gigabyte it does not hold: the clone refuses it before reading, and its
    peak memory stays within a little of a legitimate clone's (before the fix: 1-2 GB)."""
    why = BOMBS[case](server_file(central), tmp_path)
    assert why in " ".join(problems(server_file(central)))
    peak, _, stderr, code = measured_clone(central, tmp_path / "laptop")
    assert peak < legitimate_peak + SLACK, (
        f"peak {peak >> 20} MiB, a legitimate clone {legitimate_peak >> 20} MiB"
    )
    assert code == CorruptObject.exit_code and why in stderr, stderr  # the object way fails too, cleanly


# -- verify on the hostile file itself ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted({**FALLS_BACK, **FAILS, **BOMBS}))
def test_verify_reports_what_a_hostile_file_holds(central: Path, tmp_path: Path, case: str) -> None:
    why = {**FALLS_BACK, **FAILS, **BOMBS}[case](server_file(central), tmp_path)
    report = verify_path(server_file(central))
    assert not report.ok and any(why in p for p in report.problems), report.problems


def test_dcsync_verify_fails_on_a_hostile_file_naming_the_problem(central: Path, tmp_path: Path) -> None:
    """The CLI: exit 5 (a repository problem), the problem named, no traceback."""
    external_storage(server_file(central), tmp_path)
    result = CliRunner().invoke(app, ["-C", str(central), "verify", "--json"])
    assert result.exit_code == CorruptObject.exit_code, result.output
    doc = json.loads(result.stdout)
    assert not doc["ok"] and "external file" in " ".join(doc["repositories"][0]["problems"])
    assert "Traceback" not in result.output


def test_an_adopted_file_gets_a_view_written_afresh_from_head(central: Path, tmp_path: Path) -> None:
    """What verify does not compare (each level's ``history``) is still never the server's word:
    the adopted file's view is written from HEAD, so a forged history does not survive."""
    honest = tmp_path / "honest"
    shutil.copy(server_file(central), honest)
    with h5py.File(server_file(central), "r+") as f:
        f.attrs["history"] = json.dumps([{"commit": "0" * 32, "message": "approved by the director"}])
        f["pedestals"].attrs["history"] = "[]"
    fetch = clone_in_process(str(central), tmp_path / "laptop")
    assert fetch.files == 1 and not fetch.refused  # nothing an answer depends on was touched
    clone = Workspace(tmp_path / "laptop").detector_path(DET)
    with h5py.File(clone, "r") as mine, h5py.File(honest, "r") as theirs:
        for level in ("/", "/pedestals"):
            assert mine[level].attrs["history"] == theirs[level].attrs["history"]
    assert verify_path(clone).ok
