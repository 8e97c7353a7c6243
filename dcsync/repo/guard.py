"""The commit guard: what judges a commit before HEAD moves, given to a repository when it is built.

The repository layer knows nothing of access rules or hooks; the workspace a file sits in does
(:class:`dcsync.workspace.policy.Policy`: its ACL, then its hooks), and it passes them in as the
guard of every repository it opens. A file opened on its own, outside any workspace, gets
:data:`DEFAULT_GUARD`, which lets every change through and says so.

:meth:`CommitGuard.check_commit` runs inside the write transaction, after the new objects are in
place and before HEAD moves, so a refusal leaves nothing behind; :meth:`CommitGuard.after_commit`
runs once the move is durable, for a commit that arrives like a push (a promotion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dcsync.model.hashing import ObjectId
from dcsync.store.base import ObjectStore

PayloadPath = Callable[[ObjectId], Path | None]
"""A new payload as a file, for hooks that check values (None: not one this commit adds)."""


@dataclass(frozen=True)
class Move:
    """A HEAD move a local commit asks to make: what a guard judges (who asks is the guard's to
    find out: the repository does not know identities)."""

    detname: str
    store: ObjectStore
    old: ObjectId | None
    new: ObjectId
    command: str  # "commit", "promote", ... as the reflog records it
    payload_path: PayloadPath


class CommitGuard(Protocol):
    """What a transaction needs from the rules of the place its file lives in."""

    def check_commit(self, move: Move, *, phase: str) -> list[str]:
        """Refuse the move by raising (``AccessDenied``, ``HookRejected``); the notes hooks printed.
        ``phase`` names the hooks that judge it: "pre-commit", or "pre-receive" for a change that
        arrives like a push."""
        ...

    def after_commit(self, move: Move) -> list[str]:
        """React to a move that landed (post-receive hooks); the notes they printed."""
        ...


class DefaultGuard:
    """The guard of a file outside any workspace: no ACL and no hooks, so every change passes."""

    description = "no workspace: default rules (no ACL, no hooks: every change passes)"

    def check_commit(self, move: Move, *, phase: str) -> list[str]:
        return []

    def after_commit(self, move: Move) -> list[str]:
        return []

    def __repr__(self) -> str:
        return f"<commit guard: {self.description}>"


DEFAULT_GUARD = DefaultGuard()
