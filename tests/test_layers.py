"""The package tree is the architecture: imports point down the layers only, and there is no cycle.

The graph is read from the source (``ast``), so imports inside functions count as much as those
at the top of a module: a cycle held together by a late import is still a cycle. The layers, from
the bottom (docs/architecture.md draws the same picture):

=====  ==============================================================================
rank   packages (a module may import its own package and any lower rank, never higher)
=====  ==============================================================================
0      ``dcsync.version``, ``dcsync.errors``, ``dcsync.interrupts`` (Ctrl-C: the console script's and
       the command line's)
1      ``dcsync.model``, ``dcsync.rawio`` (side by side)
2      ``dcsync.store``, ``dcsync.transport``, ``dcsync.legacy`` (side by side: not each other)
3      ``dcsync.repo``
4      ``dcsync.workspace``
5      ``dcsync.sync``
6      ``dcsync.facade``, ``dcsync.testing``
7      ``dcsync`` (the package's ``__init__``: the public API)
8      ``dcsync.cli``, ``dcsync.entry``, ``dcsync.__main__`` (nothing imports these but each other)
=====  ==============================================================================
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcsync"

LAYERS: dict[str, int] = {
    "dcsync.version": 0,
    "dcsync.errors": 0,
    "dcsync.interrupts": 0,
    "dcsync.rawio": 1,
    "dcsync.model": 1,
    "dcsync.store": 2,
    "dcsync.transport": 2,
    "dcsync.legacy": 2,
    "dcsync.repo": 3,
    "dcsync.workspace": 4,
    "dcsync.sync": 5,
    "dcsync.facade": 6,
    "dcsync.testing": 6,
    "dcsync": 7,
    "dcsync.cli": 8,
    "dcsync.entry": 8,
    "dcsync.__main__": 8,
}
TOP = 8  # the entry points: anything may be imported from here, and nothing imports them


def layer_of(module: str) -> str:
    """The layer a module belongs to: its package among :data:`LAYERS` (the longest that matches)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS and (name != "dcsync" or module == "dcsync"):
            return name
    raise KeyError(f"{module} is in no layer: add its package to LAYERS and docs/architecture.md")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported dcsync module, line) for every import in the file, at any depth."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "dcsync" or alias.name.startswith("dcsync."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            if not (base == "dcsync" or base.startswith("dcsync.")):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"  # ``from dcsync.sync import server`` imports a module
                yield (sub if sub in known else base), node.lineno


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, over every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for target, line in imports_of(path, module, set(files)):
            if target != module:
                edges.setdefault(target, line)
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """Every import that points up the layers, or sideways into another package of the same rank."""
    bad = []
    for module, edges in sorted(graph.items()):
        here = layer_of(module)
        for target, line in sorted(edges.items()):
            there = layer_of(target)
            if there == here:
                continue
            if LAYERS[there] >= LAYERS[here] and not (LAYERS[here] == TOP and LAYERS[there] == TOP):
                bad.append(
                    f"{module}:{line} imports {target} ({there}, rank {LAYERS[there]} >= {LAYERS[here]})"
                )
    return bad


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle to cut."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in import_graph(PACKAGE):
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_nothing_imports_the_command_line() -> None:
    graph = import_graph(PACKAGE)
    users = sorted(
        f"{module} imports {target}"
        for module, edges in graph.items()
        for target in edges
        if layer_of(target) == "dcsync.cli" and LAYERS[layer_of(module)] < TOP
    )
    assert users == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "dcsync"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_planted_cycle_through_a_late_import_is_found(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "repo/__init__.py": "",
            "repo/a.py": "from dcsync.repo import b\n",
            "repo/b.py": "def late():\n    from dcsync.repo.a import thing\n    return thing\n",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["dcsync.repo.a", "dcsync.repo.b"]]
    assert upward_imports(graph) == []  # same package: the layers allow it, the cycle check does not


def test_a_planted_upward_import_is_found(tmp_path: Path) -> None:
    root = _plant(
        tmp_path,
        {
            "store/__init__.py": "",
            "store/hdf5.py": "def f():\n    from ..sync import server\n    return server\n",
            "sync/__init__.py": "",
            "sync/server.py": "from dcsync.store import hdf5\n",
            "transport/__init__.py": "",
            "transport/openssh.py": "import dcsync.legacy.geometry\n",
            "legacy/__init__.py": "",
            "legacy/geometry.py": "",
            "repo/__init__.py": "",
            "repo/x.py": "from dcsync.cli import main\n",
            "cli/__init__.py": "",
            "cli/main.py": "from dcsync.sync import server\n",
        },
    )
    assert upward_imports(import_graph(root)) == [
        "dcsync.repo.x:1 imports dcsync.cli.main (dcsync.cli, rank 8 >= 3)",
        "dcsync.store.hdf5:2 imports dcsync.sync.server (dcsync.sync, rank 5 >= 2)",
        "dcsync.transport.openssh:1 imports dcsync.legacy.geometry (dcsync.legacy, rank 2 >= 2)",
    ]


def test_a_module_outside_the_layers_is_refused() -> None:
    assert layer_of("dcsync.model.times") == "dcsync.model"
    assert layer_of("dcsync") == "dcsync"
    with pytest.raises(KeyError, match=r"dcsync\.nowhere is in no layer"):
        layer_of("dcsync.nowhere")  # a new top-level module must be given a layer first
