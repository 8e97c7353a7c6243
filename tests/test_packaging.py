"""What a fresh install needs is declared, and CI cannot pass by skipping.

A module that dcsync imports but pyproject.toml does not declare works on every machine where someone
once installed it by hand, and fails at a new user's first command (tomli_w did exactly that). The
check reads every import under ``dcsync/`` from the source (top-level and inside functions alike),
maps each third-party module to the distribution that provides it, and requires that distribution
among the core dependencies, or, for the optional parts named in ``OPTIONAL_PARTS``, in their extra.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from skip_policy import EXPECTED_SKIPS, is_expected

REPO_ROOT = Path(__file__).resolve().parent.parent

# Parts of the package that only some users load, and the extra that must declare what they import.
OPTIONAL_PARTS = {
    "dcsync/testing/store.py": "test",  # contract suites for third-party stores: need pytest
    "dcsync/testing/channel.py": "test",
    "dcsync/testing/sync.py": "test",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) for req in requirements}


def _imported_modules(path: Path) -> set[str]:
    """The top-level names of every absolute import in one source file."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def undeclared_imports(root: Path, optional_parts: dict[str, str]) -> list[str]:
    """Each third-party import under ``root/dcsync`` that ``root/pyproject.toml`` does not declare."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project.get("dependencies", []))
    extras = {
        name: _requirement_names(reqs) for name, reqs in project.get("optional-dependencies", {}).items()
    }
    providers = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted((root / "dcsync").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        extra = next((x for part, x in optional_parts.items() if relative.startswith(part)), None)
        allowed = core | extras.get(extra, set()) if extra else core
        for module in sorted(_imported_modules(path)):
            if module == "dcsync" or module in sys.stdlib_module_names:
                continue
            distributions = {_normalise(d) for d in providers.get(module, [module])}
            if not distributions & allowed:
                where = f"the [{extra}] extra or the core dependencies" if extra else "the core dependencies"
                problems.append(f"{relative} imports {module!r}, which is not in {where}")
    return problems


def test_every_third_party_import_is_declared() -> None:
    assert undeclared_imports(REPO_ROOT, OPTIONAL_PARTS) == []


def test_the_check_finds_an_undeclared_import(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy"]\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n'
    )
    package = tmp_path / "dcsync"
    (package / "sub").mkdir(parents=True)
    (package / "ok.py").write_text("import numpy as np\nimport os\nfrom dcsync import errors\n")
    (package / "sub" / "late.py").write_text("def f():\n    import tomli_w\n    return tomli_w\n")
    (package / "testing.py").write_text("import pytest\n")
    (package / "core.py").write_text("import pytest\n")
    assert undeclared_imports(tmp_path, {"dcsync/testing.py": "test"}) == [
        "dcsync/core.py imports 'pytest', which is not in the core dependencies",
        "dcsync/sub/late.py imports 'tomli_w', which is not in the core dependencies",
    ]


def test_ci_installs_into_a_fresh_environment_with_the_readme_commands() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv" in script and "--system-site-packages" not in script
    readme = (REPO_ROOT / "README.md").read_text().splitlines()
    fence = readme.index("```bash")
    commands = [line.split("#")[0].strip() for line in readme[fence + 1 : readme.index("```", fence)]]
    assert commands == [
        "pip install . && bash examples/demo.sh",
        'pip install -e ".[test]" && python -m pytest',
    ]


def _run_pytest(tmp_path: Path, source: str, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(Path(__file__).parent)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "skip_policy",
            "-q",
            "-p",
            "no:cacheprovider",
            "test_sample.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unlisted_skip_fails_a_ci_run(tmp_path: Path) -> None:
    source = "import pytest\n\ndef test_needs_sshd():\n    pytest.skip('sshd is not installed')\n"
    under_ci = _run_pytest(tmp_path, source, ci=True)
    assert under_ci.returncode == 1, under_ci.stdout
    assert "1 unexpected skips" in under_ci.stdout
    assert "test_sample.py::test_needs_sshd: Skipped: sshd is not installed" in under_ci.stdout
    assert _run_pytest(tmp_path, source, ci=False).returncode == 0


def test_the_expected_skips_are_named_and_matched_exactly() -> None:
    for skip in EXPECTED_SKIPS:
        assert skip.why and "::" in skip.nodeid
        assert is_expected(skip.nodeid, f"Skipped: {skip.reason}")
        assert not is_expected(skip.nodeid + "x", f"Skipped: {skip.reason}")
        assert not is_expected(skip.nodeid, "Skipped: something else")
