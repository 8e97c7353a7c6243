"""dcsync: a git-like versioned store for detector calibration constants.

Scripts start here::

    import dcsync
    ws = dcsync.Workspace.find()
    repo = ws.repository("epix100a-3925868555")
    with repo.transaction(message="pedestals from run 42") as tx:
        tx.add("pedestals", array, begin="2026-11-21T08:00:00Z")
    constant = repo.get("pedestals", at="now")

Times take the command line's forms everywhere (ISO 8601 text, "now", a datetime, unix seconds);
nanoseconds only through parameters named for them (``begin_ns=``, ``at_ns=``...).

The names below are imported when first used (PEP 562): ``import dcsync`` and every ``dcsync``
command import only what they need, so ``dcsync --version`` or ``dcsync ls`` never load the sync
protocol, SSH or the command line they do not use.
"""

from __future__ import annotations

from dcsync.version import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms at every start)
if TYPE_CHECKING:
    from dcsync.errors import DcsyncError
    from dcsync.facade import DCRange, DCStore, DCType, DCVersion
    from dcsync.model.times import format_time, parse_time
    from dcsync.repo.history import HistoryEntry, level_history
    from dcsync.repo.repository import Constant, Repository
    from dcsync.repo.transaction import Transaction
    from dcsync.repo.trees import Located
    from dcsync.repo.verify import VerifyReport
    from dcsync.sync.cloning import clone
    from dcsync.workspace.config import RemoteConfig
    from dcsync.workspace.verify import verify_path
    from dcsync.workspace.workspace import Workspace

_HOMES = {
    "Constant": "dcsync.repo.repository",
    "DCRange": "dcsync.facade",
    "DCStore": "dcsync.facade",
    "DCType": "dcsync.facade",
    "DCVersion": "dcsync.facade",
    "DcsyncError": "dcsync.errors",
    "HistoryEntry": "dcsync.repo.history",
    "Located": "dcsync.repo.trees",
    "RemoteConfig": "dcsync.workspace.config",
    "Repository": "dcsync.repo.repository",
    "Transaction": "dcsync.repo.transaction",
    "VerifyReport": "dcsync.repo.verify",
    "Workspace": "dcsync.workspace.workspace",
    "clone": "dcsync.sync.cloning",
    "format_time": "dcsync.model.times",
    "level_history": "dcsync.repo.history",
    "parse_time": "dcsync.model.times",
    "verify_path": "dcsync.workspace.verify",
}
"""Where each public name is defined."""

__all__ = [
    "Constant",
    "DCRange",
    "DCStore",
    "DCType",
    "DCVersion",
    "DcsyncError",
    "HistoryEntry",
    "Located",
    "RemoteConfig",
    "Repository",
    "Transaction",
    "VerifyReport",
    "Workspace",
    "__version__",
    "clone",
    "format_time",
    "level_history",
    "parse_time",
    "verify_path",
]


def _load(name: str) -> object:
    """A public name, imported from its module on first use and kept as a module attribute."""
    home = _HOMES.get(name)
    if home is None:  # also how ``from dcsync import wire`` falls through to importing a submodule
        raise AttributeError(f"module 'dcsync' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def _names() -> list[str]:
    return sorted({*globals(), *__all__})


if not TYPE_CHECKING:  # for type checkers the names above are imported; no catch-all
    __getattr__ = _load
    __dir__ = _names
del TYPE_CHECKING  # not part of the API
