"""Start-up: what a command imports, and Ctrl-C at any moment of a real ``dcsync`` process.

Local commands must not load the sync protocol, the transports or SSH (the structural half of the
start-up target; the timing half is ``tests/benchmarks/bench_startup.py``). Ctrl-C is checked on
the installed executable with real signals: at fixed delays after the start, at fixed points of
the imports (seen in ``/proc/<pid>/maps``), in the middle of an ``add`` (seen by its lock file) and
of a local clone, where a server process runs on the other end of two pipes.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import typer
import typer.main
from typer.testing import CliRunner

import dcsync
from dcsync.cli.commands import COMMANDS
from dcsync.cli.main import app
from dcsync.version import __version__

DET = "epix100a-3925868555"
T0 = "2024-01-01T00:00:00Z"
PACKAGE = str(Path(dcsync.__file__).parent)
NOT_FOR_LOCAL_COMMANDS = (
    "paramiko",
    "dcsync.transport",
    "dcsync.sync.fetching",
    "dcsync.sync.pushing",
    "dcsync.sync.compare",
    "dcsync.sync.client",
    "dcsync.sync.server",
    "dcsync.sync.serving",
    "dcsync.sync.heads",
    "dcsync.sync.stores",
    "dcsync.sync.transfer",
    "dcsync.sync.protocol",
    "dcsync.sync.promote",
)
INTERRUPTED = "dcsync: interrupted"


def dcsync_exe() -> str:
    here = Path(sys.executable).parent / "dcsync"
    found = str(here) if here.exists() else shutil.which("dcsync")
    assert found, "the dcsync console script is not installed (pip install -e .)"
    return found


def exe(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [dcsync_exe(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with one detector holding one small constant."""
    root = tmp_path / "calib"
    exe("init", root)
    exe("-C", root, "new", DET)
    value = tmp_path / "ped.npy"
    np.save(value, np.arange(12, dtype=np.float32).reshape(3, 4))
    exe("-C", root, "add", DET, "pedestals", value, "--begin", T0)
    return root


# -- what a command imports ------------------------------------------------------------------------

PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["dcsync", *args]


@atexit.register  # run() ends the process itself, after the atexit handlers
def dump():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)


if args:
    from dcsync.entry import run

    run()
else:
    import dcsync.cli.main
"""


def modules_after(tmp_path: Path, *args: str | Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``dcsync ARGS`` (none: importing the CLI)."""
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_importing_the_command_line_loads_no_sync_transport_or_ssh(tmp_path: Path) -> None:
    assert loaded(modules_after(tmp_path), NOT_FOR_LOCAL_COMMANDS) == []


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["ls", DET],
        ["get", DET, "pedestals"],
        ["show", DET],
        ["log"],
        ["add", DET, "pedestals", "{value}", "--begin", "2024-02-01T00:00:00Z"],
    ],
    ids=lambda args: args[0] if len(args) < 2 or args[1] != DET else f"{args[0]}-det",
)
def test_local_commands_load_no_sync_transport_or_ssh(ws: Path, tmp_path: Path, args: list[str]) -> None:
    value = tmp_path / "new.npy"
    np.save(value, np.ones((3, 4), dtype=np.float32))
    modules = modules_after(tmp_path, "-C", ws, *[a.format(value=value) for a in args])
    assert "h5py" in modules  # it did read the repository
    assert loaded(modules, NOT_FOR_LOCAL_COMMANDS) == []


@pytest.mark.parametrize(
    "args",
    [["ls"], ["ls", "--json"], ["ls", DET, "--json"], ["get", DET, "pedestals"], ["show", DET, "--json"]],
    ids=" ".join,
)
def test_reading_loads_no_pydantic_policy_or_unneeded_rich(ws: Path, tmp_path: Path, args: list[str]) -> None:
    """What a read does without: pydantic (typer 0.29 builds a TypeAdapter per parameter: ~100 ms),
    the commit checks (ACL, hooks, diff), ``secrets``, and rich where nothing is a table."""
    modules = modules_after(tmp_path, "-C", ws, *args)
    assert "h5py" in modules
    unneeded = (
        "pydantic",
        "dcsync.workspace.policy",
        "dcsync.workspace.hooks",
        "dcsync.repo.reach",
        "dcsync.repo.graph",
        "secrets",
    )
    if "--json" in args or args[0] == "get":
        unneeded += ("rich",)
    assert loaded(modules, unneeded) == []


