"""What the command line shows: readable ``--help``, progress bars, human text without Python's
``None``, one JSON document on stdout also when a ``--json`` command fails, and the way out of a
pull conflict that the conflict report names.

The sync scenarios run real commands on real workspaces: a ``central`` workspace and a ``laptop``
cloned from it by path (a ``dcsync serve`` subprocess over pipes).
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from dcsync.cli.main import app
from dcsync.repo.repository import Repository
from dcsync.workspace.verify import verify_path

DET = "epix100a-0001"
T0 = "2024-01-01T00:00:00Z"


@pytest.fixture(autouse=True)
def _wide_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def run(*args: str | Path, code: int = 0) -> Any:
    """Run the app in process; check the exit code and that no traceback leaked."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def npy(path: Path, value: float, shape: tuple[int, ...] = (4, 4)) -> Path:
    np.save(path, np.full(shape, value, np.float32))
    return path


def dcsync_exe() -> str:
    exe = Path(sys.executable).parent / "dcsync"
    assert exe.exists(), "the dcsync console script is not installed (pip install -e .)"
    return str(exe)


# -- --help ---------------------------------------------------------------------------------------
def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


# What typer prints when a parameter has no readable name: {ctype}, <bool>, <list[str]>, <path>,
# <int range>, [[DET]] ...
PLACEHOLDER = re.compile(r"[{}]|\[\[|\]\]|<[a-z][a-z_ ]*(\[[^\]]*\])?>")


def test_every_help_names_arguments_and_options_readably() -> None:
    commands = list(_commands(get_command(app), []))
    assert len(commands) > 30  # the walk reached the nested groups (remote, acl, hooks, ...)
    for path, command in commands:
        text = run(*path, "--help").stdout
        bad = [line for line in text.splitlines() if PLACEHOLDER.search(line)]
        assert not bad, (path, bad)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        for param in command.params:
            name = param.metavar or param.name.upper()  # a metavar, else the upper-cased name
            if param.param_type_name == "argument":  # in the usage line by that name
                assert name.replace("=", "").isupper() and name in usage, (path, name, usage)
            elif not param.is_flag and not param.hidden:  # an option is followed by it
                assert re.search(rf"{re.escape(param.opts[-1])}\s.*\b{re.escape(name)}\b", text), (
                    path,
                    param.opts,
                    name,
                )


def test_par_set_takes_an_optional_ctype_before_the_items(tmp_path: Path) -> None:
    """``par set DET [CTYPE] [KEY=VALUE...]``: the help's form is the one that parses."""
    ws = tmp_path / "ws"
    run("init", ws)
    run("-C", ws, "new", DET)
    run("-C", ws, "add", DET, "pedestals", npy(tmp_path / "a.npy", 1), "-b", T0)
    run("-C", ws, "par", "set", DET, "run=7")
    run("-C", ws, "par", "set", DET, "pedestals", "gain=2", "mode=high")
    show = json.loads(run("-C", ws, "show", DET, "--json").stdout)
    assert show["pars"] == {"run": 7}
    assert show["ctypes"]["pedestals"]["pars"] == {"gain": 2, "mode": "high"}


