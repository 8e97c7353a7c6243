"""The sync layer: moving constants between workspaces, as git moves commits.

The commands a script calls are importable from here (``from dcsync import sync``;
``sync.pull(ws, "origin")``); each lives in a module of its own, loaded on first use so that
``dcsync serve`` imports only the server side:

- :mod:`~dcsync.sync.cloning`, :mod:`~dcsync.sync.fetching`, :mod:`~dcsync.sync.pulling`,
  :mod:`~dcsync.sync.pushing`, :mod:`~dcsync.sync.tracking`, :mod:`~dcsync.sync.compare` (``diff``),
  :mod:`~dcsync.sync.promote`: the client's commands;
- :mod:`~dcsync.sync.client` (typed calls over a channel) and :mod:`~dcsync.sync.server` (the
  other end), speaking :mod:`~dcsync.sync.protocol`; the server's method table is
  :mod:`~dcsync.sync.methods`, its ref updates :mod:`~dcsync.sync.heads`, and ``dcsync serve
  --stdio`` :mod:`~dcsync.sync.serving`;
- :mod:`~dcsync.sync.stores`: both ends' seam to the store layer (only it and whole files open
  HDF5 files; the client's repositories open with their workspace's guard);
- :mod:`~dcsync.sync.transfer`, :mod:`~dcsync.sync.quarantine`, :mod:`~dcsync.sync.wholefile`:
  objects and whole files in flight, written once for both ends.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dcsync.sync.client import connect
    from dcsync.sync.cloning import clone, unfinished_clone
    from dcsync.sync.compare import DiffReport, diff_sources
    from dcsync.sync.fetching import FetchReport, fetch
    from dcsync.sync.pulling import PullReport, pull
    from dcsync.sync.pushing import PushReport, push
    from dcsync.sync.tracking import StatusRow, status
    from dcsync.sync.transfer import Progress

_HOMES = {
    "DiffReport": "compare",
    "FetchReport": "fetching",
    "Progress": "transfer",
    "PullReport": "pulling",
    "PushReport": "pushing",
    "StatusRow": "tracking",
    "clone": "cloning",
    "connect": "client",
    "diff_sources": "compare",
    "fetch": "fetching",
    "pull": "pulling",
    "push": "pushing",
    "status": "tracking",
    "unfinished_clone": "cloning",
}

__all__ = [
    "DiffReport",
    "FetchReport",
    "Progress",
    "PullReport",
    "PushReport",
    "StatusRow",
    "clone",
    "connect",
    "diff_sources",
    "fetch",
    "pull",
    "push",
    "status",
    "unfinished_clone",
]


def _load(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:  # ``from dcsync.sync import server`` falls through to importing the submodule
        raise AttributeError(f"module 'dcsync.sync' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"dcsync.sync.{home}"), name)
    globals()[name] = value
    return value


if not TYPE_CHECKING:
    __getattr__ = _load
del TYPE_CHECKING
