"""Reading a psana calib directory: the real fixtures, generated folders with backups, ignored
names and HISTORY lines, and bad input named in an InputError."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from helpers.forked import run_as

from dcsync.errors import InputError, InvalidName
from dcsync.legacy.calibdir import (
    Backup,
    CtypeFolder,
    detector_name,
    experiment_of,
    load_file,
    parse_history,
    psana_detname,
    read_calib_dir,
    read_ctype_folder,
)
from dcsync.legacy.finder import RunRange, select_calib_file
from dcsync.legacy.textarray import read_text_array
from dcsync.model.names import check_detname

FIXTURES = Path("/work/shared/fixtures/psana-calib/calib")
EPIX = "Epix100a::CalibV1/XppGon.0:Epix100a.1"


@pytest.fixture
def calib(tmp_path: Path) -> Path:
    """The real fixture calib directory, copied under an experiment folder (never written in place)."""
    dest = tmp_path / "XPP" / "xppn4116" / "calib"
    shutil.copytree(FIXTURES, dest)
    for path in dest.rglob("*"):  # the fixtures are read-only; the copies' folders must be removable
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def _folder(calib: Path, rel: str) -> CtypeFolder:
    folders = {f"{f.group}/{f.source}/{f.ctype}": f for f in read_calib_dir(calib).folders}
    return folders[rel]


def test_fixtures_are_read_completely(calib: Path) -> None:
    found = read_calib_dir(calib)
    assert found.experiment == "xppn4116"
    assert found.ignored == ()
    listing = {(f.group, f.source, f.ctype): [c.name for c in f.constants] for f in found.folders}
    assert listing == {
        ("Epix100a::CalibV1", "XppGon.0:Epix100a.1", "geometry"): ["0-end.data"],
        ("Epix100a::CalibV1", "XppGon.0:Epix100a.1", "pedestals"): [],  # its HISTORY names a file not here
        ("Epix100a::CalibV1", "XppGon.0:Epix100a.1", "pixel_rms"): [],
        ("Epix100a::CalibV1", "XppGon.0:Epix100a.1", "pixel_status"): ["0-end.data"],
        ("Epix10kaQuad::CalibV1", "XcsEndstation.0:Epix10kaQuad.0", "geometry"): ["0-end.data"],
        ("Jungfrau::CalibV1", "CxiDs1.0:Jungfrau.0", "geometry"): ["0-end.data"],
    }
    for folder in found.folders:
        assert folder.backups == () and folder.ignored == () and folder.history_problems == ()
        for constant in folder.constants:
            assert constant.runs == RunRange(0, None)


def test_fixture_history(calib: Path) -> None:
    peds = _folder(calib, f"{EPIX}/pedestals")
    (entry,) = peds.history
    assert entry.file == "137-end.data"
    assert entry.run == 137  # written 0137
    assert entry.copy_of == "work/results/clb-xppn4116-r0137-peds-ave-XppGon.0:Epix100a.1.txt"
    assert entry.known() == {
        "file": "137-end.data",
        "copy_of": "work/results/clb-xppn4116-r0137-peds-ave-XppGon.0:Epix100a.1.txt",
        "exp": "xppn4116",
        "run": "0137",
        "comment": "calibrun-dark",
        "user": "dubrovin",
        "host": "sdfiana001",
        "cptime": "2024-05-31T10:03:41",
        "zone": "PDT",
    }
    assert not entry.removed
    geometry = _folder(calib, f"{EPIX}/geometry")
    assert len(geometry.history) == 6
    first = geometry.history[0]
    assert first.get("cwd") == "/sdf/home/d/dubrovin/LCLS/con-py3"  # unknown keys are kept
    assert first.get("ctype") == "geometry"
    assert first.get("cmt") == ""
    assert [e.get("cptime") for e in geometry.history][-1] == "2024-05-31T10:13:08"


def test_fixture_every_run_is_what_psana_picks(calib: Path) -> None:
    for folder in read_calib_dir(calib).folders:
        names = os.listdir(folder.path)
        for run in range(0, 10_001, 7):
            chosen = folder.select(run)
            assert (chosen.name if chosen else None) == select_calib_file(names, run)


def test_fixture_files_load_through_the_legacy_readers(calib: Path) -> None:
    geometry = _folder(calib, f"{EPIX}/geometry")
    text = load_file(geometry, geometry.constants[0])
    assert isinstance(text, str)
    assert text.encode("utf-8") == (FIXTURES / EPIX / "geometry" / "0-end.data").read_bytes()
    status = _folder(calib, f"{EPIX}/pixel_status")
    arr = load_file(status, status.constants[0])
    assert not isinstance(arr, str)
    assert arr.shape == (704, 768) and arr.dtype == np.uint64
    np.testing.assert_array_equal(arr, read_text_array(FIXTURES / EPIX / "pixel_status" / "0-end.data"))


def test_detector_names_from_group_and_source(calib: Path) -> None:
    assert psana_detname("CsPad::CalibV1", "CxiDs2.0:Cspad.0") == "cspad-CxiDs2.0-Cspad.0"
    assert psana_detname("Epix100a::CalibV1", "XppGon.0:Epix100a.1") == "epix100a-XppGon.0-Epix100a.1"
    for bad in (("CsPad", "CxiDs2.0:Cspad.0"), ("::CalibV1", "X.0:Y.0"), ("CsPad::CalibV1", "")):
        with pytest.raises(InputError, match="not a <Group>::CalibV1/<source>"):
            psana_detname(*bad)
    # detector_name gives psana's name exactly when dcsync's rules accept it, else says so.
    for folder in read_calib_dir(calib).folders:
        name = psana_detname(folder.group, folder.source)
        try:
            accepted: str | None = check_detname(name)
        except InvalidName:
            accepted = None
        if accepted is not None:
            assert detector_name(folder) == name
        else:
            with pytest.raises(InputError) as info:
                detector_name(folder)
            assert name in str(info.value) and folder.source in str(info.value)
            assert str(folder.path.parent) in str(info.value)


def test_experiment_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert experiment_of(Path("/reg/d/psdm/XPP/xpp12345/calib")) == "xpp12345"
    assert experiment_of(Path("/reg/d/psdm/XPP/xpp12345/calib/")) == "xpp12345"
    assert experiment_of(Path("/reg/d/psdm/XPP/xpp12345/calib/../calib")) == "xpp12345"
    assert experiment_of(Path("/data/mycalib")) is None
    assert experiment_of(Path("/calib")) is None
    work = tmp_path / "cxi99"
    (work / "calib").mkdir(parents=True)
    monkeypatch.chdir(work)
    assert experiment_of(Path("calib")) == "cxi99"


# --- generated folders ----------------------------------------------------------------------------

HISTORY_TEXT = (
    b"file:5-end.data  copy_of:/a/b.txt  exp:xpp12345  run:0005  comment:first dark run  user:u1\n"
    b"\n"
    b"file:5-end.data  cmd:rm  user:u2  host:h  cptime:2021-02-03T04:05:06  zone:PST  extra:kept\n"
    b"this line is not key value tokens\n"
    b"file:10-20.data  run:x  comment:\xff\n"
    b"  file:10-20.data run:0010 app:my-app\r\n"
)


def _make(calib: Path) -> Path:
    folder = calib / "CsPad::CalibV1" / "CxiDs2.0:Cspad.0" / "pedestals"
    folder.mkdir(parents=True)
    for name in (
        "5-end.data", "10-20.data", "05-20.data", "10-020.data", "12345-end.data", "a-b.data", "x.txt",
        "5-end.data-2021-02-03T04:05:06", "5-end.data-2020-12-31T23:59:59", "a-b.data-2021-01-01T00:00:00",
        "5-end.data-yesterday",
    ):  # fmt: skip
        (folder / name).write_text("1 2 3\n")
    (folder / "sub").mkdir()
    (folder / "HISTORY").write_bytes(HISTORY_TEXT)
    (calib / "README").write_text("not psana's\n")
    (calib / "notes").mkdir()
    (calib / "CsPad::CalibV1" / "stray.txt").write_text("")
    (calib / "CsPad::CalibV1" / "CxiDs2.0:Cspad.0" / "loose.data").write_text("")
    return folder


def test_generated_folder_is_classified(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    path = _make(calib)
    found = read_calib_dir(calib)
    assert found.experiment == tmp_path.name
    assert sorted((i.name, i.reason) for i in found.ignored) == [
        ("README", "not a <Group>::CalibV1 folder"),
        ("loose.data", "not a ctype folder"),
        ("notes", "not a <Group>::CalibV1 folder"),
        ("stray.txt", "not a source folder"),
    ]
    (folder,) = found.folders
    assert folder == read_ctype_folder(path)
    assert (folder.group, folder.source, folder.ctype) == ("CsPad::CalibV1", "CxiDs2.0:Cspad.0", "pedestals")
    assert [(c.name, str(c.runs)) for c in folder.constants] == [
        ("05-20.data", "5-20"), ("5-end.data", "5-end"), ("10-020.data", "10-20"), ("10-20.data", "10-20"),
    ]  # fmt: skip
    assert [b.name for b in folder.backups_of("5-end.data")] == [
        "5-end.data-2020-12-31T23:59:59",
        "5-end.data-2021-02-03T04:05:06",
    ]
    assert folder.backups[1] == Backup(
        "5-end.data-2021-02-03T04:05:06",
        path / "5-end.data-2021-02-03T04:05:06",
        "5-end.data",
        RunRange(5, None),
        datetime(2021, 2, 3, 4, 5, 6),
    )
    ignored = {i.name: i for i in folder.ignored}
    assert sorted(ignored) == [
        "12345-end.data", "5-end.data-yesterday", "a-b.data", "a-b.data-2021-01-01T00:00:00", "sub", "x.txt",
    ]  # fmt: skip
    assert ignored["12345-end.data"].breaks_psana
    assert not ignored["a-b.data"].breaks_psana
    assert "not a psana timestamp" in ignored["5-end.data-yesterday"].reason
    assert "not a psana file name" in ignored["a-b.data-2021-01-01T00:00:00"].reason
    assert ignored["sub"].reason == "not a regular file"
    assert ignored["x.txt"].reason == "not a .data file"
    assert [tuple(c.name for c in group) for group in folder.same_range()] == [("10-020.data", "10-20.data")]
    # the finder on the classified constants is psana's on the raw listing
    names = os.listdir(path)
    for run in (0, 4, 5, 9, 10, 15, 20, 21, 9999, 20_000):
        chosen = folder.select(run)
        expected = select_calib_file(sorted(names), run)
        assert (chosen.name if chosen else None) == expected, run
    assert folder.select(12).name == "10-20.data"  # type: ignore[union-attr]  # the tie: sorted last


def test_history_lines(tmp_path: Path) -> None:
    entries, problems = parse_history(HISTORY_TEXT)
    assert [e.line for e in entries] == [1, 3, 6]
    assert entries[0].get("comment") == "first dark run"  # tokens without a colon continue a value
    assert entries[0].run == 5
    assert entries[1].removed and entries[1].get("extra") == "kept" and entries[1].get("zone") == "PST"
    assert entries[2].get("app") == "my-app" and entries[2].run == 10
    assert [(p.line, p.reason) for p in problems] == [
        (4, "does not start with a key:value token"),
        (5, "not UTF-8 text"),
    ]
    assert parse_history(b"") == ((), ())
    assert parse_history(b"file:1-end.data run:x\n")[0][0].run is None


# --- bad input ------------------------------------------------------------------------------------


def test_a_missing_or_plain_file_calib_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nothing" / "calib"
    with pytest.raises(InputError, match=f"{missing}: no such file"):
        read_calib_dir(missing)
    plain = tmp_path / "calib"
    plain.write_text("")
    with pytest.raises(InputError, match=str(plain)):
        read_calib_dir(plain)


def test_an_unreadable_folder_is_named(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    folder = _make(calib)
    if os.geteuid() == 0:  # root reads anything: ask as nobody, who cannot list the folders
        message = run_as(65534, 65534, lambda: _error_of(calib))
        assert "permission denied while listing" in message and str(tmp_path) in message, message
    else:
        folder.chmod(0)
        try:
            message = _error_of(calib)
        finally:
            folder.chmod(0o755)
        assert message == f"{folder}: permission denied while listing"


def _error_of(calib: Path) -> str:
    try:
        read_calib_dir(calib)
    except InputError as exc:
        return str(exc)
    return "no error"


def test_a_history_that_is_not_a_file_is_reported(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    folder = _make(calib)
    (folder / "HISTORY").unlink()
    (folder / "HISTORY").symlink_to(folder / "nowhere")  # a dangling link: not a file, so ignored
    found = read_ctype_folder(folder)
    assert [(i.name, i.reason) for i in found.ignored if i.name == "HISTORY"] == [
        ("HISTORY", "not a regular file")
    ]
    assert found.history == () and found.history_problems == ()


def test_a_data_file_that_is_not_a_text_array_is_named(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    path = _make(calib)
    (path / "5-end.data").write_text("# SHAPE (2,2)\n1 2 3\n")
    (path / "5-end.data-2021-02-03T04:05:06").write_text("1 two 3\n")
    folder = read_ctype_folder(path)
    current = next(c for c in folder.constants if c.name == "5-end.data")
    with pytest.raises(InputError, match=f"{path / '5-end.data'}: header says shape"):
        load_file(folder, current)
    backup = folder.backups_of("5-end.data")[1]
    with pytest.raises(InputError, match=f"{backup.path}: line 1, column 2: 'two' is not a number"):
        load_file(folder, backup)
    assert np.array_equal(
        load_file(folder, folder.backups_of("5-end.data")[0]), np.array([1, 2, 3], np.float32)
    )
