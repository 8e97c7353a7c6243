"""How commands print: rich tables for people, one JSON document for scripts, ISO 8601 UTC times.

Everything user-supplied is printed with markup off, so a ``[tag]`` in a message stays text. rich
is imported by :func:`console`, when a table is printed: importing it is ~20 ms of a command's
start-up, which lines (:func:`say`) and key/value listings (:func:`key_values`) do without.

With ``--json`` stdout carries exactly one JSON document, also when the command fails: every
command takes the one :data:`JsonOpt`, which records the request for this invocation, and the
error handler (:mod:`dcsync.cli.main`) prints :func:`error_json` unless the command already printed
its own document (``verify`` reports its problems, then fails).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from dcsync.errors import UsageError
from dcsync.model.objects import ParValue, RangeTree, VersionEntry
from dcsync.model.times import format_time

SHORT_ID = 12
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def console(*, stderr: bool = False) -> Console:
    """A console for this call (tests swap ``sys.stdout``); wide when piped so ids are not cut."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, markup=False, highlight=False, emoji=False)


@dataclass
class _JsonMode:
    """What this invocation asked for and printed (one per command run, in-process runs included)."""

    requested: bool = False
    printed: bool = False


_JSON_MODE: ContextVar[_JsonMode | None] = ContextVar("dcsync_json_mode", default=None)


def _mode() -> _JsonMode:
    """This run's record; outside a run (a command function called directly) a throwaway one."""
    return _JSON_MODE.get() or _JsonMode()


@contextmanager
def json_mode() -> Iterator[_JsonMode]:
    """A fresh record for one command run: whether ``--json`` was given and a document printed."""
    mode = _JsonMode()
    token = _JSON_MODE.set(mode)
    try:
        yield mode
    finally:
        _JSON_MODE.reset(token)


def _record_json(value: bool) -> bool:
    if value:
        _mode().requested = True
    return value


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON document instead of text (an error too).", callback=_record_json
    ),
]
"""The ``--json`` option of every command: one definition, so a failing command still answers in JSON."""


def emit_json(doc: Any) -> None:
    """Print one JSON document on stdout (NaN/inf are not JSON: callers pass None instead)."""
    typer.echo(json.dumps(doc, indent=2, allow_nan=False, default=_default))
    _mode().printed = True


def error_json(code: str, exit_code: int, message: str, details: Mapping[str, Any] | None = None) -> None:
    """The document a failing ``--json`` command prints, unless it printed its own already."""
    if _mode().printed:
        return
    emit_json(
        {"error": {"code": code, "exit": exit_code, "message": message, "details": dict(details or {})}}
    )


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def new_table(*args: Any, **kwargs: Any) -> Table:
    """A rich table, rich imported now (``--json`` never pays for it)."""
    from rich.table import Table

    return Table(*args, **kwargs)


def say(text: str) -> None:
    """One line for humans on stdout."""
    typer.echo(text)


def key_values(rows: Sequence[tuple[str, str]]) -> None:
    """``key  value`` lines for humans, the keys in one column (no table, so no rich)."""
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def short(oid: str | None) -> str:
    return "-" if oid is None else oid[:SHORT_ID]


def iso(ns: int | None) -> str | None:
    """ISO 8601 UTC for JSON; an open end is ``null``."""
    return None if ns is None else format_time(ns)


def dtype_name(entry: VersionEntry) -> str:
    if entry.kind == "text":
        return "text"
    try:
        return np.dtype(entry.dtype).name
    except TypeError:
        return entry.dtype


def shape_text(entry: VersionEntry) -> str:
    if entry.kind == "text":
        return f"{entry.nbytes} bytes"
    return "(" + ", ".join(str(n) for n in entry.shape) + ("," if len(entry.shape) == 1 else "") + ")"


def pars_text(pars: Mapping[str, ParValue]) -> str:
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}" for k, v in pars.items())


def entry_json(key: str, entry: VersionEntry, tree: RangeTree) -> dict[str, Any]:
    """A version as scripts see it everywhere (ls, show, get)."""
    return {
        "version": key,
        "object": entry.obj,
        "kind": entry.kind,
        "dtype": dtype_name(entry),
        "shape": list(entry.shape),
        "nbytes": entry.nbytes,
        "produced": format_time(entry.tsprod),
        "author": entry.author,
        "pars": dict(entry.pars),
        "origin": dict(entry.origin),
        "default": tree.default == key,
        "effective": tree.effective() == key,
    }


def constant_json(
    detname: str, ctype: str, rkey: str, tree: RangeTree, vkey: str, entry: VersionEntry
) -> dict[str, Any]:
    """One version with where it sits, flat (``add`` and ``get`` print this)."""
    doc: dict[str, Any] = {
        "detector": detname,
        "ctype": ctype,
        "range": rkey,
        "begin": format_time(tree.begin),
        "end": iso(tree.end),
    }
    doc.update(entry_json(vkey, entry, tree))
    doc["pinned"] = doc.pop("default")
    doc.pop("effective")
    return doc


def range_json(key: str, tree: RangeTree) -> dict[str, Any]:
    return {
        "range": key,
        "begin": format_time(tree.begin),
        "end": iso(tree.end),
        "default": tree.default,
        "effective": tree.effective(),
        "selection": "pinned" if tree.default is not None and tree.default in tree.versions else "latest",
        "pars": dict(tree.pars),
    }


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_value(text: str) -> ParValue:
    """A parameter value as typed: int, float, true/false, else the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(text.strip()):
        return int(text)
    if _FLOAT.match(text.strip()):
        return float(text)
    return text


def parse_pairs(items: list[str], what: str = "parameter") -> dict[str, ParValue]:
    """``KEY=VALUE`` items into a dict; a missing ``=`` or key is a usage error naming the item."""
    out: dict[str, ParValue] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{what} {item!r} is not KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out
