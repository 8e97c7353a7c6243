"""The error tree as documented: every wire code in docs/cli.md's table, in the row of its exit code,
and in the tree drawn in ``dcsync.errors``' docstring."""

from __future__ import annotations

import re
from pathlib import Path

import dcsync.errors
from dcsync.errors import EXIT_CODES, NotFound, by_wire_code

CLI_MD = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _documented_rows() -> dict[int, set[str]]:
    section = CLI_MD.read_text().split("### Error codes", 1)[1].split("\n\n", 3)[2]
    rows: dict[int, set[str]] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| (\d+) \| (.*) \|", line)
        if match:
            rows[int(match[1])] = set(re.findall(r"`([^`]+)`", match[2]))
    return rows


def test_every_wire_code_is_documented_with_its_exit_code() -> None:
    expected: dict[int, set[str]] = {}
    for code, cls in by_wire_code().items():
        expected.setdefault(cls.exit_code, set()).add(code)
        assert cls.exit_code in EXIT_CODES, cls
    assert _documented_rows() == expected


def test_the_docstring_tree_names_every_class_with_its_codes() -> None:
    tree = dcsync.errors.__doc__ or ""
    for code, cls in by_wire_code().items():
        line = next((x for x in tree.splitlines() if re.search(rf"\b{cls.__name__}\b", x)), "")
        assert f"exit {cls.exit_code} " in line and line.rstrip().endswith(code), (cls, line)


def test_what_is_missing_keeps_exit_3() -> None:
    for name in ("AliasNotFound", "RemoteNotFound", "CtypeNotFound", "VersionNotFound", "DetectorNotFound"):
        cls = getattr(dcsync.errors, name)
        assert issubclass(cls, NotFound) and issubclass(cls, KeyError) and cls.exit_code == 3
