"""Per-level history, derived from commits: which commits changed a detector, a ctype, a range or a
version itself.

Nothing extra is stored for this: walking the first-parent chain and comparing each commit's tree
with its parent's answers it, and shared subtree ids make unchanged levels cost one comparison.
A level's "own state" is what a user would call a change to it: for the detector its links,
parameters and set of ctypes; for a ctype its parameters and set of ranges; for a range its
default, parameters and set of versions; for a version its whole entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcsync.model.hashing import ObjectId
from dcsync.model.objects import Commit, CtypeTree, RangeTree, RootTree
from dcsync.repo.repository import Repository


@dataclass(frozen=True)
class HistoryEntry:
    commit: ObjectId
    time: int
    author: str
    host: str
    message: str
    change: str  # "added", "changed" or "removed"

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "time": self.time,
            "author": self.author,
            "host": self.host,
            "message": self.message,
            "change": self.change,
        }


def _own_state(
    repo: Repository, root: RootTree, ctype: str | None, range: str | None, version: str | None
) -> Any:
    if ctype is None:
        return (root.predecessor, root.successor, dict(root.pars), sorted(root.ctypes))
    tid = root.ctypes.get(ctype)
    if tid is None:
        return None
    ct = repo.store.read_as(tid, CtypeTree)
    if range is None:
        return (dict(ct.pars), sorted(ct.ranges))
    ref = ct.ranges.get(range)  # type: ignore[call-overload]
    if ref is None:
        return None
    rng = repo.store.read_as(ref.tree, RangeTree)
    if version is None:
        return (rng.default, dict(rng.pars), sorted(rng.versions))
    return rng.versions.get(version)  # type: ignore[call-overload]


def level_history(
    repo: Repository, ctype: str | None = None, range: str | None = None, version: str | None = None
) -> list[HistoryEntry]:
    """Commits that changed the named level, oldest first."""
    chain: list[tuple[ObjectId, Commit]] = list(repo.commits())
    chain.reverse()
    out: list[HistoryEntry] = []
    previous: Any = None
    for cid, commit in chain:
        root = repo.store.read_as(commit.tree, RootTree)
        state = _own_state(repo, root, ctype, range, version)
        if state != previous:
            change = "added" if previous is None else "removed" if state is None else "changed"
            out.append(HistoryEntry(cid, commit.time, commit.author, commit.host, commit.message, change))
        previous = state
    return out
