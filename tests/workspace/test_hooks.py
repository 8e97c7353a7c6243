"""Hooks, end to end: the shipped samples judge real commits and pushes, as real processes.

A "central" workspace holds float32 pedestals, uint16 pixel_status and geometry; a "laptop" is
cloned from it through an in-process server. Each sample must reject its bad constant and accept
good ones, both as a pre-commit hook on the laptop and as a pre-receive hook on the central
workspace; a refused push must leave the central file exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

import dcsync
from dcsync.cli.main import app
from dcsync.errors import HookRejected
from dcsync.repo.repository import Repository
from dcsync.repo.transaction import Transaction
from dcsync.sync.client import Connection
from dcsync.sync.pushing import PushReport, push
from dcsync.sync.server import Server
from dcsync.transport.local import InProcessChannel
from dcsync.workspace import hooks
from dcsync.workspace.verify import verify_path
from dcsync.workspace.workspace import Workspace

DET = "epix100a-0001"
T0 = dcsync.parse_time("2024-01-01T00:00:00Z")
T1 = dcsync.parse_time("2024-02-01T00:00:00Z")
SHAPE = (4, 6)
GOOD_MESSAGE = "pedestals from dark run 42"
GEOMETRY = (
    "# TITLE      Geometry parameters of CSPAD\n"
    "QUAD:V2   0  SENS2X1:V1 0  21136 -21106 0  90 0 0  0.1 0 0\n"
    "CSPAD:V2  0  QUAD:V2    0  -4500 -4500 0  90 0 0  0 0 0\n"
    "IP        0  CSPAD:V2   0  0 0 1000000    0 0 0  0 0 0\n"
)
BROKEN_GEOMETRY = GEOMETRY.replace("0  0 0 1000000", "0  0 0")  # 12 fields on line 4
VERBATIM = "calibration rejected: ünïcode [bold]not markup[/bold]\n  second line, indented\tand tabbed"
PHASES = ("pre-commit", "pre-receive")


# -- workspaces, connections, hooks ---------------------------------------------------------------
def connect(root: Path) -> Connection:
    """An in-process server on ``root`` (a fresh one per connection, like a new SSH session)."""
    server = Server(root)

    def serve(read: Callable[[int], bytes], write: Callable[[bytes], None]) -> None:
        try:
            server.serve(read, write)
        finally:
            server.close()

    return Connection(InProcessChannel(serve))


def do_push(laptop: Workspace, central: Path, *, atomic: bool = True) -> PushReport:
    conn = connect(central)
    try:
        return push(laptop, conn=conn, atomic=atomic)
    finally:
        conn.close()


@pytest.fixture
def central(tmp_path: Path) -> Path:
    ws = Workspace.init(tmp_path / "central", kind="local")
    with ws.new_detector(DET) as repo, repo.transaction(message="constants from dark run 40") as tx:
        tx.add("pedestals", np.full(SHAPE, 1000.0, np.float32), begin_ns=T0)
        tx.add("pixel_status", np.zeros(SHAPE, np.uint16), begin_ns=T0)
        tx.add("geometry", GEOMETRY, begin_ns=T0)
    return ws.root


@pytest.fixture
def laptop(central: Path, tmp_path: Path) -> Workspace:
    conn = connect(central)
    try:
        ws, _ = dcsync.clone(str(central), tmp_path / "laptop", conn=conn)
    finally:
        conn.close()
    return ws


def cli(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def install(root: Path, name: str, phase: str | None = None) -> None:
    cli("-C", root, "hooks", "install", name, *(["--phase", phase] if phase else []))


def write_hook(root: Path, relpath: str, text: str, *, executable: bool = True) -> Path:
    path = root / ".dcsync" / "hooks" / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755 if executable else 0o644)
    return path


def set_timeout(root: Path, seconds: float) -> None:
    ws = Workspace(root)
    config = ws.config()
    config.setdefault("hooks", {})["timeout"] = seconds
    ws.write_config(config)


def commit(ws: Workspace, message: str, change: Callable[[Transaction], object]) -> None:
    with ws.repository(DET) as repo, repo.transaction(message=message) as tx:
        change(tx)


def add(ctype: str, value: Any, begin: int = T0) -> Callable[[Transaction], object]:
    return lambda tx: tx.add(ctype, value, begin_ns=begin)


class State:
    """What a detector file held: a refused change must leave all of it as it was."""

    def __init__(self, root: Path) -> None:
        self.path = Workspace(root).detector_path(DET)
        with Repository.open(self.path) as repo:
            self.head = repo.head()
            self.log = len(repo.log())
            self.objects = sorted(repo.store.object_ids())
        self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()

    def unchanged(self) -> None:
        after = State(self.path.parent.parent)
        assert (after.head, after.log, after.objects) == (self.head, self.log, self.objects)
        assert after.digest == self.digest, "the file's bytes changed"
        report = verify_path(self.path)
        assert report.ok, report.problems


def head(root: Path) -> str | None:
    with Repository.open(Workspace(root).detector_path(DET)) as repo:
        return repo.head()


def with_nan() -> np.ndarray:
    value = np.full(SHAPE, 1000.0, np.float32)
    value[1, 2] = np.nan
    return value


def with_inf() -> np.ndarray:
    value = np.full(SHAPE, 1000.0, np.float32)
    value[0, 0], value[3, 5] = np.inf, -np.inf
    return value


# sample, message, change, fragments of the hook's reason
BAD = [
    pytest.param(
        "check-dtype-shape", GOOD_MESSAGE, add("pedestals", np.full(SHAPE, 1000.0, np.float64)),
        ["check-dtype-shape: pedestals range", "float64 (4, 6)", "pedestals here is float32 (4, 6)"],
        id="float64-pedestals",
    ),
    pytest.param(
        "check-dtype-shape", GOOD_MESSAGE, add("pedestals", np.zeros((4, 5), np.float32)),
        ["float32 (4, 5)", "float32 (4, 6)"], id="wrong-shape",
    ),
    pytest.param("no-nan-inf", GOOD_MESSAGE, add("pedestals", with_nan()), ["pedestals range", "1 NaN and 0 Inf values among 24"], id="nan"),  # noqa: E501
    pytest.param("no-nan-inf", GOOD_MESSAGE, add("pedestals", with_inf(), T1), ["0 NaN and 2 Inf"], id="inf"),
    pytest.param(
        "pixel-status-integer", GOOD_MESSAGE, add("pixel_status", np.zeros(SHAPE, np.float32)),
        ["pixel_status range", "dtype float32, expected an integer type"], id="float-pixel-status",
    ),
    pytest.param(
        "geometry-parses", "geometry from the new metrology", add("geometry", BROKEN_GEOMETRY),
        ["geometry-parses: geometry range", "line 4: 12 fields, expected 13"], id="broken-geometry",
    ),
    pytest.param(
        "require-message", "", add("pedestals", np.ones(SHAPE, np.float32)),
        ["require-message: commit", "is dcsync's default summary"], id="empty-message",
    ),
    pytest.param(
        "require-message", " fixed ", add("pedestals", np.ones(SHAPE, np.float32)),
        ["'fixed' is too short"], id="short-message",
    ),
]  # fmt: skip

GOOD = [
    pytest.param("check-dtype-shape", add("pedestals", np.ones(SHAPE, np.float32), T1), id="same-shape"),
    pytest.param("check-dtype-shape", add("pixel_rms", np.ones((2, 2), np.float64)), id="first-of-its-ctype"),
    pytest.param("no-nan-inf", add("pedestals", np.ones(SHAPE, np.float32)), id="finite"),
    pytest.param("no-nan-inf", add("pixel_status", np.ones(SHAPE, np.uint16)), id="integers"),
    pytest.param("pixel-status-integer", add("pixel_status", np.ones(SHAPE, np.uint64)), id="uint64-status"),
    pytest.param("geometry-parses", add("geometry", GEOMETRY.replace("0.1", "0.2")), id="geometry"),
    pytest.param("require-message", add("pedestals", np.ones(SHAPE, np.float32)), id="message"),
]  # fmt: skip


# -- each sample, for local commits and for pushes ------------------------------------------------
@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("sample", "message", "change", "reason"), BAD)
def test_sample_rejects(
    central: Path,
    laptop: Workspace,
    phase: str,
    sample: str,
    message: str,
    change: Callable[[Transaction], object],
    reason: list[str],
) -> None:
    if phase == "pre-commit":
        install(laptop.root, sample, phase="pre-commit")
        before = State(laptop.root)
        with pytest.raises(HookRejected) as caught:
            commit(laptop, message, change)
        before.unchanged()
    else:
        install(central, sample)
        commit(laptop, message, change)
        before = State(central)
        with pytest.raises(HookRejected) as caught:
            do_push(laptop, central)
        before.unchanged()
    text = caught.value.message
    assert text.startswith(f"{phase} hook {sample} rejected the change (exit 1):\n"), text
    for fragment in reason:
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("sample", "change"), GOOD)
def test_sample_accepts(
    central: Path, laptop: Workspace, phase: str, sample: str, change: Callable[[Transaction], object]
) -> None:
    install(laptop.root if phase == "pre-commit" else central, sample, phase=phase)
    commit(laptop, GOOD_MESSAGE, change)
    if phase == "pre-receive":
        report = do_push(laptop, central)
        assert report.pushed == [DET] and not report.failed
    assert head(central if phase == "pre-receive" else laptop.root) == head(laptop.root)


def test_first_versions_of_a_new_ctype_must_agree(central: Path, laptop: Workspace) -> None:
    install(central, "check-dtype-shape")

    def two(tx: Transaction) -> None:
        tx.add("pixel_gain", np.full(SHAPE, 3.0, np.float32), begin_ns=T0)
        tx.add("pixel_gain", np.ones(SHAPE, np.float64), begin_ns=T1)

    commit(laptop, GOOD_MESSAGE, two)
    with pytest.raises(HookRejected, match="pixel_gain here is float32"):
        do_push(laptop, central)


def test_require_message_checks_every_pushed_commit(central: Path, laptop: Workspace) -> None:
    install(central, "require-message")
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    commit(laptop, "", add("pedestals", np.ones(SHAPE, np.float32) * 2, T1))  # a default summary
    commit(laptop, "and a third, well described", add("pixel_rms", np.ones(SHAPE, np.float32)))
    before = State(central)
    with pytest.raises(HookRejected) as caught:
        do_push(laptop, central)
    before.unchanged()
    assert caught.value.message.count("require-message: commit") == 1


# -- the runner's rules ---------------------------------------------------------------------------
def test_rejection_reaches_the_pusher_verbatim(central: Path, laptop: Workspace) -> None:
    script = f"#!/bin/sh\ncat > /dev/null\nprintf '%s\\n' '{VERBATIM}'\nexit 3\n"
    write_hook(central, "pre-receive", script)  # the single-file form, hooks/<phase>
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    before = State(central)
    with pytest.raises(HookRejected) as caught:
        do_push(laptop, central)
    assert caught.value.message == f"pre-receive hook pre-receive rejected the change (exit 3):\n{VERBATIM}"
    report = do_push(laptop, central, atomic=False)  # per detector: the reason is in the report
    assert report.pushed == [] and VERBATIM in report.failed[DET]
    before.unchanged()


def test_rejection_reaches_the_command_line_pusher(central: Path, laptop: Workspace) -> None:
    """The real thing: ``dcsync push`` runs ``dcsync serve`` over pipes; the reason comes back on stderr."""
    write_hook(central, "pre-receive.d/10-refuse", f"#!/bin/sh\nprintf '%s\\n' '{VERBATIM}'\nexit 1\n")
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    before = State(central)
    exe = Path(sys.executable).parent / "dcsync"
    proc = subprocess.run(
        [str(exe), "-C", str(laptop.root), "push", "--atomic", "--quiet"],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 11, (proc.stdout, proc.stderr)
    assert VERBATIM in proc.stderr and "Traceback" not in proc.stderr
    before.unchanged()


def test_hanging_hook_is_stopped_and_rejects_a_push(central: Path, laptop: Workspace) -> None:
    set_timeout(central, 1)
    pidfile = central / "sleeper.pid"
    write_hook(central, "pre-receive.d/hang", f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nwait\n")
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    before = State(central)
    start = time.monotonic()
    with pytest.raises(HookRejected, match=r"hang did not finish within 1 s and was stopped"):
        do_push(laptop, central)
    assert time.monotonic() - start < 15
    before.unchanged()
    sleeper = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(sleeper) and psutil.Process(sleeper).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the hook's child outlived the timeout"
        time.sleep(0.05)


def test_hanging_python_hook_rejects_a_commit(laptop: Workspace) -> None:
    set_timeout(laptop.root, 1)
    write_hook(laptop.root, "pre-commit.d/hang", "#!/usr/bin/env python3\nimport time\ntime.sleep(60)\n")
    before = State(laptop.root)
    start = time.monotonic()
    with pytest.raises(HookRejected, match="did not finish within 1 s"):
        commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    assert time.monotonic() - start < 15
    before.unchanged()


def test_non_executable_hooks_are_ignored(central: Path, laptop: Workspace) -> None:
    refuse = "#!/bin/sh\necho refused\nexit 1\n"
    write_hook(central, "pre-receive", refuse, executable=False)
    write_hook(central, "pre-receive.d/refuse", refuse, executable=False)
    write_hook(laptop.root, "pre-commit.d/refuse", refuse, executable=False)
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    assert do_push(laptop, central).pushed == [DET]
    listed = json.loads(cli("-C", central, "hooks", "list", "--json").stdout)["installed"]["pre-receive"]
    assert [(r["name"], r["runs"]) for r in listed] == [("pre-receive", False), ("refuse", False)]
    assert not stat.S_IXUSR & (central / ".dcsync/hooks/pre-receive").stat().st_mode


def test_python_hooks_run_with_dcsyncs_interpreter(laptop: Workspace) -> None:
    """The interpreter line only says "Python": even one that does not exist runs with ours."""
    out = laptop.root / "seen.json"
    script = (
        "#!/no/such/dir/python3\nimport json, sys\nimport numpy\n"
        f"json.dump({{'python': sys.executable}}, open({str(out)!r}, 'w'))\n"
    )
    write_hook(laptop.root, "pre-commit.d/where", script)
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    assert json.loads(out.read_text())["python"] == sys.executable


# -- post-receive ---------------------------------------------------------------------------------
DUMP = """#!/usr/bin/env python3
import json, os, sys
import numpy as np
event = json.load(sys.stdin)
seen = {}
for c in event["changes"]:
    p = c.get("payload")
    if p and p.endswith(".npy"):
        a = np.load(p, allow_pickle=False)
        seen[c["object"]] = {"dtype": a.dtype.str, "shape": list(a.shape)}
    elif p:
        seen[c["object"]] = {"text": open(p, encoding="utf-8").read()}
