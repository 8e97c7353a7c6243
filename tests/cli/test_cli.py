"""The command line: every command's happy path and JSON, and bad input that must fail cleanly.

Most tests drive the app in process (typer's CliRunner); a few run the installed ``dcsync``
executable to check real exit codes and stderr. Every error test checks the documented exit code,
that the message names the input, that no traceback leaks, and that the repository still verifies
and holds what it held before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rich.progress
from rich.progress import Progress
from typer.testing import CliRunner

from dcsync.cli.context import State
from dcsync.cli.main import app
from dcsync.errors import EXIT_CODES
from dcsync.repo.repository import Repository
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace, open_repository

DET = "epix100a-3925868555"
T0 = "2024-01-01T00:00:00Z"
T0_S = 1704067200
GEOMETRY = (
    "# TITLE      Geometry parameters of CSPAD\n"
    "QUAD:V2   0  SENS2X1:V1 0  21136 -21106 0  90 0 0  0.1 0 0\n"
    "CSPAD:V2  0  QUAD:V2    0  -4500 -4500 0  90 0 0  0 0 0\n"
    "IP        0  CSPAD:V2   0  0 0 1000000    0 0 0  0 0 0\n"
)
REPO_ROOT = str(Path(__file__).resolve().parents[2])


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest.py isolates the environment; here tables are only kept from wrapping."""
    monkeypatch.setenv("COLUMNS", "200")


def C(ws: Path) -> list[str]:
    """``-C <workspace>``."""
    return ["-C", str(ws)]


def _flat(args: tuple[str | Path | list[str], ...]) -> list[str]:
    out: list[str] = []
    for a in args:
        out.extend(a if isinstance(a, list) else [str(a)])
    return out


def run(*args: str | Path | list[str], code: int = 0, env: dict[str, str] | None = None) -> Any:
    """Run the app in process; check the exit code and that no traceback leaked."""
    result = CliRunner().invoke(app, _flat(args), env=env)
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def run_json(*args: str | Path | list[str]) -> Any:
    return json.loads(run(*args, "--json").stdout)


def dcsync_exe() -> str:
    here = Path(sys.executable).parent / "dcsync"
    found = str(here) if here.exists() else shutil.which("dcsync")
    assert found, "the dcsync console script is not installed (pip install -e .)"
    return found


