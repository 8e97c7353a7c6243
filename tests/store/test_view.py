"""The seed-schema view: plain h5py users read HEAD's constants without dcsync.

The reading side of these tests uses only h5py, numpy and json (one test runs it in a child process
that asserts dcsync was never imported); dcsync only writes the file, and ``verify`` must notice
when someone edits the view by hand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcsync.repo.repository import Repository
from dcsync.repo.verify import verify_file

S = 10**9
T1, T2, T3 = 1_700_000_000 * S, 1_700_003_600 * S, 1_700_007_200 * S
TSEND_OPEN = 2**63 - 1

# -- the bare-h5py reader (no dcsync) -------------------------------------------------------------

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
_spec = importlib.util.spec_from_file_location("view_reader", HELPERS / "view_reader.py")
assert _spec is not None and _spec.loader is not None
_reader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reader)
read_view = _reader.read_view


def calib_path(ctype: str, rkey: str, vkey: str) -> str:
    return f"/{ctype}/{rkey}/{vkey}/calib"


def object_path(oid: str) -> str:
    return f"/.dcsync/objects/{oid[:2]}/{oid[2:]}"


# -- a repository to look at ---------------------------------------------------------------------


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    path = tmp_path / "epix100a-3925868555.h5"
    repo = Repository.create(path, "epix100a-3925868555", predecessor="epix100a-1")
    with repo.transaction("pedestals from run 12") as tx:
        tx.add(
            "pedestals",
            np.arange(12, dtype=np.float32).reshape(3, 4),
            begin_ns=T1,
            end_ns=None,
            tsprod_ns=T1 + 1,
        )
        tx.add(
            "pedestals",
            np.full((3, 4), 5.0, dtype=np.float32),
            begin_ns=T2,
            end_ns=T3,
            pars={"run": 12},
            tsprod_ns=T2 + 1,
        )
        tx.add("geometry", "detector geometry é\n", begin_ns=T1, end_ns=None, tsprod_ns=T1 + 2)
    with repo.transaction("pars and links") as tx:
        tx.set_pars({"site": "xpp"})
        tx.set_pars({"units": "adu"}, ctype="pedestals")
        tx.set_pars({"quality": "good"}, ctype="pedestals", range=f"{T1 // S}-end")
        tx.set_links(successor="epix100a-2")
    with repo.transaction("a second version") as tx:
        tx.add(
            "pedestals",
            np.full((3, 4), 9.0, dtype=np.float32),
            begin_ns=T1,
            end_ns=None,
            make_default=False,
            tsprod_ns=T1 + 5,
        )
    repo.close()
    return path


def open_range_key() -> str:
    return f"{T1 // S}-end"


def test_root_attributes(repo_path: Path) -> None:
    view = read_view(str(repo_path))
    root = view["root"]
    assert root["dettype"] == "epix100a"
    assert root["detid"] == "3925868555"
    assert root["detname"] == "epix100a-3925868555"
    assert root["predecessor"] == "epix100a-1"
    assert root["successor"] == "epix100a-2"
    assert root["dictpars"] == {"site": "xpp"}
    with Repository.open(repo_path) as repo:
        assert root["tscfile"] == repo.root().created
        commits = [cid for cid, _ in repo.commits()]
    # the root's history: created, then pars and links changed (the adds changed which ctypes exist)
    messages = [h["message"] for h in root["history"]]
    assert messages[0].startswith("create")
    assert "pars and links" in messages
    assert "a second version" not in messages  # it changed nothing at the root level
    assert {h["commit"] for h in root["history"]} <= set(commits)


def test_ranges_versions_and_defaults(repo_path: Path) -> None:
    view = read_view(str(repo_path))
    assert set(view["ctypes"]) == {"pedestals", "geometry"}
    ped = view["ctypes"]["pedestals"]
    assert ped["dictpars"] == {"units": "adu"}
    assert set(ped["ranges"]) == {open_range_key(), f"{T2 // S}-{T3 // S}"}

    open_range = ped["ranges"][open_range_key()]
    assert open_range["tsbegin"] == T1
    assert open_range["tsend"] == TSEND_OPEN
    assert open_range["dictpars"] == {"quality": "good"}
    assert len(open_range["versions"]) == 2
    # versions oldest first, with their production times
    order = sorted(open_range["versions"], key=lambda k: open_range["versions"][k]["tsprod"])
    assert open_range["versions_attr"] == order
    assert open_range["tsvers"] == [T1 + 1, T1 + 5]
    first, second = order
    # the second was added with make_default=False: the first stays pinned and effective
    assert open_range["defaultv"] == first
    assert open_range["effectivev"] == first
    assert open_range["versions"][first]["value"] == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()
    assert open_range["versions"][second]["value"] == np.full((3, 4), 9.0).tolist()
    assert open_range["versions"][first]["dtype"] == "float32"

    closed = ped["ranges"][f"{T2 // S}-{T3 // S}"]
    assert (closed["tsbegin"], closed["tsend"]) == (T2, T3)
    (only,) = closed["versions"]
    assert closed["versions"][only]["dictpars"] == {"run": 12}
    assert closed["effectivev"] == only

    geo = view["ctypes"]["geometry"]["ranges"][open_range_key()]
    (gv,) = geo["versions"]
    assert geo["versions"][gv]["value"] == "detector geometry é\n"


def test_history_json_on_every_level(repo_path: Path) -> None:
    view = read_view(str(repo_path))
    ped = view["ctypes"]["pedestals"]
    for entry in ped["history"]:
        assert set(entry) >= {"commit", "time", "author", "host", "message"}
    assert [h["message"] for h in ped["history"]] == ["pedestals from run 12", "pars and links"]
    rng = ped["ranges"][open_range_key()]
    assert [h["message"] for h in rng["history"]] == [
        "pedestals from run 12",
        "pars and links",
        "a second version",
    ]
    for v in rng["versions"].values():
        assert len(v["history"]) == 1


def test_view_matches_the_api(repo_path: Path) -> None:
    view = read_view(str(repo_path))
    with Repository.open(repo_path) as repo:
        for ctype in repo.ctypes():
            for rkey, tree in repo.ranges(ctype):
                shown = view["ctypes"][ctype]["ranges"][rkey]
                assert shown["effectivev"] == tree.effective()
                assert shown["defaultv"] == (tree.default or "")
                assert set(shown["versions"]) == set(tree.versions)
                for vkey in tree.versions:
                    value = repo.get(ctype, version=vkey).value
                    expected = value if isinstance(value, str) else value.tolist()
                    assert shown["versions"][vkey]["value"] == expected


def test_reader_needs_no_dcsync(repo_path: Path, tmp_path: Path) -> None:
    script = tmp_path / "bare_reader.py"
    script.write_text((HELPERS / "view_reader.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(repo_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(json.dumps(read_view(str(repo_path))))


def test_calib_is_a_hard_link_to_the_object(repo_path: Path) -> None:
    with Repository.open(repo_path) as repo:
        entries = [
            (ctype, rkey, vkey, tree.versions[vkey].obj)
            for ctype in repo.ctypes()
            for rkey, tree in repo.ranges(ctype)
            for vkey in tree.versions
        ]
    size_before = repo_path.stat().st_size
    with h5py.File(repo_path, "r") as f:
        for ctype, rkey, vkey, oid in entries:
            group = f[f"/{ctype}/{rkey}/{vkey}"]
            assert isinstance(group.get("calib", getlink=True), h5py.HardLink)
            calib, target = f[calib_path(ctype, rkey, vkey)], f[object_path(oid)]
            info_calib, info_target = h5py.h5o.get_info(calib.id), h5py.h5o.get_info(target.id)
            assert info_calib.addr == info_target.addr  # the same object, not a copy
            assert info_target.rc >= 2  # referenced by the objects group and by the view
            assert target.attrs["k"] in ("array", "text")
    assert repo_path.stat().st_size == size_before


def test_view_follows_removals_and_default_changes(repo_path: Path) -> None:
    rkey = open_range_key()
    before = read_view(str(repo_path))["ctypes"]["pedestals"]["ranges"][rkey]
    first, second = before["versions_attr"]
    repo = Repository.open(repo_path)

    with repo.transaction("pin the second") as tx:
        tx.set_default("pedestals", second, range=rkey)
    shown = read_view(str(repo_path))["ctypes"]["pedestals"]["ranges"][rkey]
    assert (shown["defaultv"], shown["effectivev"]) == (second, second)

    with repo.transaction("unpin") as tx:
        tx.set_default("pedestals", None, range=rkey)
    shown = read_view(str(repo_path))["ctypes"]["pedestals"]["ranges"][rkey]
    assert shown["defaultv"] == ""
    assert shown["effectivev"] == second  # the most recently produced

    with repo.transaction("drop the second") as tx:
        tx.remove("pedestals", range=rkey, version=second)
    shown = read_view(str(repo_path))["ctypes"]["pedestals"]["ranges"][rkey]
    assert list(shown["versions"]) == [first]
    assert shown["versions_attr"] == [first]
    assert shown["effectivev"] == first
    with h5py.File(repo_path, "r") as f:
        assert f"/pedestals/{rkey}/{second}" not in f

    with repo.transaction("drop a range") as tx:
        tx.remove("pedestals", range=f"{T2 // S}-{T3 // S}")
    assert set(read_view(str(repo_path))["ctypes"]["pedestals"]["ranges"]) == {rkey}

    with repo.transaction("drop geometry") as tx:
        tx.remove("geometry")
    view = read_view(str(repo_path))
    assert set(view["ctypes"]) == {"pedestals"}
    assert "drop geometry" in [h["message"] for h in view["root"]["history"]]

    with repo.transaction("new ctype") as tx:
        tx.add("pixel_gain", np.ones(4, dtype=np.float64), begin_ns=T1, end_ns=None)
    assert set(read_view(str(repo_path))["ctypes"]) == {"pedestals", "pixel_gain"}
    repo.close()
    assert verify_file(repo_path).ok


# -- verify notices a hand-edited view -----------------------------------------------------------


def tamper(path: Path, how: str) -> None:
    rkey = open_range_key()
    with h5py.File(path, "r+") as f:
        rng = f[f"/pedestals/{rkey}"]
        first, second = (str(x) for x in rng.attrs["versions"])
        if how == "copy":  # same values, but a copy instead of the link
            data = rng[f"{first}/calib"][()]
            del rng[f"{first}/calib"]
            rng[f"{first}/calib"] = data
        elif how == "relink":  # points at the other version's object
            del rng[f"{first}/calib"]
            rng[f"{first}/calib"] = rng[f"{second}/calib"]
        elif how == "delete-version":
            del rng[second]
        elif how == "delete-ctype":
            del f["/geometry"]
        elif how == "extra-ctype":
            f.create_group("/pixel_mask")
        elif how == "view-commit":
            f["/.dcsync"].attrs["view"] = "0" * 32
        else:
            raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["copy", "relink", "delete-version", "delete-ctype", "extra-ctype", "view-commit"]
)
def test_verify_catches_a_tampered_view(repo_path: Path, how: str) -> None:
    assert verify_file(repo_path).ok
    tamper(repo_path, how)
    report = verify_file(repo_path)
    assert not report.ok, how
    assert any("view" in p for p in report.problems), report.problems
