"""The commit guard seam: a repository judges each commit by the guard it was built with, knowing
nothing of ACLs or hooks; a file on its own gets the default guard, which says what it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcsync.errors import HookRejected
from dcsync.repo.guard import DEFAULT_GUARD, Move
from dcsync.repo.repository import Repository

T0 = 1_700_000_000 * 10**9


class Recorder:
    """A guard that keeps every move it is shown and refuses those of one command."""

    def __init__(self, refuse: str = "") -> None:
        self.checked: list[tuple[Move, str]] = []
        self.after: list[Move] = []
        self.refuse = refuse

    def check_commit(self, move: Move, *, phase: str) -> list[str]:
        self.checked.append((move, phase))
        if move.command == self.refuse:
            raise HookRejected(f"{move.command} refused by the test's guard")
        return []

    def after_commit(self, move: Move) -> list[str]:
        self.after.append(move)
        return []


@pytest.mark.parametrize("where", ["memory", "hdf5"])
def test_a_repository_without_a_workspace_gets_the_default_guard_and_says_so(
    tmp_path: Path, where: str
) -> None:
    path = None if where == "memory" else tmp_path / "epix-1.h5"
    with Repository.create(path, "epix-1") as repo:
        assert repo.guard is DEFAULT_GUARD
        assert "no workspace: default rules" in repr(repo.guard)
        with repo.transaction("anything goes") as tx:
            tx.add("pedestals", np.zeros(3), begin_ns=T0)
        assert repo.get("pedestals", at_ns=T0).value.tolist() == [0.0, 0.0, 0.0]
    if path is not None:
        with Repository.open(path) as again:
            assert again.guard is DEFAULT_GUARD


def test_the_guard_judges_the_move_before_head_moves(tmp_path: Path) -> None:
    guard = Recorder(refuse="rm")
    with Repository.create(tmp_path / "epix-1.h5", "epix-1", guard=guard) as repo:
        first = repo.head()
        with repo.transaction("peds", command="add") as tx:
            tx.add("pedestals", np.ones(3), begin_ns=T0)
        (move, phase), *_ = guard.checked
        assert (move.detname, move.old, move.new, move.command, phase) == (
            "epix-1",
            first,
            repo.head(),
            "add",
            "pre-commit",
        )
        assert move.payload_path(repo.get("pedestals", at_ns=T0).obj) is not None  # hooks see values
        assert guard.after == []  # post-receive only for what arrives like a push
        added = repo.head()
        refused = pytest.raises(HookRejected, match="refused by the test's guard")
        with refused, repo.transaction("drop", command="rm") as tx:
            tx.remove("pedestals")
        assert repo.head() == added and repo.ctypes() == ["pedestals"]  # nothing landed


def test_a_change_arriving_like_a_push_is_announced_after_it_lands(tmp_path: Path) -> None:
    guard = Recorder()
    with Repository.create(tmp_path / "epix-1.h5", "epix-1", guard=guard) as repo:
        with repo.transaction("promoted", command="promote") as tx:
            tx.phase = "pre-receive"
            tx.add("pedestals", np.ones(3), begin_ns=T0)
        assert [phase for _, phase in guard.checked] == ["pre-receive"]
        assert [m.new for m in guard.after] == [repo.head()]