def test_a_command_ends_after_atexit_handlers_and_other_threads(ws: Path, tmp_path: Path) -> None:
    """The console script skips the interpreter's teardown, not what an exit must still do: it runs
    the atexit handlers, waits for a thread that is not a daemon, and keeps the exit status."""
    marks = tmp_path / "marks"
    script = f"""
import atexit, sys, threading, time
from pathlib import Path
marks = Path({str(marks)!r})
atexit.register(lambda: marks.open("a").write("atexit\\n"))
def late():
    time.sleep(0.3)
    marks.open("a").write("thread\\n")
threading.Thread(target=late).start()
sys.argv = ["dcsync", *sys.argv[1:]]
from dcsync.entry import run
run()
"""
    proc = subprocess.run(
        [sys.executable, "-c", script, "-C", str(ws), "ls", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["detectors"][0]["detector"] == DET
    assert marks.read_text() == "thread\natexit\n"
    marks.unlink()
    script = script.replace("threading.Thread(target=late).start()", "")
    proc = subprocess.run(
        [sys.executable, "-c", script, "-C", str(ws), "get", DET, "nosuch"], capture_output=True, text=True
    )
    assert proc.returncode == 3 and "nosuch" in proc.stderr, (proc.returncode, proc.stderr)
    assert marks.read_text() == "atexit\n"


def test_version_loads_neither_the_command_line_nor_numpy(tmp_path: Path) -> None:
    modules = modules_after(tmp_path, "--version")
    assert loaded(modules, ("typer", "rich", "numpy", "h5py", "dcsync.cli", "dcsync.repo.repository")) == []


def test_version_is_the_installed_distribution_version() -> None:
    """The fast path and ``-C x --version`` (through typer) print the same, the package's version."""
    from importlib.metadata import version

    assert __version__ == version("dcsync")
    assert exe("--version").stdout == f"dcsync {__version__}\n"
    assert exe("-C", ".", "--version").stdout == f"dcsync {__version__}\n"


def test_the_command_table_is_every_command_of_every_module() -> None:
    """:data:`COMMANDS` names every command of every command module, in ``--help``."""
    apps = set()
    for path in (Path(PACKAGE) / "cli").glob("*.py"):
        module = importlib.import_module(f"dcsync.cli.{path.stem}")
        apps |= {(path.stem, k) for k, v in vars(module).items() if isinstance(v, typer.Typer) and k != "app"}
        if isinstance(getattr(module, "app", None), typer.Typer) and path.stem != "main":
            apps.add((path.stem, "app"))
    by_app: dict[tuple[str, str], list[str]] = {}
    for name, (module, attr, _) in COMMANDS.items():
        by_app.setdefault((module, attr), []).append(name)
    assert set(by_app) == apps
    for (module, attr), names in by_app.items():
        holder = typer.Typer()
        holder.add_typer(getattr(importlib.import_module(f"dcsync.cli.{module}"), attr))
        defined = list(typer.main.get_group(holder).commands)
        if COMMANDS[names[0]][2] is not None:  # a group of its own, under one name
            assert len(names) == 1 and defined, (module, attr, names)
        else:
            assert defined == names, (module, attr)
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    for name in COMMANDS:
        assert f" {name} " in help_text, name


# -- Ctrl-C ----------------------------------------------------------------------------------------


def interrupt(
    args: list[str | Path], when: Callable[[subprocess.Popen[str]], bool], *, group: bool = False
) -> subprocess.CompletedProcess[str]:
    """Start ``dcsync ARGS``, send SIGINT once ``when(proc)`` is true (to its process group with
    ``group``, as a terminal's Ctrl-C does), and return how it ended."""
    proc = subprocess.Popen(
        [dcsync_exe(), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    try:
        deadline = time.monotonic() + 60
        while not when(proc):
            assert proc.poll() is None, f"ended before the moment came: {proc.communicate()}"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.001)
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_interrupted(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines()[-1] == INTERRUPTED, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def after(seconds: float) -> Callable[[subprocess.Popen[str]], bool]:
    start = time.monotonic()
    return lambda proc: time.monotonic() - start >= seconds


def maps(pid: int) -> str:
    """The shared libraries a process has loaded ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def mapped(library: str) -> Callable[[subprocess.Popen[str]], bool]:
    """True once the process has loaded a shared library whose path contains ``library``."""
    return lambda proc: library in maps(proc.pid)


_ENTRY = Path(PACKAGE) / "entry.py"
HANDLER_LINE = next(
    n for n, line in enumerate(_ENTRY.read_text().splitlines(), 1) if "_signal.signal(_signal.SIGINT" in line
)
"""Where the console script's SIGINT handler goes in: a Ctrl-C before it is Python's own."""


def only_before_the_handler(traceback_text: str) -> bool:
    """Whether the traceback's frames of ours are only the console script's first import lines:
    the package's ``__init__``/``version``, ``interrupts`` (definitions only) and ``entry`` up to
    its handler (a window of well under a millisecond, where Python's default handler still answers
    a Ctrl-C)."""
    for path, line, where in re.findall(r'File "([^"]+)", line (\d+), in (\S+)', traceback_text):
        if not path.startswith(PACKAGE):
            continue
        name = Path(path).name
        if where != "<module>" or name not in ("__init__.py", "version.py", "interrupts.py", "entry.py"):
            return False
        if name == "entry.py" and int(line) > HANDLER_LINE:
            return False
    return True


BEFORE_THE_HANDLER = """
import _signal, sys
found = []


class Watch:  # sees every module imported from here on, and whether Python's handler was still in
    @staticmethod
    def find_spec(name, path=None, target=None):
        found.append((name, _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler))


sys.meta_path.insert(0, Watch)
sys.argv = ["dcsync"]
import dcsync.entry

print(" ".join(name for name, early in found if early))
print(_signal.getsignal(_signal.SIGINT).__module__)
"""


def test_the_console_scripts_handler_goes_in_before_any_import_but_its_own_small_modules() -> None:
    """As the ``dcsync`` program, importing :mod:`dcsync.entry` installs the handler having imported
    only the package's ``__init__``, ``version`` and ``interrupts``: an import that takes time
    (``signal``'s enums, numpy) before it would widen the window where Ctrl-C is a traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", BEFORE_THE_HANDLER], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    early, handler = proc.stdout.splitlines()
    assert set(early.split()) <= {"dcsync", "dcsync.version", "dcsync.interrupts", "dcsync.entry"}, early
    assert "dcsync.interrupts" in early.split() and handler == "dcsync.interrupts"


@pytest.mark.parametrize("delay_ms", [0, 20, 50, 100, 200, 400])
def test_ctrl_c_after_a_delay_is_never_a_traceback_of_ours(ws: Path, delay_ms: int) -> None:
    """Whenever SIGINT comes: "interrupted" and 130, or the command had already finished, or no
    dcsync code had run yet: the kernel ended the process before Python installed its handler (or
    after it removed it at the very end), or Python was still starting (``site`` and ``.pth``
    files, the console script's own import line), which no code of ours can catch."""
    for args in (["-C", ws, "ls"], ["-C", ws, "get", DET, "pedestals"], ["--version"]):
        start = time.monotonic()
        proc = subprocess.Popen(
            [dcsync_exe(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(max(0.0, delay_ms / 1000 - (time.monotonic() - start)))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 130:
            assert err.splitlines()[-1] == INTERRUPTED and "Traceback" not in err, err
        elif proc.returncode == 0:
            # A Ctrl-C in Python's own import machinery before our handler exists is swallowed by
            # Python ("Exception ignored in ... _get_module_lock"), and the command then runs.
            swallowed = err.startswith("Exception ignored in") and "KeyboardInterrupt" in err
            assert out and (err == "" or (swallowed and only_before_the_handler(err))), err
        elif proc.returncode == -signal.SIGINT and err == "":
            pass
        else:
            assert "KeyboardInterrupt" in err and only_before_the_handler(err), err


@pytest.mark.parametrize("library", ["_multiarray_umath", "libhdf5"])
def test_ctrl_c_while_importing(ws: Path, library: str) -> None:
    assert_interrupted(interrupt(["-C", ws, "get", DET, "pedestals"], mapped(library)))


@pytest.fixture
def big_value(tmp_path: Path) -> Path:
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(1).random((64, 512, 1024), dtype=np.float32))  # 128 MiB
    return path


def test_ctrl_c_during_add_rolls_back_and_unlocks(ws: Path, big_value: Path) -> None:
    before = exe("-C", ws, "ls", DET, "pedestals", "--json").stdout
    lock = ws / "epix100a" / f"{DET}.h5.lock"
    result = interrupt(
        ["-C", ws, "add", DET, "pedestals", big_value, "--begin", "2024-02-01T00:00:00Z"],
        lambda proc: lock.exists(),
    )
    assert_interrupted(result)
    assert not lock.exists(), "the interrupted writer left its lock"
    exe("-C", ws, "verify")
    assert exe("-C", ws, "ls", DET, "pedestals", "--json").stdout == before
    small = big_value.parent / "small.npy"
    np.save(small, np.zeros(3, dtype=np.float32))
    exe("-C", ws, "--lock-timeout", "0", "add", DET, "pedestals", small, "--begin", "2024-03-01T00:00:00Z")


@pytest.fixture
def source(tmp_path: Path, big_value: Path) -> Iterator[Path]:
    root = tmp_path / "source"
    exe("init", root)
    for det in (DET, "jungfrau-0000000001"):
        exe("-C", root, "new", det)
        exe("-C", root, "add", det, "pedestals", big_value, "--begin", T0)
    yield root


def server_of(proc: subprocess.Popen[str]) -> psutil.Process | None:
    """The ``dcsync serve`` child of a local clone, once it runs."""
    try:
        for child in psutil.Process(proc.pid).children():
            if "serve" in child.cmdline():
                return child
    except psutil.Error:
        pass
    return None


def receiving(dest: Path) -> Callable[[subprocess.Popen[str]], bool]:
    """True once the clone has started writing a detector's file."""

    def check(proc: subprocess.Popen[str]) -> bool:
        return server_of(proc) is not None and any(
            p.suffix != ".toml" and p.is_file() and p.stat().st_size > 0
            for p in dest.rglob("*")
            if ".dcsync" not in p.parts or p.suffix == ".h5"
        )

    return check


def test_ctrl_c_during_a_local_clone(source: Path, tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the client and the server it runs over pipes: both stop cleanly."""
    dest = tmp_path / "dest"
    seen: list[psutil.Process] = []

    def moment(proc: subprocess.Popen[str]) -> bool:
        server = server_of(proc)
        if server is not None and not seen:
            seen.append(server)
        return receiving(dest)(proc)

    result = interrupt(["clone", "-q", source, dest], moment, group=True)
    assert_interrupted(result)
    assert seen and not seen[0].is_running(), "the server outlived its client"
    for det in (DET, "jungfrau-0000000001"):
        exe("-C", source, "verify", det)


def test_ctrl_c_of_the_server_side_of_a_local_clone(source: Path, tmp_path: Path) -> None:
    """SIGINT to the server alone: it ends with "interrupted", no traceback, and the client fails
    cleanly (quoting the server when its last words came before the client gave up)."""
    dest = tmp_path / "dest"
    proc = subprocess.Popen(
        [dcsync_exe(), "clone", "-q", str(source), str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (server := server_of(proc)) is None or "libhdf5" not in maps(server.pid):  # at work
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.001)
        server.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode not in (0, 130), err
    assert "Traceback" not in err, err  # the server's stderr, quoted when it arrived in time
    assert "said:" not in err or err.rstrip().endswith(f"said: {INTERRUPTED.strip()}"), err
