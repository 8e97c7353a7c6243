"""Mistakes that used to go through silently, through the command line: a misspelled ctype, a
constant whose dtype, shape or NaN count differs from the one it stands in for, a predecessor that
does not exist, an output format dcsync does not write, and a write the file system refuses.

The last one becomes the OS user ``nobody`` (a forked child that drops root), so the file system
itself says no; it needs root, as in CI.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.forked import run_as
from test_cli import GEOMETRY, T0, T0_S, Snapshot, arr_file, fails, run, run_json
from typer.testing import CliRunner

from dcsync.cli.main import app
from dcsync.model.names import PSANA_CTYPES
from dcsync.repo.repository import Repository
from dcsync.sync.promote import promote
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
T1 = "2024-02-01T00:00:00Z"  # after T0, the 2024 new year (test_cli's Snapshot looks there)
PEDESTALS = np.arange(12, dtype=np.float32).reshape(3, 4)


def C(ws: Path) -> list[str]:
    return ["-C", str(ws)]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with one detector (alias Cam1): pedestals (float32, 3x4) and a geometry."""
    root = tmp_path / "calib"
    run("init", str(root))
    run(C(root), "new", DET, "--alias", "Cam1")
    run(C(root), "add", "Cam1", "pedestals", arr_file(tmp_path, PEDESTALS, "ped.npy"), "--begin", T0)
    geo = tmp_path / "geo.data"
    geo.write_text(GEOMETRY)
    run(C(root), "add", "Cam1", "geometry", geo, "--begin", T0)
    return root


@pytest.fixture
def snap(ws: Path) -> Iterator[Snapshot]:
    s = Snapshot(ws / "epix100a" / f"{DET}.h5")
    yield s
    s.check()


# -- a misspelled ctype -----------------------------------------------------------------------------
def test_misspelled_ctype_is_refused_before_the_file_is_read(
    ws: Path, tmp_path: Path, snap: Snapshot
) -> None:
    ped = arr_file(tmp_path, PEDESTALS)
    err = fails(
        run(C(ws), "add", "Cam1", "pedestal", ped, "--begin", T1, code=2),
        2,
        "'pedestal'",
        "did you mean 'pedestals'?",
        "--new-ctype",
        DET,
    )
    assert "Traceback" not in err
    # the ctype is judged first: a file that does not even exist is not what the error is about
    fails(
        run(C(ws), "add", "Cam1", "pixel_stauts", tmp_path / "nope.npy", "--begin", T1, code=2),
        2,
        "pixel_status",
    )
    fails(run(C(ws), "par", "set", "Cam1", "pedestl", "x=1", code=2), 2, "'pedestl'", "'pedestals'")


def test_new_ctype_is_explicit_once(ws: Path, tmp_path: Path) -> None:
    dark = arr_file(tmp_path, PEDESTALS)
    doc = run_json(C(ws), "add", "Cam1", "dark_current", dark, "--begin", T0, "--new-ctype")
    assert doc["ctype"] == "dark_current" and doc["compared_with"] is None  # nothing to compare with
    run(C(ws), "add", "Cam1", "dark_current", dark, "--begin", T1)  # the detector has it now
    run(C(ws), "par", "set", "Cam1", "dark_rms", "units=adu", "--new-ctype")
    for ctype in PSANA_CTYPES[:3]:  # the names psana knows need no flag
        if ctype != "pedestals":
            run(C(ws), "add", "Cam1", ctype, dark, "--begin", T0)
    assert {"dark_current", "dark_rms"} <= {c["ctype"] for c in run_json(C(ws), "ls", "Cam1")["ctypes"]}


def test_promotion_copies_a_ctype_psana_does_not_know(ws: Path, tmp_path: Path) -> None:
    """The source has the ctype, so promoting it is no misspelling: the target needs no flag."""
    run(C(ws), "add", "Cam1", "dark_current", arr_file(tmp_path, PEDESTALS), "--begin", T0, "--new-ctype")
    central = Workspace.init(tmp_path / "central", "repository")
    report = promote([DET], str(ws), str(central.root), ctypes=["dark_current"])
    assert [p.action for p in report.picks] == ["promote"]
    with central.repository(DET) as repo:
        np.testing.assert_array_equal(repo.get("dark_current").value, PEDESTALS)


