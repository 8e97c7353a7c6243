"""Which module defines each top-level command, so that a command line imports only what it runs.

Importing every command module costs most of a short command's start-up (the sync protocol, SSH,
numpy, h5py, rich, and typer building every command's parameters); ``dcsync ls`` needs one. The
root group's command table is therefore a :class:`LazyCommands`: it knows every name (for
``--help``, and typo suggestions), and imports and builds a module's commands on the first lookup
of one of them. ``tests/cli/test_startup.py`` checks :data:`COMMANDS` against the modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
import typer.main

COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "init": ("workspace", "app", None),
    "new": ("workspace", "app", None),
    "add": ("constants", "app", None),
    "get": ("constants", "app", None),
    "default": ("constants", "app", None),
    "rm": ("constants", "app", None),
    "ls": ("browse", "app", None),
    "show": ("browse", "app", None),
    "log": ("browse", "app", None),
    "verify": ("verify", "app", None),
    "serve": ("sync", "app", None),
    "clone": ("sync", "app", None),
    "fetch": ("sync", "app", None),
    "pull": ("sync", "app", None),
    "push": ("sync", "app", None),
    "status": ("sync", "app", None),
    "diff": ("sync", "app", None),
    "promote": ("promote", "app", None),
    "remote": ("sync", "remote_app", "Named remote workspaces."),
    "acl": ("acl", "app", "Who may read and write this location."),
    "alias": ("alias", "app", "Human names for detectors."),
    "lock": ("lock", "app", "Inspect and break repository locks."),
    "par": ("par", "app", "Parameters on a detector, ctype, range or version."),
    "hooks": ("hooks", "app", "Hooks that check changes before they land; the samples."),
}
"""Every top-level command and group in ``--help`` order: its module under :mod:`dcsync.cli`, that
module's :class:`typer.Typer`, and for a group its one-line help."""


def build_commands(module: str, attr: str, group: str | None, help_text: str | None) -> dict[str, Any]:
    """The click commands of ``dcsync.cli.<module>.<attr>``: its commands, or one group ``group``."""
    holder = typer.Typer()
    holder.add_typer(
        getattr(importlib.import_module(f"dcsync.cli.{module}"), attr), name=group, help=help_text
    )
    return dict(typer.main.get_group(holder).commands)


class LazyCommands(MutableMapping[str, Any]):
    """The root group's commands by name; each is imported and built on its first lookup."""

    def __init__(self, commands: MutableMapping[str, Any]) -> None:
        self._built = dict(commands)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built and name in COMMANDS:
            module, attr, help_text = COMMANDS[name]
            group = name if help_text is not None else None
            for built, command in build_commands(module, attr, group, help_text).items():
                self._built.setdefault(built, command)
        return self._built[name]

    def __contains__(self, name: object) -> bool:  # without building it
        return name in self._built or name in COMMANDS

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*COMMANDS, *self._built]))

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._built))

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError("the command table is fixed")