event["_env"] = {"hook": os.environ["DCSYNC_HOOK"], "workspace": os.environ["DCSYNC_WORKSPACE"],
                 "cwd": os.getcwd(), "payloads": seen}
name = os.path.join(os.environ["DCSYNC_WORKSPACE"], "input-" + os.environ["DCSYNC_HOOK"] + ".json")
with open(name, "a") as fh:
    fh.write(json.dumps(event) + "\\n")
"""


def dumps(root: Path, phase: str) -> list[dict[str, Any]]:
    lines = (root / f"input-{phase}.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_log_changes_appends_one_line_per_change(
    central: Path, laptop: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(central, "log-changes")
    write_hook(central, "post-receive.d/zz-dump", DUMP)
    log = central / ".dcsync" / "changes.log"

    def two(tx: Transaction) -> None:
        tx.add("pedestals", np.ones(SHAPE, np.float32), begin_ns=T0)  # a version and a new default
        tx.add("pixel_gain", np.full(SHAPE, 3.0, np.float32), begin_ns=T0)

    commit(laptop, GOOD_MESSAGE, two)
    assert do_push(laptop, central).pushed == [DET]
    event = dumps(central, "post-receive")[0]
    lines = log.read_text().splitlines()
    assert len(lines) == len(event["changes"]) == 6  # two versions, two defaults, a new ctype and range
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 10 for row in rows)
    by_object = {row[9]: row for row in rows}
    for c in event["changes"]:
        if c["change"] == "added":
            row = by_object[c["object"]]
            assert row[1:9] == [event["user"], event["host"], event["source"], DET, "added",
                                c["ctype"], c["range"], c["version"]]  # fmt: skip
    assert sorted(row[5] for row in rows) == ["added", "added", "ctype", "default", "default", "range"]
    defaults = {row[6]: row[8] for row in rows if row[5] == "default"}  # the version is the new default
    assert defaults == {c["ctype"]: c["version"] for c in event["changes"] if c["change"] == "added"}

    other = tmp_path / "audit" / "changes.log"
    other.parent.mkdir()
    monkeypatch.setenv("DCSYNC_CHANGES_LOG", str(other))  # the in-process server shares our environment
    commit(laptop, "gain from the flat field", add("pixel_gain", np.full(SHAPE, 2.0, np.float32), T1))
    assert do_push(laptop, central).pushed == [DET]
    assert len(log.read_text().splitlines()) == 6  # the first log kept its lines, got none
    assert [line.split("\t")[6] for line in other.read_text().splitlines()] == ["pixel_gain"] * 3


def test_post_receive_cannot_reject(central: Path, laptop: Workspace) -> None:
    write_hook(central, "post-receive", "#!/bin/sh\necho 'too late to refuse'\nexit 1\n")
    commit(laptop, GOOD_MESSAGE, add("pedestals", np.ones(SHAPE, np.float32)))
    report = do_push(laptop, central)
    assert report.pushed == [DET] and not report.failed
    assert head(central) == head(laptop.root)


# -- the hook input ---------------------------------------------------------------------------------
COMMIT_KEYS = {"commit", "author", "host", "time", "message", "meta"}
CHANGE_KEYS = {"change", "ctype", "range", "version", "begin", "end", "object", "kind", "dtype", "shape",
               "nbytes", "pars", "author", "origin", "payload"}  # fmt: skip


@pytest.mark.parametrize("phase", PHASES)
def test_hook_input_has_the_documented_fields(central: Path, laptop: Workspace, phase: str) -> None:
    root = laptop.root if phase == "pre-commit" else central
    write_hook(root, f"{phase}.d/dump", DUMP)
    old = head(laptop.root)

    def change(tx: Transaction) -> None:
        tx.add("pedestals", np.full(SHAPE, 7.0, np.float32), begin_ns=T1, pars={"run": 42})
        tx.add("geometry", GEOMETRY + "# COMMENT:01 moved\n", begin_ns=T1)

    commit(laptop, GOOD_MESSAGE, change)
    if phase == "pre-receive":
        do_push(laptop, central)
    (event,) = dumps(root, phase)
    env = event.pop("_env")
    assert env["hook"] == event["hook"] == phase
    assert env["workspace"] == env["cwd"] == event["location"] == str(root)
    assert {"detector", "command", "user", "groups", "host", "source", "old", "new", "commits",
            "changes", "existing", "kind"} <= event.keys()  # fmt: skip
    assert event["detector"] == DET
    assert event["command"] == ("push" if phase == "pre-receive" else "commit")
    assert event["source"] == ("local" if phase == "pre-commit" else f"{event['user']}@{event['host']}")
    assert isinstance(event["groups"], list)
    assert (event["old"], event["new"]) == (old, head(laptop.root))
    (c0,) = event["commits"]
    assert c0.keys() == COMMIT_KEYS
    assert (c0["commit"], c0["message"]) == (event["new"], GOOD_MESSAGE)
    added = {c["ctype"]: c for c in event["changes"] if c["change"] == "added"}
    assert added.keys() == {"pedestals", "geometry"}
    for c in added.values():
        assert c.keys() >= CHANGE_KEYS
        assert c["begin"] == "2024-02-01T00:00:00Z" and c["end"] is None
        assert c["payload"] is not None
    ped, geo = added["pedestals"], added["geometry"]
    assert (ped["kind"], ped["dtype"], ped["shape"], ped["nbytes"]) == ("array", "<f4", [4, 6], 96)
    assert ped["pars"] == {"run": 42}
    assert env["payloads"][ped["object"]] == {"dtype": "<f4", "shape": [4, 6]}
    assert ped["payload"].endswith(".npy") and geo["payload"].endswith(".text")
    assert geo["kind"] == "text" and env["payloads"][geo["object"]]["text"].endswith("# COMMENT:01 moved\n")
    assert not os.path.exists(ped["payload"])  # scratch and quarantine are cleaned up
    existing = event["existing"]
    assert set(existing) == {"pedestals", "geometry"}
    (row,) = existing["pedestals"]
    assert row.keys() == {"range", "version", "kind", "dtype", "shape"}
    assert (row["kind"], row["dtype"], row["shape"]) == ("array", "<f4", [4, 6])


# -- the command line -------------------------------------------------------------------------------
def hooks_cli(root: Path, *args: str, code: int = 0) -> Any:
    return cli("-C", root, "hooks", *args, code=code)


def listing(root: Path) -> dict[str, Any]:
    return json.loads(hooks_cli(root, "list", "--json").stdout)  # type: ignore[no-any-return]


def test_cli_list_install_remove(laptop: Workspace) -> None:
    root = laptop.root
    samples = {s["name"]: s for s in listing(root)["samples"]}
    assert set(samples) == set(hooks.samples()) == {
        "check-dtype-shape", "no-nan-inf", "pixel-status-integer", "geometry-parses", "require-message",
        "log-changes",
    }  # fmt: skip
    assert samples["log-changes"]["phase"] == "post-receive"
    assert all(s["description"] and s["installed"] == [] for s in samples.values())

    hooks_cli(root, "install", "no-nan-inf")
    hooks_cli(root, "install", "no-nan-inf", "--phase", "pre-commit")
    hooks_cli(root, "install", "no-nan-inf")  # again: the same file, nothing to refuse
    listed = listing(root)
    installed_in = {s["name"]: s["installed"] for s in listed["samples"]}
    assert installed_in["no-nan-inf"] == ["pre-commit", "pre-receive"]
    row = listed["installed"]["pre-receive"][0]
    assert row["name"] == row["sample"] == "no-nan-inf" and row["runs"] and not row["modified"]
    assert "no-nan-inf" in hooks_cli(root, "list").stdout

    installed = root / ".dcsync/hooks/pre-receive.d/no-nan-inf"
    installed.write_text(installed.read_text() + "# local change\n")
    assert "differs from the sample" in hooks_cli(root, "install", "no-nan-inf", code=5).stderr
    assert listing(root)["installed"]["pre-receive"][0]["modified"]
    hooks_cli(root, "install", "no-nan-inf", "--force")
    assert "# local change" not in installed.read_text()

    gone = json.loads(hooks_cli(root, "remove", "no-nan-inf", "--phase", "pre-commit", "--json").stdout)
    assert [r["phase"] for r in gone["removed"]] == ["pre-commit"]
    hooks_cli(root, "remove", "no-nan-inf")
    assert not installed.exists()
    assert "no hook 'no-nan-inf'" in hooks_cli(root, "remove", "no-nan-inf", code=3).stderr
    assert "no sample hook 'nope'" in hooks_cli(root, "install", "nope", code=3).stderr
    assert "invalid hook name" in hooks_cli(root, "remove", "../acl.toml", code=2).stderr
    assert "unknown hook phase" in hooks_cli(root, "install", "no-nan-inf", "--phase", "x", code=2).stderr
    assert (root / ".dcsync/acl.toml").exists()


def test_cli_run_tries_the_hooks_on_the_last_commit(laptop: Workspace) -> None:
    root = laptop.root
    assert "no pre-receive hooks" in hooks_cli(root, "run", "pre-receive", DET).stdout
    install(root, "no-nan-inf")
    install(root, "geometry-parses")
    assert "accepted" in hooks_cli(root, "run", "pre-receive", DET).stdout
    assert "accepted" in hooks_cli(root, "run", "pre-receive", DET, "--all").stdout
    commit(laptop, GOOD_MESSAGE, add("pedestals", with_nan()))  # no pre-commit hooks: it lands
    refused = hooks_cli(root, "run", "pre-receive", DET, code=11)
    assert "no-nan-inf: pedestals range" in refused.stderr and "1 NaN" in refused.stderr
    commit(laptop, "the bad pedestals replaced", add("pedestals", np.ones(SHAPE, np.float32)))
    hooks_cli(root, "run", "pre-receive", DET)  # the last commit alone is fine
    hooks_cli(root, "run", "pre-receive", DET, "--all", code=11)  # the whole history is not