# -- progress bars ----------------------------------------------------------------------------------
def test_transfer_progress_renders_on_a_terminal_without_style_tags(tmp_path: Path) -> None:
    """A real clone with stderr on a pseudo-terminal: the bar rich draws there, byte for byte."""
    central = tmp_path / "central"
    run("init", central)
    run("-C", central, "new", DET)
    big = tmp_path / "big.npy"
    np.save(big, np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32))  # 1 MB
    run("-C", central, "add", DET, "pedestals", big, "-b", T0)

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TTY_COMPATIBLE", "FORCE_COLOR")}
    proc = subprocess.Popen(
        [dcsync_exe(), "clone", str(central), str(tmp_path / "laptop")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"cloned 1 detector(s)" in stdout
    text = shown.decode("utf-8", errors="replace")
    assert "receiving" in text and "━" in text, text  # the bar was drawn ...
    assert "[progress." not in text and "[/" not in text, text  # ... with its styles applied
    assert "Traceback" not in text


# -- human output never says None -------------------------------------------------------------------
NONE = re.compile(r"\bNone\b")


def test_diff_and_acl_text_never_print_python_none(tmp_path: Path) -> None:
    central = tmp_path / "central"
    run("init", central)
    run("-C", central, "new", DET)
    run("-C", central, "add", DET, "pedestals", npy(tmp_path / "a.npy", 1), "-b", T0)
    run("-C", central, "add", DET, "pixel_rms", npy(tmp_path / "r.npy", 1), "-b", T0)
    laptop = tmp_path / "laptop"
    run("clone", central, laptop)
    # every kind of change, each with an absent or unpinned side
    run("-C", laptop, "add", DET, "pedestals", npy(tmp_path / "b.npy", 2), "-b", "2024-06-01", "--no-default")
    run("-C", laptop, "add", DET, "pixel_gain", npy(tmp_path / "g.npy", 3), "-b", T0)
    run("-C", laptop, "add", DET, "pedestals", npy(tmp_path / "c.npy", 2), "-b", T0, "--no-default")
    run("-C", laptop, "rm", DET, "pixel_rms", "-m", "not needed")
    run("-C", laptop, "default", DET, "pedestals", "--unset", "--range", "1704067200")
    run("-C", laptop, "par", "set", DET, "pedestals", "run=5")
    for extra in ([], ["--values"], ["--stat"]):
        out = run("diff", central, laptop, *extra).stdout
        assert not NONE.search(out), out
    out = run("diff", central, laptop, "--values").stdout
    lines = out.splitlines()
    assert any(line.startswith("added ") and "float32 (4, 4)" in line for line in lines), out
    assert any(line.startswith("removed ") and "(was " in line for line in lines), out
    assert any(line.startswith("default ") and line.endswith("-> unpinned") for line in lines), out
    assert any(line.startswith("default ") and ": unpinned ->" in line for line in lines), out
    assert any(line.startswith("pars ") and "none -> run=5" in line for line in lines), out
    assert "max_abs_diff=1.0" in out

    out = run("-C", laptop, "acl", "set", "--kind", "repository").stdout  # no group, none set
    assert not NONE.search(out) and "kind: repository" in out, out
    action = json.loads((laptop / ".dcsync" / "acl.log").read_text().splitlines()[-1])["action"]
    assert action.startswith("set kind=repository") and "None" not in action, action


# -- --json failures --------------------------------------------------------------------------------
def error_doc(result: Any, code: int, wire: str) -> dict[str, Any]:
    """stdout is exactly one JSON error document with the exit code; stderr still says it."""
    assert result.exit_code == code, (result.exit_code, result.output)
    doc = json.loads(result.stdout)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "exit", "message", "details"}, doc
    err = doc["error"]
    assert err["code"] == wire and err["exit"] == code, doc
    assert err["message"] and err["message"].splitlines()[0] in result.stderr
    return dict(err)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """(central, laptop): a detector with one pinned pedestals version, and a clone of it."""
    central = tmp_path / "central"
    run("init", central)
    run("-C", central, "new", DET)
    run("-C", central, "add", DET, "pedestals", npy(tmp_path / "a.npy", 1), "-b", T0)
    run("clone", central, tmp_path / "laptop")
    return central, tmp_path / "laptop"


def diverge(central: Path, laptop: Path, tmp_path: Path) -> tuple[str, str]:
    """Both sides add and pin a new pedestals version in the same range; their version keys."""
    theirs = json.loads(
        run("-C", central, "add", DET, "pedestals", npy(tmp_path / "c.npy", 2), "-b", T0, "--json").stdout
    )
    ours = json.loads(
        run("-C", laptop, "add", DET, "pedestals", npy(tmp_path / "l.npy", 3), "-b", T0, "--json").stdout
    )
    return ours["version"], theirs["version"]


def head(ws: Path) -> str | None:
    with Repository.open(ws / "epix100a" / f"{DET}.h5") as repo:
        return repo.head()


def test_pull_conflict_with_json_prints_the_error_and_the_conflicts(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    central, laptop = pair
    ours, theirs = diverge(central, laptop, tmp_path)
    before = head(laptop)
    err = error_doc(run("-C", laptop, "pull", "--json", code=7), 7, "conflict.merge")
    assert err["details"]["remote"] == "origin"
    (conflict,) = err["details"]["conflicts"][DET]
    assert conflict["path"] == ["pedestals", "1704067200-end", "default"]
    assert (conflict["ours"], conflict["theirs"]) == (ours, theirs)
    assert head(laptop) == before


def test_push_refused_as_not_a_fast_forward_with_json(pair: tuple[Path, Path], tmp_path: Path) -> None:
    central, laptop = pair
    diverge(central, laptop, tmp_path)
    before = head(central)
    err = error_doc(run("-C", laptop, "push", "--json", code=7), 7, "conflict.not-fast-forward")
    assert list(err["details"]["refused"]) == [DET] and "pull first" in err["details"]["refused"][DET]
    assert head(central) == before


def test_push_refused_by_the_acl_with_json(pair: tuple[Path, Path], tmp_path: Path) -> None:
    central, laptop = pair
    # a repository location writable only by the persons its rules list; this user is not its owner
    run("-C", central, "acl", "set", "--kind", "repository", "--owner", "somebody-else")
    run("-C", laptop, "add", DET, "pixel_gain", npy(tmp_path / "g.npy", 1), "-b", T0)
    before = head(central)
    err = error_doc(run("-C", laptop, "push", "--json", code=10), 10, "access.denied")
    assert "may not" in err["message"]
    assert head(central) == before


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "--ours", "--theirs", "--json"],  # refused by the command (typer.BadParameter)
        ["default", DET, "pedestals", "--unset", "--json"],  # refused by the command (UsageError)
        ["ls", "--json", "--no-such-option"],  # refused by the parser, before --json was read
        ["add", DET, "pedestals", "--json"],  # a missing argument
    ],
    ids=["bad-parameter", "usage-error", "unknown-option", "missing-argument"],
)
def test_usage_errors_with_json(pair: tuple[Path, Path], args: list[str]) -> None:
    err = error_doc(run("-C", pair[1], *args, code=2), 2, "usage")
    assert err["details"] == {}