# -- what an add stands in for ----------------------------------------------------------------------
def test_add_reports_dtype_nan_and_value_changes(ws: Path, tmp_path: Path) -> None:
    new = PEDESTALS.astype(np.float64)
    new[0, 0], new[0, 1], new[1, 1] = np.nan, np.inf, 100.0  # 5 -> 100
    path = arr_file(tmp_path, new)
    doc = run_json(C(ws), "add", "Cam1", "pedestals", path, "--begin", T0, "--no-default")
    c = doc["compared_with"]
    with Repository.open(ws / "epix100a" / f"{DET}.h5") as repo:
        old = repo.find_version("pedestals", c["version"])
        assert old.entry.obj == c["object"] and old.range == c["range"] == doc["range"]
    finite = np.isfinite(new)
    assert (c["dtype_old"], c["dtype_new"]) == ("<f4", "<f8")
    assert c["shape_old"] == c["shape_new"] == [3, 4] and c["comparable"] and c["fetched"]
    assert (c["nonfinite_old"], c["nonfinite_new"]) == (0, int((~finite).sum()))
    assert c["changed_elements"] == int((new != PEDESTALS).sum())
    assert c["max_abs_diff"] == float(np.abs(new - PEDESTALS)[finite].max())
    # --no-default left the old version in charge: the next add is compared with it again
    line = run(C(ws), "add", "Cam1", "pedestals", path, "--begin", T0).stdout.splitlines()[-1]
    assert line.startswith(f"  compared with version {c['version']} (range {c['range']}): "), line
    for part in (
        "dtype float32 -> float64",
        "shape (3, 4)",
        "NaN/Inf 0 -> 2",
        "max |diff| 95",
        "3 of 12 pixels",
    ):
        assert part in line, line
    back = arr_file(tmp_path, PEDESTALS, "back.npy")
    line = run(C(ws), "add", "Cam1", "pedestals", back, "--begin", T0).stdout.splitlines()[-1]
    assert (
        "dtype float64 -> float32" in line and "NaN/Inf 2 -> 0" in line and "3 of 12 pixels changed" in line
    )


def test_a_new_range_is_compared_with_the_range_lookups_returned(ws: Path, tmp_path: Path) -> None:
    doc = run_json(
        C(ws), "add", "Cam1", "pedestals", arr_file(tmp_path, np.zeros((2, 6), np.float32)), "-b", T1
    )
    c = doc["compared_with"]
    assert c["range"] != doc["range"] and c["range"].startswith(f"{T0_S}-")  # the T0 range
    assert (c["shape_old"], c["shape_new"]) == ([3, 4], [2, 6]) and not c["comparable"]
    assert c["max_abs_diff"] is None and c["changed_elements"] is None
    out = run(
        C(ws),
        "add",
        "Cam1",
        "pedestals",
        arr_file(tmp_path, PEDESTALS, "p.npy"),
        "-b",
        "2023-06-01T00:00:00Z",
    )
    # before every range: compared with the nearest range after it
    assert "float32 (3, 4) as before" in out.stdout.splitlines()[-1]


def test_add_of_geometry_counts_changed_lines(ws: Path, tmp_path: Path) -> None:
    geo = tmp_path / "geo2.data"
    lines = GEOMETRY.splitlines(keepends=True)
    geo.write_text("".join([lines[0], lines[1].replace("21136", "21137"), *lines[2:]]))
    doc = run_json(C(ws), "add", "Cam1", "geometry", geo, "--begin", T0)
    assert doc["compared_with"]["changed_lines"] == 1 and doc["compared_with"]["dtype_old"] == "text"
    out = run(C(ws), "add", "Cam1", "geometry", geo, "--begin", T0).stdout
    assert out.splitlines()[-1].endswith("): same text")


def test_add_in_a_partial_clone_compares_what_the_tree_records(ws: Path, tmp_path: Path) -> None:
    clone = tmp_path / "laptop"
    run("clone", str(ws), str(clone), "--ctype", "geometry")  # pedestals' payloads stay behind
    doc = run_json(C(clone), "add", DET, "pedestals", arr_file(tmp_path, np.zeros(5, np.int16)), "-b", T0)
    c = doc["compared_with"]
    assert not c["fetched"] and (c["dtype_old"], c["dtype_new"]) == ("<f4", "<i2")
    assert (c["shape_old"], c["shape_new"]) == ([3, 4], [5]) and c["nonfinite_old"] is None


