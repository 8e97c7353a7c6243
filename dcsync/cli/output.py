"""How commands print: rich tables for people, one JSON document for scripts, ISO 8601 UTC times.

Everything user-supplied is printed with markup off, so a ``[tag]`` in a message stays text.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import typer
from rich.console import Console

from dcsync.errors import UsageError
from dcsync.objects import ParValue, RangeTree, VersionEntry
from dcsync.times import format_time

SHORT_ID = 12
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def console(*, stderr: bool = False) -> Console:
    """A console for this call (tests swap ``sys.stdout``); wide when piped so ids are not cut."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, width=width, markup=False, highlight=False, emoji=False)


def emit_json(doc: Any) -> None:
    """Print one JSON document on stdout (NaN/inf are not JSON: callers pass None instead)."""
    typer.echo(json.dumps(doc, indent=2, allow_nan=False, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def say(text: str) -> None:
    """One line for humans on stdout."""
    typer.echo(text)


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