def test_every_json_command_answers_in_json_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command with --json, run in an empty directory with made-up names: stdout is one JSON
    document, and when the command fails, an error document whose exit is the exit code."""
    commands = [
        (p, c) for p, c in _commands(get_command(app), []) if any("--json" in o.opts for o in c.params)
    ]
    failed = 0
    for i, (path, command) in enumerate(commands):
        empty = tmp_path / str(i)  # nothing one command makes may help the next
        empty.mkdir()
        monkeypatch.chdir(empty)
        args: list[str] = []
        for p in command.params:
            if p.required:
                args += ["bogus-value"] if p.param_type_name == "argument" else [p.opts[-1], "bogus-value"]
        result = CliRunner().invoke(app, ["-C", str(empty), *path, *args, "--json"])
        assert "Traceback" not in result.output, (path, result.output)
        doc = json.loads(result.stdout)
        if result.exit_code:
            assert doc["error"]["exit"] == result.exit_code and doc["error"]["message"], (path, doc)
            failed += 1
    assert len(commands) > 25 and failed > 20  # most cannot work here: that is the point


# -- the way out of a conflict ----------------------------------------------------------------------
def test_conflict_recipe_pin_the_remotes_version_then_pull(pair: tuple[Path, Path], tmp_path: Path) -> None:
    """The report names the command that keeps the remote's default; running it lets the pull
    through as a clean merge, the lookup returns the remote's constant, and the push goes."""
    central, laptop = pair
    ours, theirs = diverge(central, laptop, tmp_path)
    report = run("-C", laptop, "pull", code=7).stderr
    take = [line.strip() for line in report.splitlines() if line.strip().startswith("dcsync default ")]
    assert take == [f"dcsync default {DET} pedestals origin:{theirs} --range 1704067200-end"], report

    # the first thing a user tries, pinning the remote's version as if it were here, says how
    hint = run("-C", laptop, "default", DET, "pedestals", theirs[:6], code=3).stderr
    assert "remotes/origin" in hint and f"origin:{theirs[:6]}" in hint

    pinned = json.loads(run("-C", laptop, *shlex.split(take[0])[1:], "--json").stdout)
    assert pinned["default"] == theirs and pinned["selection"] == "pinned"
    pulled = json.loads(run("-C", laptop, "pull", "--json").stdout)
    assert pulled["merged"] == [DET] and pulled["resolved"] == {}
    got = json.loads(run("-C", laptop, "get", DET, "pedestals", "--json").stdout)
    assert got["version"] == theirs and got["stats"]["max"] == 2.0
    versions = json.loads(run("-C", laptop, "ls", DET, "pedestals", "--json").stdout)
    keys = {v["version"] for r in versions["ranges"] for v in r["versions"]}
    assert {ours, theirs} <= keys  # our version stays, unpinned
    run("-C", laptop, "push")
    assert head(central) == head(laptop)
    for ws in (central, laptop):
        assert verify_path(ws / "epix100a" / f"{DET}.h5").ok


def test_taking_a_remote_version_needs_a_fetched_one(pair: tuple[Path, Path]) -> None:
    _, laptop = pair
    err = run("-C", laptop, "default", DET, "pedestals", "upstream:abc", code=3).stderr
    assert "remotes/upstream" in err and "fetch" in err
    err = run("-C", laptop, "default", DET, "pedestals", "origin:fffffffff", code=3).stderr
    assert "remotes/origin" in err and "fffffffff" in err
    run("-C", laptop, "default", DET, "pedestals", "origin:", code=2)