# -- new --predecessor ------------------------------------------------------------------------------
def test_new_predecessor_must_exist(ws: Path) -> None:
    fails(run(C(ws), "new", "epix100a-2", "--predecessor", "epix100a-0", code=3), 3, "'epix100a-0'", DET)
    assert not (ws / "epix100a" / "epix100a-2.h5").exists()
    doc = run_json(C(ws), "new", "epix100a-2", "--predecessor", "Cam1")  # an alias names it
    assert doc["predecessor"] == DET
    with Repository.open(ws / "epix100a" / f"{DET}.h5") as pred:
        assert pred.root().successor == "epix100a-2"


def test_promotion_keeps_a_predecessor_the_target_lacks(tmp_path: Path) -> None:
    xpp = Workspace.init(tmp_path / "xpp")
    xpp.new_detector("epix100a-1").close()
    xpp.new_detector("epix100a-2", predecessor="epix100a-1").close()
    run(C(xpp.root), "add", "epix100a-2", "pedestals", arr_file(tmp_path, PEDESTALS), "--begin", T0)
    central = Workspace.init(tmp_path / "central", "repository")
    promote(["epix100a-2"], str(xpp.root), str(central.root))
    with central.repository("epix100a-2") as repo:
        assert repo.root().predecessor == "epix100a-1"  # the source's link, as it was


# -- get -o -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["out.xyz", "out.npz", "out", "out.h5"])
def test_get_output_refuses_formats_it_does_not_write(ws: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    err = fails(run(C(ws), "get", "Cam1", "pedestals", "-o", out, code=2), 2, name, ".npy", ".data", ".txt")
    assert "does not write" in err and not out.exists()


# -- a non-writer -----------------------------------------------------------------------------------
def _as_user(user: str, args: list[str]) -> tuple[int, str]:
    """Run the CLI in a forked child that has become ``user``: the file system judges it for real.

    A child rather than ``runuser``: this interpreter lives under /root, which other users cannot
    reach, and a fork needs nothing to be opened up. The parent has run the same command first,
    so the child needs no module the new user could not read.
    """
    pw = pwd.getpwnam(user)

    def invoke() -> list[object]:
        result = CliRunner().invoke(app, args)
        return [result.exit_code, result.stderr]

    exit_code, stderr = run_as(pw.pw_uid, pw.pw_gid, invoke)
    return int(exit_code), str(stderr)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A workspace owned by root where others may look (0755 directories, 0644 files), outside
    pytest's own temporary folders (0700: nobody could even reach it)."""
    base = Path(tempfile.mkdtemp(prefix="dcsync-nonwriter-", dir="/tmp"))
    try:
        base.chmod(0o755)
        root = base / "calib"
        run("init", str(root))
        run(C(root), "new", DET)
        run(C(root), "add", DET, "pedestals", arr_file(base, PEDESTALS), "--begin", T0)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: becomes the OS user nobody")
def test_a_non_writer_is_denied_access_not_a_lock(shared: Path) -> None:
    repo_file = shared / "epix100a" / f"{DET}.h5"
    before = Snapshot(repo_file)
    args = [*C(shared), "add", DET, "pedestals", str(shared.parent / "a.npy"), "--begin", T1]
    code, err = _as_user("nobody", args)
    assert code == 10, err  # AccessDenied, not the lock code 6
    assert err.startswith(f"dcsync: error: you (user nobody) may not write {repo_file}: "), err
    assert "lock file" in err and "Permission denied" in err
    # a directory open to all (the lock can be taken) but a file that is not ours: the same answer
    (shared / "epix100a").chmod(0o777)
    code, err = _as_user("nobody", args)
    assert code == 10 and f"you (user nobody) may not write {repo_file}: cannot open it for writing" in err, (
        err
    )
    assert not Path(f"{repo_file}.lock").exists()  # the lock was released
    before.check()
    # the ACL lets nobody add, the file system still does not: a new detector is refused the same way
    (shared / "epix100a").chmod(0o755)
    run(C(shared), "acl", "grant", "user:nobody", "add")
    code, err = _as_user("nobody", [*C(shared), "new", "epix100a-2"])
    new_file = shared / "epix100a" / "epix100a-2.h5"
    assert code == 10 and f"you (user nobody) may not write {new_file}: cannot create it" in err, err
    assert not new_file.exists()
