"""How ``--help`` names arguments and options: ``DET CTYPE [VERSION]``, ``--begin TIME``, ``--json``.

typer prints a required argument as ``{ctype}``, an optional one given a bracketed metavar as
``[[DET]]``, and a type column of ``<str>``, ``<path>`` or ``<list[str]>`` beside every argument;
users read those as syntax to type. Here each argument is its metavar (upper case, ``...`` when
repeatable), in brackets when optional, with no type column; an option shows its metavar and a flag
shows nothing (typer already hides a flag's ``BOOLEAN``).

typer builds its own parameter objects and offers no hook for another class, so :func:`readable`
re-classes the built objects as the subclasses below, which change only how a parameter is
*named* (parsing, defaults and errors stay typer's). typer's help takes an argument's type column
from its click type's ``get_metavar``, so an argument gets a copy of its type that names nothing
(:func:`_unnamed`); the type still parses. Commands give their metavars where the name alone would
not say what to type (``--begin TIME``); the rest fall back to the upper-cased name.
"""

from __future__ import annotations

import copy
from typing import Any

from typer.core import TyperArgument, TyperOption


def _name(param: Any) -> str:
    return str(param.name or "value").upper()


def _no_metavar(self: Any, param: Any, ctx: Any = None) -> str:
    return ""  # not None: typer would print ``<name>`` instead


_UNNAMED: dict[type, type] = {}


def _unnamed_class(cls: type) -> type:
    if cls not in _UNNAMED:
        _UNNAMED[cls] = type(cls.__name__, (cls,), {"get_metavar": _no_metavar})
    return _UNNAMED[cls]


def _unnamed(param_type: Any) -> Any:
    """A copy of a click type (they are shared: ``STRING``) that gives help no type name."""
    unnamed = copy.copy(param_type)
    unnamed.__class__ = _unnamed_class(type(param_type))
    return unnamed


class ReadableArgument(TyperArgument):
    """An argument shown as its metavar; brackets mean optional, ``...`` repeatable."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        piece = str(self.metavar)
        return [piece if self.required else f"[{piece}]"]


class ReadableOption(TyperOption):
    """An option followed by its metavar; a flag by nothing."""


def _readable_param(param: Any) -> None:
    if type(param) is TyperArgument:
        param.__class__ = ReadableArgument
        base = param.metavar or _name(param)
        param.metavar = base + ("..." if param.nargs != 1 and not base.endswith("...") else "")
        param.type = _unnamed(param.type)
    elif type(param) is TyperOption:
        param.__class__ = ReadableOption
        if param.metavar is None and not (param.is_flag or param.count):
            param.metavar = _name(param)


def readable_params(params: list[Any]) -> list[Any]:
    """Make ``params`` readable in place (idempotent) and return them."""
    for param in params:
        _readable_param(param)
    return params


def readable(command: Any, ctx: Any) -> Any:
    """Make ``command``, its help option and every subcommand readable; return ``command``."""
    readable_params(command.get_params(ctx))  # get_params creates the --help option too
    for sub in getattr(command, "commands", {}).values():
        readable(sub, ctx)
    return command