def exe(
    *args: str | Path, code: int = 0, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed executable."""
    full_env = {**os.environ, **env}
    proc = subprocess.run(
        [dcsync_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=120
    )
    assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def fails(result: Any, code: int, *names: str) -> str:
    """The common checks of a user error: one line on stderr naming the input, the right code."""
    assert code in EXIT_CODES and code != 0
    assert result.exit_code == code
    err = result.stderr
    assert err.startswith("dcsync: error: "), err
    for name in names:
        assert name in err, (name, err)
    assert "Traceback" not in result.output
    assert "this is a bug" not in err
    return str(err)


def run_fails(*args: str | Path | list[str], code: int, names: tuple[str, ...] = ()) -> str:
    return fails(run(*args, code=code), code, *names)


class Snapshot:
    """What a repository held before a failing command: it must hold exactly that afterwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with Repository.open(path) as repo:
            self.head = repo.head()
            self.log = len(repo.log())
            self.values = {c: _value(repo.get(c, at_ns=T0_S * 10**9 + 1).value) for c in repo.ctypes()}

    def check(self) -> None:
        report = verify_path(self.path)
        assert report.ok, report.problems
        with Repository.open(self.path) as repo:
            assert repo.head() == self.head
            assert len(repo.log()) == self.log
            now = {c: _value(repo.get(c, at_ns=T0_S * 10**9 + 1).value) for c in repo.ctypes()}
        assert now.keys() == self.values.keys()
        for ctype, value in self.values.items():
            np.testing.assert_array_equal(now[ctype], value)


def _value(v: Any) -> Any:
    return v if isinstance(v, str) else np.array(v)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with one detector (alias Cam1) holding pedestals and a geometry."""
    root = tmp_path / "calib"
    run("init", str(root))
    run("-C", str(root), "new", DET, "--alias", "Cam1", "-m", "first")
    ped = tmp_path / "ped.npy"
    np.save(ped, np.arange(12, dtype=np.float32).reshape(3, 4))
    run("-C", str(root), "add", "Cam1", "pedestals", ped, "--begin", T0, "-m", "darks")
    geo = tmp_path / "geo.data"
    geo.write_text(GEOMETRY)
    run("-C", str(root), "add", "Cam1", "geometry", str(geo), "--begin", T0)
    return root


@pytest.fixture
def repo_path(ws: Path) -> Path:
    return ws / "epix100a" / f"{DET}.h5"


@pytest.fixture
def snap(repo_path: Path) -> Iterator[Snapshot]:
    s = Snapshot(repo_path)
    yield s
    s.check()


def arr_file(tmp_path: Path, value: Any, name: str = "a.npy") -> Path:
    path = tmp_path / name
    np.save(path, np.asarray(value))
    return path


# -- global behaviour -----------------------------------------------------------------------------
def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("dcsync ")
    out = run("--help").stdout
    for command in (
        "init",
        "new",
        "add",
        "get",
        "ls",
        "show",
        "log",
        "default",
        "rm",
        "alias",
        "verify",
        "lock",
        "par",
    ):
        assert command in out


def test_exit_code_table_is_documented() -> None:
    doc = (Path(REPO_ROOT) / "docs" / "cli.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} " in doc, code
        assert meaning.split(":")[0] in doc


def test_unknown_option_is_a_usage_error(ws: Path) -> None:
    result = run(C(ws), "ls", "--bogus", code=2)
    assert "--bogus" in result.output


def test_no_workspace(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run_fails("-C", str(empty), "ls", code=3, names=(str(empty), "dcsync init"))


def test_unexpected_error_is_reported_as_a_bug(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: State) -> Workspace:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(State, "workspace", boom)
    result = run(C(ws), "ls", code=1)
    assert "this is a bug" in result.stderr and "kaboom" in result.stderr
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["-C", str(ws), "ls"], env={"DCSYNC_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "kaboom" in result.stderr


def test_keyboard_interrupt_exits_130(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: State) -> Workspace:
        raise KeyboardInterrupt

    monkeypatch.setattr(State, "workspace", interrupted)
    result = run(C(ws), "ls", code=130)
    assert "interrupted" in result.stderr


def test_system_error_is_not_called_a_bug(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("init", str(blocker / "x"), code=1)  # a real ENOTDIR from the OS
    assert "Not a directory" in result.stderr and str(blocker) in result.stderr
    assert "this is a bug" not in result.stderr


# -- init / new -----------------------------------------------------------------------------------
def test_init(tmp_path: Path) -> None:
    doc = run_json("init", str(tmp_path / "exp"), "--kind", "experiment")
    assert doc == {"workspace": str((tmp_path / "exp").resolve()), "kind": "experiment"}
    assert "initialized local workspace" in run("-C", str(tmp_path / "dflt"), "init").stdout
    run_fails("init", str(tmp_path / "exp"), code=5, names=(str(tmp_path / "exp"),))
    run_fails("init", str(tmp_path / "bad"), "--kind", "laptop", code=2, names=("laptop",))


def test_new(ws: Path) -> None:
    doc = run_json(C(ws), "new", "epix100a-99", "--predecessor", "Cam1", "--alias", "Cam2", "-m", "swap")
    assert doc["detector"] == "epix100a-99"
    assert doc["predecessor"] == DET and doc["alias"] == "Cam2"
    assert Path(doc["path"]).is_file()
    show = run_json(C(ws), "show", "Cam1")
    assert show["successor"] == "epix100a-99"
    assert "created jungfrau-1" in run(C(ws), "new", "jungfrau-1").stdout
    run_fails(C(ws), "new", "jungfrau-1", code=5, names=("jungfrau-1",))


@pytest.mark.parametrize(
    "name", ["EPIX-1", "epix/../evil-1", "../evil-1", "epix100a/x-1", "noseparator", "a..b-1"]
)
def test_new_refuses_bad_detector_names(ws: Path, repo_path: Path, snap: Snapshot, name: str) -> None:
    run_fails(C(ws), "new", name, code=2, names=(name,))
    assert sorted(p.name for p in ws.rglob("*.h5")) == [repo_path.name]


def test_new_refuses_taken_alias(ws: Path, snap: Snapshot) -> None:
    run_fails(C(ws), "new", "epix100a-7", "--alias", "Cam1", code=5, names=("Cam1",))
    assert not (ws / "epix100a" / "epix100a-7.h5").exists()


# -- add ------------------------------------------------------------------------------------------
def test_add_json_and_pars(ws: Path, tmp_path: Path) -> None:
    f = arr_file(tmp_path, np.ones((2, 2), dtype=np.uint16))
    doc = run_json(
        "-C",
        str(ws),
        "add",
        "Cam1",
        "pixel_status",
        str(f),
        "--begin",
        str(T0_S),
        "--end",
        "2024-02-01T00:00:00Z",
        "--par",
        "gain=1.5",
        "--par",
        "n=3",
        "--par",
        "ok=true",
        "--par",
        "mode=high",
        "--par",
        "neg=-2",
        "--par",
        "word=nan",
        "-m",
        "status from run 7",
    )
    assert doc["detector"] == DET and doc["ctype"] == "pixel_status"
    assert doc["range"] == f"{T0_S}-1706745600"
    assert doc["begin"] == T0 and doc["end"] == "2024-02-01T00:00:00Z"
    assert doc["dtype"] == "uint16" and doc["shape"] == [2, 2] and doc["pinned"] is True
    assert doc["pars"] == {"gain": 1.5, "n": 3, "ok": True, "mode": "high", "neg": -2, "word": "nan"}
    assert len(doc["version"]) == 12 and len(doc["object"]) == 32 and len(doc["commit"]) == 32
    log = run_json(C(ws), "log", "Cam1", "-n", "1")["entries"]
    assert log[0]["message"] == "status from run 7" and log[0]["command"] == "add"


def test_add_human_output_names_version_range_and_object(ws: Path, tmp_path: Path) -> None:
    f = arr_file(tmp_path, np.zeros(5, dtype=np.float64))
    out = run(C(ws), "add", DET, "pixel_rms", str(f), "--begin", "now").stdout
    assert "added epix100a-3925868555 pixel_rms range" in out
    assert "version " in out and "object " in out and "float64 (5,)" in out


def test_add_no_default_keeps_lookup(ws: Path, tmp_path: Path) -> None:
    before = run_json(C(ws), "get", "Cam1", "pedestals")
    f = arr_file(tmp_path, np.full((3, 4), 7, dtype=np.float32))
    doc = run_json(C(ws), "add", "Cam1", "pedestals", f, "--begin", T0, "--no-default")
    assert doc["pinned"] is False
    after = run_json(C(ws), "get", "Cam1", "pedestals")
    assert after["version"] == before["version"]
    pinned = run_json(C(ws), "get", "Cam1", "pedestals", "--version", doc["version"])
    assert pinned["stats"]["max"] == 7.0 and pinned["selection"] == "requested"


def test_add_text_array_and_path_outside_workspace(
    ws: Path, repo_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    txt = tmp_path / "gain.txt"
    txt.write_text("# SHAPE (2,3)\n# DATATYPE float32\n1 2 3\n4 5 6\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no workspace here: a path to the .h5 file still works
    doc = run_json("add", str(repo_path), "pixel_gain", str(txt), "--begin", T0)
    assert doc["shape"] == [2, 3] and doc["dtype"] == "float32"
    got = run_json("get", str(repo_path), "pixel_gain")
    assert got["stats"] == {"min": 1.0, "max": 6.0, "mean": 3.5, "nonfinite": 0}
    run_fails("ls", code=3, names=("dcsync init",))


def test_times_accept_iso_unix_and_now(ws: Path, tmp_path: Path) -> None:
    f = arr_file(tmp_path, [1, 2, 3])
    doc = run_json(
        C(ws),
        "add",
        "Cam1",
        "common_mode",
        str(f),
        "--begin",
        "2024-01-01T01:00:00+01:00",
        "--end",
        "1704070800.5",
    )
    assert doc["begin"] == T0 and doc["end"] == "2024-01-01T01:00:00.500Z"
    assert doc["range"] == "1704067200-1704070800.5"
    run_json(C(ws), "get", "Cam1", "common_mode", "--at", "2024-01-01T00:30:00")
    run_json(C(ws), "get", "Cam1", "pedestals", "--at", "now")


# -- get ------------------------------------------------------------------------------------------
def test_get_summary(ws: Path) -> None:
    out = run(C(ws), "get", "Cam1", "pedestals").stdout
    for text in (
        DET,
        "pedestals",
        f"{T0_S}-end",
        "[2024-01-01T00:00:00Z, end)",
        "(pinned)",
        "float32",
        "(3, 4)",
        "0 / 11 / 5.5",
    ):
        assert text in out, text
    doc = run_json(C(ws), "get", "Cam1", "pedestals", "--at", "2025-06-01")
    assert doc["begin"] == T0 and doc["end"] is None and doc["selection"] == "pinned"
    assert doc["stats"] == {"min": 0.0, "max": 11.0, "mean": 5.5, "nonfinite": 0}
    assert doc["kind"] == "array" and doc["shape"] == [3, 4] and doc["nbytes"] == 48


def test_get_text_constant(ws: Path) -> None:
    doc = run_json(C(ws), "get", "Cam1", "geometry")
    assert doc["kind"] == "text" and doc["stats"] == {"lines": 4, "chars": len(GEOMETRY)}
    assert "4 lines" in run(C(ws), "get", "Cam1", "geometry").stdout


@pytest.mark.parametrize("suffix", [".npy", ".txt", ".data"])
def test_get_output_round_trips(ws: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    doc = run_json(C(ws), "get", "Cam1", "pedestals", "-o", str(out))
    assert doc["output"] == str(out)
    back = np.load(out) if suffix == ".npy" else None
    if back is None:
        from dcsync.legacy.inputs import load_constant

        back = load_constant(out, "pedestals")
    np.testing.assert_array_equal(back, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert "wrote" in run(C(ws), "get", "Cam1", "pedestals", "-o", str(out)).stdout


def test_get_geometry_output_is_byte_exact(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "geo-out.data"
    run(C(ws), "get", "Cam1", "geometry", "-o", str(out))
    assert out.read_text() == GEOMETRY
    run_fails(C(ws), "get", "Cam1", "geometry", "-o", str(tmp_path / "g.npy"), code=2, names=("g.npy",))


# -- ls / show / log ------------------------------------------------------------------------------
def test_ls_workspace(ws: Path) -> None:
    doc = run_json(C(ws), "ls")
    assert doc["kind"] == "local" and doc["workspace"] == str(ws.resolve())
    assert doc["detectors"] == [
        {
            "detector": DET,
            "path": str(ws.resolve() / "epix100a" / f"{DET}.h5"),
            "aliases": ["Cam1"],
            "ctypes": 2,
            "checked_out": True,
        }
    ]
    out = run(C(ws), "ls").stdout
    assert DET in out and "Cam1" in out


def test_ls_detector_and_ctype(ws: Path, tmp_path: Path) -> None:
    f = arr_file(tmp_path, np.ones((3, 4), dtype=np.float32))
    run(C(ws), "add", "Cam1", "pedestals", f, "--begin", T0, "--no-default")
    doc = run_json(C(ws), "ls", "Cam1")
    assert doc["detector"] == DET
    assert {r["ctype"]: (r["ranges"], r["versions"]) for r in doc["ctypes"]} == {
        "geometry": (1, 1),
        "pedestals": (1, 2),
    }
    assert "pedestals" in run(C(ws), "ls", "Cam1").stdout
    doc = run_json(C(ws), "ls", "Cam1", "pedestals")
    (rng,) = doc["ranges"]
    assert rng["range"] == f"{T0_S}-end" and rng["selection"] == "pinned" and len(rng["versions"]) == 2
    assert [v["default"] for v in rng["versions"]] == [True, False]
    out = run(C(ws), "ls", "Cam1", "pedestals").stdout
    assert rng["versions"][0]["version"] in out and "*" in out


def test_show(ws: Path) -> None:
    run(C(ws), "par", "set", "Cam1", "pedestals", "--range", str(T0_S), "note=ok")
    doc = run_json(C(ws), "show", "Cam1")
    assert doc["detector"] == DET and doc["dettype"] == "epix100a" and doc["detid"] == "3925868555"
    (rng,) = doc["ctypes"]["pedestals"]["ranges"].values()
    assert rng["pars"] == {"note": "ok"} and rng["selection"] == "pinned"
    (ver,) = rng["versions"].values()
    assert ver["default"] is True and ver["dtype"] == "float32" and ver["shape"] == [3, 4]
    assert ver["author"] and ver["produced"].endswith("Z")
    out = run(C(ws), "show", "Cam1").stdout
    for text in ("pedestals", "geometry", f"{T0_S}-end", "* ", "float32 (3, 4)", "pinned", "note=ok"):
        assert text in out, text


def test_log(ws: Path, tmp_path: Path) -> None:
    run(C(ws), "new", "jungfrau-1", "-m", "jf")
    entries = run_json(C(ws), "log", "Cam1")["entries"]
    assert [e["command"] for e in entries] == ["add", "add", "create"]
    assert entries[-1]["message"] == "first" and entries[-1]["old"] is None
    assert entries[0]["old"] == entries[1]["new"]
    assert run_json(C(ws), "log", "Cam1", "-n", "1")["entries"] == entries[:1]
    merged = run_json(C(ws), "log")["entries"]
    assert len(merged) == 4 and merged[0]["detector"] == "jungfrau-1"
    assert [e["time"] for e in merged] == sorted((e["time"] for e in merged), reverse=True)
    out = run(C(ws), "log").stdout
    assert "jungfrau-1" in out and "create" in out and "→" in out


# -- default / rm ---------------------------------------------------------------------------------
def test_default_pin_and_unset(ws: Path, tmp_path: Path) -> None:
    first = run_json(C(ws), "get", "Cam1", "pedestals")["version"]
    f = arr_file(tmp_path, np.ones((3, 4), dtype=np.float32))
    second = run_json(C(ws), "add", "Cam1", "pedestals", f, "--begin", T0)["version"]
    doc = run_json(C(ws), "default", "Cam1", "pedestals", first[:6])
    assert doc["default"] == first and doc["effective"] == first and doc["commit"]
    assert run_json(C(ws), "get", "Cam1", "pedestals")["version"] == first
    doc = run_json(C(ws), "default", "Cam1", "pedestals", "--unset", "--range", str(T0_S))
    assert doc["default"] is None and doc["effective"] == second and doc["selection"] == "latest"
    got = run_json(C(ws), "get", "Cam1", "pedestals")
    assert got["version"] == second and got["selection"] == "latest"
    assert "pinned" in run(C(ws), "default", "Cam1", "pedestals", second).stdout


def test_default_usage_errors(ws: Path, snap: Snapshot) -> None:
    run_fails(C(ws), "default", "Cam1", "pedestals", code=2, names=("--unset",))
    run_fails(C(ws), "default", "Cam1", "pedestals", "--unset", code=2, names=("--range",))


def test_rm(ws: Path, tmp_path: Path) -> None:
    f = arr_file(tmp_path, np.ones((3, 4), dtype=np.float32))
    v2 = run_json(C(ws), "add", "Cam1", "pedestals", f, "--begin", T0, "--end", "2030-01-01")["version"]
    doc = run_json(C(ws), "rm", "Cam1", "pedestals", "--version", v2, "-m", "bad dark run")
    assert doc["removed"] == [f"pedestals {T0_S}-1893456000 {v2}"]
    assert run_json(C(ws), "log", "Cam1", "-n", "1")["entries"][0]["message"] == "bad dark run"
    assert "removed" in run(C(ws), "rm", "Cam1", "pedestals", "--range", str(T0_S), "-m", "gone").stdout
    run_fails(C(ws), "get", "Cam1", "pedestals", code=3, names=("pedestals",))
    run(C(ws), "rm", "Cam1", "geometry", "-m", "whole ctype")
    assert run_json(C(ws), "ls", "Cam1")["ctypes"] == []
    report = verify_path(ws / "epix100a" / f"{DET}.h5")
    assert report.ok, report.problems


def test_rm_needs_a_message(ws: Path, snap: Snapshot) -> None:
    run_fails(C(ws), "rm", "Cam1", "pedestals", code=2, names=("-m",))
    run_fails(C(ws), "rm", "Cam1", "pedestals", "-m", "  ", code=2, names=("-m",))


# -- alias / par ----------------------------------------------------------------------------------
def test_alias(ws: Path) -> None:
    doc = run_json(C(ws), "alias", "add", "XppGon.0:Epix100a.1", "Cam1")
    assert doc["alias"] == "XppGon.0:Epix100a.1" and doc["detector"] == DET
    assert run_json(C(ws), "get", "XppGon.0:Epix100a.1", "pedestals")["detector"] == DET
    aliases = run_json(C(ws), "alias", "ls")["aliases"]
    assert [a["alias"] for a in aliases] == ["Cam1", "XppGon.0:Epix100a.1"]
    assert "XppGon.0:Epix100a.1" in run(C(ws), "alias", "ls").stdout
    assert run_json(C(ws), "alias", "rm", "Cam1")["detector"] == DET
    run_fails(C(ws), "get", "Cam1", "pedestals", code=3, names=("Cam1",))
    run_fails(C(ws), "alias", "rm", "Cam1", code=3, names=("Cam1",))
    run_fails(C(ws), "alias", "add", "Bad/Alias", DET, code=2, names=("Bad/Alias",))
    run_fails(C(ws), "alias", "add", "Cam9", "nosuch-1", code=3, names=("nosuch-1",))
    run_fails(C(ws), "alias", "add", "Cam9", "Bad/../Det", code=2, names=("Bad/../Det",))


def test_par_set(ws: Path) -> None:
    doc = run_json(C(ws), "par", "set", "Cam1", "site=xpp", "n=2")
    assert doc["set"] == {"site": "xpp", "n": 2} and doc["ctype"] is None
    assert run_json(C(ws), "show", "Cam1")["pars"] == {"site": "xpp", "n": 2}
    version = run_json(C(ws), "get", "Cam1", "pedestals")["version"]
    run(C(ws), "par", "set", "Cam1", "pedestals", "--version", version, "run=42", "gain=0.5")
    assert run_json(C(ws), "get", "Cam1", "pedestals")["pars"] == {"run": 42, "gain": 0.5}
    run(C(ws), "par", "set", "Cam1", "pedestals", "--version", version, "--unset", "gain")
    assert run_json(C(ws), "get", "Cam1", "pedestals")["pars"] == {"run": 42}
    run(C(ws), "par", "set", "Cam1", "pedestals", "calib=yes")
    assert run_json(C(ws), "show", "Cam1")["ctypes"]["pedestals"]["pars"] == {"calib": "yes"}
    run_fails(C(ws), "par", "set", "Cam1", "pedestals", code=2, names=("KEY=VALUE",))
    run_fails(C(ws), "par", "set", "Cam1", "bad key=1", code=2, names=("bad key",))


# -- verify ---------------------------------------------------------------------------------------
def test_verify_ok(ws: Path) -> None:
    run(C(ws), "new", "jungfrau-1")
    doc = run_json(C(ws), "verify")
    assert doc["ok"] is True and len(doc["repositories"]) == 2
    assert all(r["ok"] and r["objects"] > 0 for r in doc["repositories"])
    assert run(C(ws), "verify", "Cam1").stdout.startswith("ok ")


def test_verify_progress_on_a_terminal(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dcsync.cli.verify as verify_cmd

    advanced: list[float] = []

    class Recording(Progress):
        def advance(self, task_id: Any, advance: float = 1) -> None:
            advanced.append(advance)
            super().advance(task_id, advance)

    monkeypatch.setattr(rich.progress, "Progress", Recording)  # verify imports it when it draws a bar
    monkeypatch.setattr(verify_cmd, "PROGRESS_MIN_OBJECTS", 1)
    result = run(C(ws), "verify", "--json", env={"TTY_COMPATIBLE": "1"})
    (report,) = json.loads(result.stdout)["repositories"]
    assert report["ok"] and sum(advanced) == report["objects"] > 0


@pytest.mark.parametrize("cut", [2000, 0.5])
def test_verify_truncated_repository(
    ws: Path, repo_path: Path, snap: Snapshot, tmp_path: Path, cut: float
) -> None:
    bad = tmp_path / "copy" / f"{DET}.h5"
    bad.parent.mkdir()
    shutil.copy(repo_path, bad)
    size = bad.stat().st_size
    os.truncate(bad, size - int(cut) if cut >= 1 else int(size * cut))
    result = run(C(ws), "verify", str(bad), "--json", code=5)
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["repositories"][0]["problems"]
    fails(result, 5, str(bad))
    human = run(C(ws), "verify", "Cam1", str(bad), code=5)
    assert human.stdout.startswith("ok ") and f"FAILED  {bad}" in human.stdout


def test_not_hdf5_repository(ws: Path, snap: Snapshot) -> None:
    junk = ws / "epix100a" / "epix100a-666.h5"
    junk.write_text("this is not HDF5\n")
    run_fails(C(ws), "get", "epix100a-666", "pedestals", code=5, names=(str(junk),))
    run_fails(C(ws), "get", str(junk), "pedestals", code=5, names=(str(junk),))
    result = run(C(ws), "verify", "--json", code=5)
    by_path = {r["repository"]: r for r in json.loads(result.stdout)["repositories"]}
    assert by_path[str(junk)]["ok"] is False and by_path[str(snap.path.resolve())]["ok"] is True
    result = run(C(ws), "ls", "--json", code=5)
    rows = {r["detector"]: r for r in json.loads(result.stdout)["detectors"]}
    assert rows[DET]["ctypes"] == 2 and "not a readable HDF5 file" in rows["epix100a-666"]["error"]
    fails(result, 5, str(junk))
    result = run(C(ws), "log", "--json", code=5)
    assert {e["detector"] for e in json.loads(result.stdout)["entries"]} == {DET}
    fails(result, 5, str(junk))


# -- bad input ------------------------------------------------------------------------------------
def test_missing_input_file(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    missing = tmp_path / "nope.npy"
    run_fails(C(ws), "add", "Cam1", "pedestals", missing, "--begin", T0, code=4, names=(str(missing),))


def test_unreadable_input_file(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    folder = tmp_path / "adir.npy"
    folder.mkdir()
    run_fails(C(ws), "add", "Cam1", "pedestals", folder, "--begin", T0, code=4, names=(str(folder),))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x80\x04 definitely not an npy file")
    run_fails(C(ws), "add", "Cam1", "pedestals", garbage, "--begin", T0, code=4, names=(str(garbage),))
    if os.geteuid() != 0:  # root reads anything
        locked = arr_file(tmp_path, [1.0], "locked.npy")
        locked.chmod(0)
        run_fails(C(ws), "add", "Cam1", "pedestals", locked, "--begin", T0, code=4, names=(str(locked),))


class _Trap:
    """Unpickling this creates a directory: proof that something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_object_npy_is_refused_and_never_unpickled(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    control, marker = tmp_path / "control-marker", tmp_path / "marker"
    trap = tmp_path / "trap.npy"
    np.save(tmp_path / "control.npy", np.array([_Trap(control)], dtype=object), allow_pickle=True)
    np.load(tmp_path / "control.npy", allow_pickle=True)
    assert control.is_dir()  # the trap works when something does unpickle
    np.save(trap, np.array([_Trap(marker)], dtype=object), allow_pickle=True)
    err = run_fails(C(ws), "add", "Cam1", "pedestals", trap, "--begin", T0, code=4, names=(str(trap),))
    assert "object" in err
    assert not marker.exists()


def test_text_array_header_disagrees_with_data(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    bad = tmp_path / "ped.data"
    bad.write_text("# SHAPE (2,3)\n# DATATYPE float32\n1 2 3\n4 5 6\n7 8 9\n")
    run_fails(C(ws), "add", "Cam1", "pedestals", bad, "--begin", T0, code=4, names=(str(bad),))
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("1 2 3\n4 5\n")
    run_fails(C(ws), "add", "Cam1", "pedestals", ragged, "--begin", T0, code=4, names=(str(ragged),))


def test_bad_geometry(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    bad = tmp_path / "geo.txt"
    bad.write_text("IP 0 CSPAD:V2 0 0 0\n")
    run_fails(C(ws), "add", "Cam1", "geometry", str(bad), "--begin", T0, code=4, names=(str(bad),))


@pytest.mark.parametrize(("begin", "end"), [("2024-02-01", T0), (T0, T0), ("200", "100")])
def test_end_not_after_begin(ws: Path, tmp_path: Path, snap: Snapshot, begin: str, end: str) -> None:
    f = arr_file(tmp_path, [1, 2])
    run_fails(
        C(ws), "add", "Cam1", "pedestals", f, "--begin", begin, "--end", end, code=2, names=(begin, end)
    )


@pytest.mark.parametrize("when", ["yesterday", "2024-13-01", "12:00 tomorrow", ""])
def test_invalid_time(ws: Path, tmp_path: Path, snap: Snapshot, when: str) -> None:
    f = arr_file(tmp_path, [1, 2])
    run_fails(C(ws), "add", "Cam1", "pedestals", f, "--begin", when, code=2, names=(repr(when),))
    run_fails(C(ws), "get", "Cam1", "pedestals", "--at", when, code=2, names=(repr(when),))


def test_bad_par_and_ctype(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    f = arr_file(tmp_path, [1, 2])
    run_fails(
        C(ws), "add", "Cam1", "pedestals", f, "--begin", T0, "--par", "novalue", code=2, names=("novalue",)
    )
    run_fails(
        C(ws), "add", "Cam1", "pedestals", f, "--begin", T0, "--par", "bad key=1", code=2, names=("bad key",)
    )
    run_fails(C(ws), "add", "Cam1", "Pedestals", str(f), "--begin", T0, code=2, names=("Pedestals",))


@pytest.mark.parametrize("name", ["nosuch-1", "EPIX100A-3925868555", "Cam7", "epix100a/../x.h5", "../x/y.h5"])
def test_unknown_detector(ws: Path, snap: Snapshot, name: str) -> None:
    run_fails(C(ws), "get", name, "pedestals", code=3, names=(name,))
    run_fails(C(ws), "ls", name, code=3, names=(name,))
    run_fails(C(ws), "verify", name, code=3, names=(name,))


def test_unknown_ctype_range_version(ws: Path, snap: Snapshot) -> None:
    run_fails(C(ws), "get", "Cam1", "pixel_mask", code=3, names=("pixel_mask",))
    run_fails(C(ws), "ls", "Cam1", "pixel_mask", code=3, names=("pixel_mask",))
    run_fails(C(ws), "get", "Cam1", "pedestals", "--version", "ffffffff", code=3, names=("ffffffff",))
    run_fails(C(ws), "get", "Cam1", "pedestals", "--at", "2000-01-01", code=3, names=("2000-01-01",))
    run_fails(C(ws), "default", "Cam1", "pedestals", "--unset", "--range", "99", code=3, names=("'99'",))
    run_fails(C(ws), "default", "Cam1", "pedestals", "ffffffff", code=3, names=("ffffffff",))
    run_fails(C(ws), "rm", "Cam1", "pedestals", "--range", "99", "-m", "x", code=3, names=("'99'",))
    run_fails(C(ws), "rm", "Cam1", "pedestals", "--version", "fffffff", "-m", "x", code=3, names=("fffffff",))
    run_fails(C(ws), "rm", "Cam1", "pixel_mask", "-m", "x", code=3, names=("pixel_mask",))


def test_ambiguous_version_prefix(ws: Path, repo_path: Path) -> None:
    with open_repository(repo_path) as repo, repo.transaction("many") as tx:
        keys = [tx.add("pixel_bkgd", np.full(2, i), begin_ns=T0_S * 10**9).version for i in range(17)]
    prefix = next(k[0] for k in keys if sum(x[0] == k[0] for x in keys) > 1)  # 17 keys, 16 digits
    s = Snapshot(repo_path)
    err = run_fails(C(ws), "get", "Cam1", "pixel_bkgd", "--version", prefix, code=2, names=(repr(prefix),))
    assert "ambiguous" in err
    run_fails(C(ws), "default", "Cam1", "pixel_bkgd", prefix, code=2, names=(repr(prefix),))
    run_fails(
        C(ws), "rm", "Cam1", "pixel_bkgd", "--version", prefix, "-m", "x", code=2, names=(repr(prefix),)
    )
    s.check()


# -- locks ----------------------------------------------------------------------------------------
@pytest.fixture
def held_lock(repo_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another live process holding the repository's write lock."""
    code = (
        "import sys, time\n"
        "from dcsync.store.locking import FileLock\n"
        "lock = FileLock(sys.argv[1], command='dcsync add (test holder)')\n"
        "lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(repo_path)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            yield proc
        finally:
            proc.kill()
            proc.wait()


def test_lock_timeout_names_the_holder(
    ws: Path, tmp_path: Path, snap: Snapshot, held_lock: subprocess.Popen[str]
) -> None:
    f = arr_file(tmp_path, np.ones((3, 4), dtype=np.float32))
    started = time.monotonic()
    err = run_fails(
        C(ws),
        "--lock-timeout",
        "0.3",
        "add",
        "Cam1",
        "pedestals",
        f,
        "--begin",
        T0,
        code=6,
        names=(f"pid {held_lock.pid}", "test holder", "within 0.3 s"),
    )
    assert "@" in err
    assert time.monotonic() - started < 10
    result = run(C(ws), "rm", "Cam1", "pedestals", "-m", "x", code=6, env={"DCSYNC_LOCK_TIMEOUT": "0.2"})
    fails(result, 6, f"pid {held_lock.pid}")
    # reading never waits for a writer
    assert run_json(C(ws), "get", "Cam1", "pedestals")["detector"] == DET


def test_lock_status_and_break(
    ws: Path, repo_path: Path, snap: Snapshot, held_lock: subprocess.Popen[str]
) -> None:
    (row,) = run_json(C(ws), "lock", "status")["locks"]
    assert row["locked"] is True and row["stale"] is False
    assert row["holder"]["pid"] == held_lock.pid and row["holder"]["command"] == "dcsync add (test holder)"
    assert "held" in run(C(ws), "lock", "status", "Cam1").stdout
    run_fails(C(ws), "lock", "break", "Cam1", code=6, names=(str(repo_path), f"pid {held_lock.pid}"))
    doc = run_json(C(ws), "lock", "break", "Cam1", "--force")
    assert doc["broken"] is True and doc["holder"]["pid"] == held_lock.pid
    (row,) = run_json(C(ws), "lock", "status", "Cam1")["locks"]
    assert row["locked"] is False and row["holder"] is None
    assert "not locked" in run(C(ws), "lock", "break", "Cam1").stdout


def test_stale_lock_is_broken_without_force(ws: Path, repo_path: Path, snap: Snapshot) -> None:
    holder = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(holder.stdout)
    lock = Path(str(repo_path) + ".lock")
    lock.write_text(
        json.dumps(
            {
                "user": "alice",
                "host": os.uname().nodename,
                "pid": dead_pid,
                "start": time.time_ns(),
                "token": "a" * 32,
                "command": "crashed",
            }
        )
    )
    (row,) = run_json(C(ws), "lock", "status")["locks"]
    assert row["stale"] is True
    assert "STALE" in run(C(ws), "lock", "status").stdout
    assert run_json(C(ws), "lock", "break", "Cam1")["broken"] is True
    assert not lock.exists()


# -- the installed executable ---------------------------------------------------------------------
def test_executable_version_and_happy_path(ws: Path, tmp_path: Path) -> None:
    assert exe("--version").stdout.startswith("dcsync ")
    f = arr_file(tmp_path, np.full((3, 4), 2, dtype=np.int32))
    added = json.loads(exe("add", "Cam1", "pixel_status", str(f), "--begin", T0, "--json", cwd=ws).stdout)
    got = json.loads(exe("get", "Cam1", "pixel_status", "--json", cwd=ws / "epix100a").stdout)
    assert got["version"] == added["version"] and got["stats"]["mean"] == 2.0
    assert exe("-C", str(ws), "verify").stdout.startswith("ok ")


def test_executable_errors(ws: Path, tmp_path: Path, snap: Snapshot) -> None:
    missing = tmp_path / "missing.npy"
    proc = exe("-C", str(ws), "add", "Cam1", "pedestals", missing, "--begin", T0, code=4)
    assert str(missing) in proc.stderr and proc.stdout == ""
    assert proc.stderr.startswith("dcsync: error: ") and proc.stderr.count("\n") == 1
    proc = exe("-C", str(ws), "get", "nosuch-1", "pedestals", code=3)
    assert "nosuch-1" in proc.stderr
    proc = exe("-C", str(ws), "new", "Bad/Name", code=2)
    assert "Bad/Name" in proc.stderr
    proc = exe("-C", str(ws), "add", "Cam1", "pedestals", missing, "--begin", "whenever", code=2)
    assert "whenever" in proc.stderr
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\0" * 100)
    proc = exe("get", str(junk), "pedestals", code=5, cwd=tmp_path)
    assert str(junk) in proc.stderr
    proc = exe("verify", str(junk), code=5, cwd=tmp_path)
    assert "FAILED" in proc.stdout and str(junk) in proc.stderr


def test_executable_lock_timeout(
    ws: Path, tmp_path: Path, snap: Snapshot, held_lock: subprocess.Popen[str]
) -> None:
    f = arr_file(tmp_path, np.ones((3, 4), dtype=np.float32))
    proc = exe("-C", str(ws), "add", "Cam1", "pedestals", f, "--begin", T0, code=6, DCSYNC_LOCK_TIMEOUT="0.3")
    assert f"pid {held_lock.pid}" in proc.stderr and "could not lock" in proc.stderr
    proc = exe("-C", str(ws), "lock", "status", "--json")
    assert json.loads(proc.stdout)["locks"][0]["holder"]["pid"] == held_lock.pid


def test_executable_interrupt_exits_130(ws: Path) -> None:
    code = (
        "import sys\n"
        "from dcsync.cli import main\n"
        "from dcsync.cli.context import State\n"
        "def interrupted(self):\n"
        "    raise KeyboardInterrupt\n"
        "State.workspace = interrupted\n"
        "sys.argv = ['dcsync', '-C', sys.argv[1], 'ls']\n"
        "main.run()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(ws)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and "interrupted" in proc.stderr
    assert "Traceback" not in proc.stderr
