"""How ``--help`` names arguments and options: ``DET CTYPE [VERSION]``, ``--begin TIME``, ``--json``.

typer prints a required argument as ``{ctype}``, an optional one given a bracketed metavar as
``[[DET]]``, and a type column of ``<str>``, ``<bool>`` or ``<list[str]>`` beside every parameter;
users read those as syntax to type. Here each argument is its metavar (upper case, ``...`` when
repeatable), in brackets when optional; an option shows its metavar and a flag shows nothing.

typer builds its own parameter objects and offers no hook for another class, so :func:`readable`
re-classes the built objects as the subclasses below, which change only how a parameter is
*named* (parsing, defaults and errors stay typer's). Commands give their metavars where the name
alone would not say what to type (``--begin TIME``); the rest fall back to the upper-cased name.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperOption


def _name(param: Any) -> str:
    return str(param.name or "value").upper()


class ReadableArgument(TyperArgument):
    """An argument shown as its metavar; brackets mean optional, ``...`` repeatable."""

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        piece = str(self.metavar)
        return [piece if self.required else f"[{piece}]"]

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column already says what to type


class ReadableOption(TyperOption):
    """An option followed by its metavar; a flag by nothing."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else str(self.metavar)


def _readable_param(param: Any) -> None:
    if type(param) is TyperArgument:
        param.__class__ = ReadableArgument
        base = param.metavar or _name(param)
        param.metavar = base + ("..." if param.nargs != 1 and not base.endswith("...") else "")
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
