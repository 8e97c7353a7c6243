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
"""

from __future__ import annotations

from dcsync.errors import DcsyncError
from dcsync.facade import DCRange, DCStore, DCType, DCVersion
from dcsync.history import HistoryEntry, level_history
from dcsync.repository import Constant, Located, Repository, Transaction
from dcsync.sync import RemoteConfig, clone
from dcsync.times import format_time, parse_time
from dcsync.verify import VerifyReport, verify_path
from dcsync.version import __version__
from dcsync.workspace import Workspace

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
