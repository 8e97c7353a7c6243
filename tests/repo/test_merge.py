"""Three-way merge: merge bases over histories with merges, clean merges of independent work,
every kind of conflict, ``prefer`` resolution, the conflict report, and algebraic properties.

Diverged histories are made two ways: in memory, by moving HEAD back and committing again (one
store holds both branches); and as users make them, by copying a detector file and committing on
each copy, then copying the other copy's objects over (what a fetch does).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from dcsync.errors import MergeConflict, NotFound, VersionNotFound
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey, range_key
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree, VersionEntry, object_id
from dcsync.repo.graph import is_ancestor, merge_base
from dcsync.repo.merge import (
    ROOT,
    Conflict,
    MergeResult,
    Side,
    conflicts_json,
    describe_conflicts,
    merge_trees,
)
from dcsync.repo.repository import Repository
from dcsync.store.base import ObjectStore
from dcsync.store.memory import MemoryStore
from dcsync.store.refs import HEAD, LogRecord

NS = 1_000_000_000
T0 = 1_795_248_000 * NS
T1 = T0 + 3600 * NS
R0 = range_key(T0, None)
R1 = range_key(T1, None)


def arr(value: float, dtype: str = "f4") -> np.ndarray:
    return np.full((2, 3), value, dtype=dtype)


# -- helpers: branches, fetch, merge commit ---------------------------------------------------------


def first(repo: Repository, ctype: str, at: int) -> float:
    """The first element of the array a lookup returns."""
    value = repo.get(ctype, at_ns=at).value
    assert isinstance(value, np.ndarray)
    return float(value.flat[0])


def root_of(store: ObjectStore, cid: ObjectId) -> RootTree:
    tree = store.read_object(store.read_commit(cid).tree)
    assert isinstance(tree, RootTree)
    return tree


def head(repo: Repository) -> ObjectId:
    cid = repo.head()
    assert cid is not None
    return cid


def move_head(repo: Repository, to: ObjectId) -> None:
    store = repo.store
    with store.writing():
        current = store.head()
        store.set_ref(HEAD, current, to, LogRecord(HEAD, current, to, "reset", "test"))


def commit_at(repo: Repository, at: ObjectId, change: Callable[[Any], object], message: str = "") -> ObjectId:
    """A commit whose parent is ``at`` (a branch made by moving HEAD back first)."""
    move_head(repo, at)
    with repo.transaction(message=message or "test") as tx:
        change(tx)
    return head(repo)


def fetch(dst: Repository, src: Repository) -> ObjectId:
    """Copy every object ``dst`` lacks from ``src``; return src's HEAD (what a fetch does)."""
    with dst.store.writing():
        for oid in src.store.object_ids():
            if dst.store.has(oid):
                continue
            kind = src.store.kind_of(oid)
            if kind in ("tree", "commit"):
                dst.store.put_object(src.store.read_object(oid))
            else:
                dst.store.put_payload(src.store.read_payload(oid), known_id=oid)
    return head(src)


def merge_commit(repo: Repository, theirs: ObjectId, *, prefer: Side | None = None) -> MergeResult:
    """Merge ``theirs`` into HEAD as a two-parent commit, as ``pull`` would."""
    store = repo.store
    ours = head(repo)
    base = merge_base(store, ours, theirs)
    result = merge_trees(
        store,
        None if base is None else root_of(store, base),
        root_of(store, ours),
        root_of(store, theirs),
        prefer=prefer,
    )
    if result.conflicts and prefer is None:
        raise MergeConflict(describe_conflicts(result.root.detname, result.conflicts))
    with store.writing():
        for obj in result.new_objects:
            store.put_object(obj)
        tree = store.put_object(result.root)
        commit = Commit(tree, (ours, theirs), "tester", "host", T1, "merge")
        cid = store.put_object(commit)
        store.set_ref(HEAD, ours, cid, LogRecord(HEAD, ours, cid, "merge", "merge"))
    return result


def snapshot(store: ObjectStore, root: RootTree) -> dict[str, Any]:
    """The whole tree as plain data, to compare merge results with what is expected."""
    out: dict[str, Any] = {
        ROOT: {"pars": dict(root.pars), "pred": root.predecessor, "succ": root.successor},
    }
    for name, tid in root.ctypes.items():
        ct = store.read_object(tid)
        assert isinstance(ct, CtypeTree)
        ranges: dict[str, Any] = {}
        for rk, ref in ct.ranges.items():
            rt = store.read_object(ref.tree)
            assert isinstance(rt, RangeTree)
            assert (rt.begin, rt.end) == (ref.begin, ref.end)
            assert rt.versions, "empty ranges are pruned"
            ranges[rk] = {
                "default": rt.default,
                "pars": dict(rt.pars),
                "versions": {vk: (e.obj, dict(e.pars)) for vk, e in rt.versions.items()},
            }
        out[name] = {"pars": dict(ct.pars), "ranges": ranges}
    return out


def stored(store: ObjectStore, result: MergeResult) -> RootTree:
    """Put the new objects; check that every id the merged root names is then in the store."""
    with store.writing():
        for obj in result.new_objects:
            store.put_object(obj)
    for tid in result.root.ctypes.values():
        ct = store.read_object(tid)
        assert isinstance(ct, CtypeTree)
        for ref in ct.ranges.values():
            assert store.has(ref.tree)
    return result.root


def versions(store: ObjectStore, root: RootTree, ctype: str, rk: str) -> set[str]:
    return set(snapshot(store, root)[ctype]["ranges"][rk]["versions"])


@pytest.fixture
def repo() -> Repository:
    """A memory repository with one pinned pedestal in R0 and a gain in R0 (commit "A")."""
    r = Repository.create(None, "epix-1")
    with r.transaction(message="A") as tx:
        tx.add("pedestals", arr(1), begin_ns=T0)
        tx.add("pixel_gain", arr(2), begin_ns=T0)
    return r


def three(
    repo: Repository, ours: Callable[[Any], object], theirs: Callable[[Any], object]
) -> tuple[ObjectId, ObjectId, ObjectId]:
    a = head(repo)
    b = commit_at(repo, a, ours, "ours")
    c = commit_at(repo, a, theirs, "theirs")
    move_head(repo, b)
    return a, b, c


def merged(
    repo: Repository, ours: Callable[[Any], object], theirs: Callable[[Any], object], **kw: Any
) -> MergeResult:
    """Merge two changes made on HEAD; HEAD is left where it was."""
    a, b, c = three(repo, ours, theirs)
    move_head(repo, a)
    store = repo.store
    return merge_trees(store, root_of(store, a), root_of(store, b), root_of(store, c), **kw)


# -- history ---------------------------------------------------------------------------------------


def test_merge_base_linear(repo: Repository) -> None:
    store = repo.store
    a = head(repo)
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=T1)
    b = head(repo)
    with repo.transaction() as tx:
        tx.add("pedestals", arr(4), begin_ns=T1)
    c = head(repo)
    assert merge_base(store, b, c) == b
    assert merge_base(store, c, b) == b
    assert merge_base(store, c, c) == c
    assert merge_base(store, a, c) == a
    assert is_ancestor(store, a, c) and is_ancestor(store, b, c) and is_ancestor(store, c, c)
    assert not is_ancestor(store, c, a)


def test_merge_base_diverged_and_after_merges(repo: Repository) -> None:
    store = repo.store
    a = head(repo)
    b = commit_at(repo, a, lambda tx: tx.add("pedestals", arr(3), begin_ns=T1, make_default=False))
    c = commit_at(repo, a, lambda tx: tx.add("pixel_gain", arr(4), begin_ns=T1))
    assert merge_base(store, b, c) == a == merge_base(store, c, b)
    assert not is_ancestor(store, b, c) and not is_ancestor(store, c, b)
    move_head(repo, b)
    merge_commit(repo, c)
    m = head(repo)
    assert store.read_commit(m).parents == (b, c)
    assert merge_base(store, m, c) == c and merge_base(store, b, m) == b
    assert is_ancestor(store, c, m) and is_ancestor(store, a, m)
    d = commit_at(repo, m, lambda tx: tx.set_pars({"x": 1}))
    e = commit_at(repo, c, lambda tx: tx.set_pars({"y": 1}))
    f = commit_at(repo, b, lambda tx: tx.set_pars({"z": 1}))
    # after a merge, the best common ancestor is the merged-in side, not the old fork point
    assert merge_base(store, d, e) == c == merge_base(store, e, d)
    assert merge_base(store, d, f) == b
    assert merge_base(store, e, f) == a
    # and merging again works from that base
    move_head(repo, d)
    result = merge_commit(repo, e)
    assert result.conflicts == []
    assert dict(result.root.pars) == {"x": 1, "y": 1}


def test_merge_base_criss_cross(repo: Repository) -> None:
    store = repo.store
    a = head(repo)
    b = commit_at(repo, a, lambda tx: tx.set_pars({"b": 1}))
    c = commit_at(repo, a, lambda tx: tx.set_pars({"c": 1}))
    move_head(repo, b)
    merge_commit(repo, c)
    m1 = head(repo)
    move_head(repo, c)
    merge_commit(repo, b)
    m2 = head(repo)
    assert store.read_commit(m1).tree == store.read_commit(m2).tree
    # two best common ancestors: either is right; never the older fork point
    assert merge_base(store, m1, m2) in {b, c}
    assert merge_base(store, m1, m2) == merge_base(store, m2, m1)


def test_unrelated_histories_have_no_base_and_still_merge() -> None:
    one = Repository.create(None, "epix-1")
    with one.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=T0)
    two = Repository.create(None, "epix-1")
    with two.transaction() as tx:
        tx.add("pixel_gain", arr(2), begin_ns=T0)
    theirs = fetch(one, two)
    assert merge_base(one.store, head(one), theirs) is None
    result = merge_commit(one, theirs)
    assert result.conflicts == []
    assert set(result.root.ctypes) == {"pixel_gain", "pedestals"}
    assert result.root.created == min(root_of(one.store, theirs).created, one.root(head(one)).created)


def test_copied_files_share_history_and_merge(tmp_path: Path) -> None:
    path_a, path_b = tmp_path / "a" / "epix-1.h5", tmp_path / "b" / "epix-1.h5"
    path_a.parent.mkdir()
    path_b.parent.mkdir()
    with Repository.create(path_a, "epix-1") as repo:
        with repo.transaction(message="first") as tx:
            tx.add("pedestals", arr(1), begin_ns=T0)
            tx.set_pars({"gain_mode": "high"}, ctype="pedestals")
        shared = head(repo)
    shutil.copy(path_a, path_b)
    with Repository.open(path_a) as ra, Repository.open(path_b) as rb:
        with ra.transaction(message="laptop") as tx:
            tx.add("pedestals", arr(2), begin_ns=T1)
            tx.set_pars({"site": "laptop"})
        with rb.transaction(message="experiment") as tx:
            tx.add("pixel_status", np.zeros((2, 3), np.uint8), begin_ns=T0)
            tx.add("pedestals", arr(3), begin_ns=T0, make_default=False)
        theirs = fetch(ra, rb)
        ours = head(ra)
        assert merge_base(ra.store, ours, theirs) == shared
        result = merge_commit(ra, theirs)
        merged_head = head(ra)
        assert result.conflicts == []
        snap = snapshot(ra.store, ra.root())
        assert set(snap) == {ROOT, "pedestals", "pixel_status"}
        assert snap[ROOT]["pars"] == {"site": "laptop"}
        assert snap["pedestals"]["pars"] == {"gain_mode": "high"}
        assert len(snap["pedestals"]["ranges"][R0]["versions"]) == 2
        assert len(snap["pedestals"]["ranges"][R1]["versions"]) == 1
        # lookups see both sides' work; R0's pinned default is still the first pedestal
        assert first(ra, "pedestals", T0) == 1.0
        assert first(ra, "pedestals", T1) == 2.0
        assert ra.get("pixel_status", at_ns=T0).entry.dtype == "|u1"
    with Repository.open(path_a) as again:  # persisted, and the merge commit has two parents
        assert again.head() == merged_head
        assert again.commit().parents == (ours, theirs)
        assert merge_base(again.store, merged_head, theirs) == theirs


# -- clean merges ----------------------------------------------------------------------------------


def test_additions_in_different_ctypes_and_ranges(repo: Repository) -> None:
    result = merged(
        repo,
        lambda tx: (tx.add("pedestals", arr(5), begin_ns=T1), tx.add("geometry", "a\nb\n", begin_ns=T0)),
        lambda tx: (
            tx.add("pixel_gain", arr(6), begin_ns=T1),
            tx.add("pixel_mask", arr(1, "u1"), begin_ns=T0),
        ),
    )
    assert result.conflicts == []
    root = stored(repo.store, result)
    snap = snapshot(repo.store, root)
    assert set(snap) == {ROOT, "pedestals", "pixel_gain", "geometry", "pixel_mask"}
    assert set(snap["pedestals"]["ranges"]) == {R0, R1}
    assert set(snap["pixel_gain"]["ranges"]) == {R0, R1}
    # every new tree comes before the trees that name it
    ids = [object_id(o) for o in result.new_objects]
    for i, obj in enumerate(result.new_objects):
        if isinstance(obj, CtypeTree):
            assert all(r.tree not in ids[i:] for r in obj.ranges.values())


def test_additions_to_the_same_range_merge(repo: Repository) -> None:
    store = repo.store
    before = versions(store, repo.root(), "pedestals", R0)
    default = repo.locate("pedestals", at_ns=T0).version
    result = merged(
        repo,
        lambda tx: tx.add("pedestals", arr(7), begin_ns=T0, make_default=False),
        lambda tx: tx.add("pedestals", arr(8), begin_ns=T0, make_default=False),
    )
    assert result.conflicts == []
    root = stored(store, result)
    rng = snapshot(store, root)["pedestals"]["ranges"][R0]
    assert len(rng["versions"]) == 3 and before < set(rng["versions"])
    assert rng["default"] == default


def test_default_changed_on_one_side_is_taken(repo: Repository) -> None:
    store = repo.store
    result = merged(
        repo,
        lambda tx: tx.add("pedestals", arr(7), begin_ns=T0),  # pins the new version
        lambda tx: tx.add("pedestals", arr(8), begin_ns=T0, make_default=False),
    )
    assert result.conflicts == []
    root = stored(store, result)
    rng = snapshot(store, root)["pedestals"]["ranges"][R0]
    pinned = rng["default"]
    assert rng["versions"][pinned][0] == object_id_of(arr(7))


def object_id_of(value: np.ndarray) -> ObjectId:
    return VersionEntry.describe(value, tsprod=0, author="", pars={}).obj


def test_removals_and_identical_changes(repo: Repository) -> None:
    store = repo.store
    ped = repo.locate("pedestals", at_ns=T0).version
    result = merged(
        repo,
        lambda tx: (tx.remove("pixel_gain"), tx.set_pars({"same": 1}, ctype="pedestals")),
        lambda tx: (tx.set_pars({"same": 1}, ctype="pedestals"), tx.add("pedestals", arr(3), begin_ns=T1)),
    )
    assert result.conflicts == []
    snap = snapshot(store, stored(store, result))
    assert "pixel_gain" not in snap  # removed on ours, unchanged on theirs
    assert snap["pedestals"]["pars"] == {"same": 1}
    assert set(snap["pedestals"]["ranges"][R0]["versions"]) == {ped}
    # each side removing another of the two versions: the emptied range and ctype are pruned
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=T0, make_default=False)
    other = next(v for v in versions(store, repo.root(), "pedestals", R0) if v != ped)
    result = merged(
        repo,
        lambda tx: tx.remove("pedestals", version=ped),
        lambda tx: (tx.remove("pedestals", version=other), tx.set_pars({"t": 1})),
    )
    assert result.conflicts == []
    assert set(result.root.ctypes) == {"pixel_gain"}
    assert dict(result.root.pars) == {"t": 1}


def test_pars_on_every_level_merge_per_key(repo: Repository) -> None:
    store = repo.store
    ped = repo.locate("pedestals", at_ns=T0).version

    def side(name: str) -> Callable[[Any], object]:
        def change(tx: Any) -> None:
            tx.set_pars({name: 1})
            tx.set_pars({name: 2}, ctype="pedestals")
            tx.set_pars({name: 3}, ctype="pedestals", range=R0)
            tx.set_pars({name: 4}, ctype="pedestals", version=ped)

        return change

    result = merged(repo, side("o"), side("t"))
    assert result.conflicts == []
    snap = snapshot(store, stored(store, result))
    assert snap[ROOT]["pars"] == {"o": 1, "t": 1}
    assert snap["pedestals"]["pars"] == {"o": 2, "t": 2}
    assert snap["pedestals"]["ranges"][R0]["pars"] == {"o": 3, "t": 3}
    assert snap["pedestals"]["ranges"][R0]["versions"][ped][1] == {"o": 4, "t": 4}


def test_links_merge_three_way(repo: Repository) -> None:
    result = merged(
        repo, lambda tx: tx.set_links(predecessor="epix-0"), lambda tx: tx.set_links(successor="epix-2")
    )
    assert result.conflicts == []
    assert (result.root.predecessor, result.root.successor) == ("epix-0", "epix-2")


# -- conflicts -------------------------------------------------------------------------------------


def with_entry(
    store: ObjectStore, root: RootTree, ctype: str, rk: str, vk: VersionKey, value: Any
) -> RootTree:
    """``root`` with version ``vk`` of a range replaced by another payload (same key): something only
    a bug or a hand-made object can do, and exactly what a merge must refuse to guess about."""
    ct = store.read_object(root.ctypes[ctype])
    assert isinstance(ct, CtypeTree)
    ref = ct.ranges[RangeKey(rk)]
    rt = store.read_object(ref.tree)
    assert isinstance(rt, RangeTree)
    entry = VersionEntry.describe(value, tsprod=rt.versions[vk].tsprod, author="someone", pars={})
    with store.writing():
        store.put_payload(value)
        rid = store.put_object(replace(rt, versions={**rt.versions, vk: entry}))
        cid = store.put_object(replace(ct, ranges={**ct.ranges, RangeKey(rk): replace(ref, tree=rid)}))
    return replace(root, ctypes={**root.ctypes, ctype: cid})


def test_same_version_different_payload_conflicts(repo: Repository) -> None:
    store = repo.store
    base = repo.root()
    ped = repo.locate("pedestals", at_ns=T0).version
    ours = with_entry(store, base, "pedestals", R0, ped, arr(10))
    theirs = with_entry(store, base, "pedestals", R0, ped, arr(11, "f8"))
    result = merge_trees(store, base, ours, theirs)
    assert [c.path for c in result.conflicts] == [("pedestals", R0, ped)]
    c = result.conflicts[0]
    assert c.resolved is None
    assert (c.base, c.ours, c.theirs) == tuple(object_id_of(x) for x in (arr(1), arr(10), arr(11, "f8")))
    assert "ours: <f4 2x3" in c.what and "theirs: <f8 2x3" in c.what
    # the same change on both sides is no conflict
    assert merge_trees(store, base, ours, ours).conflicts == []
    # with prefer, that version goes to the chosen side
    for side, value in (("ours", arr(10)), ("theirs", arr(11, "f8"))):
        res = merge_trees(store, base, ours, theirs, prefer=side)  # type: ignore[arg-type]
        assert [c.resolved for c in res.conflicts] == [side]
        snap = snapshot(store, stored(store, res))
        assert snap["pedestals"]["ranges"][R0]["versions"][ped][0] == object_id_of(value)


def test_default_pinned_differently_conflicts_and_prefer_resolves(repo: Repository) -> None:
    ours_change = lambda tx: tx.add("pedestals", arr(7), begin_ns=T0)  # noqa: E731
    theirs_change = lambda tx: tx.add("pedestals", arr(8), begin_ns=T0)  # noqa: E731
    result = merged(repo, ours_change, theirs_change)
    assert [c.path for c in result.conflicts] == [("pedestals", R0, "default")]
    a = head(repo)
    for side, value in (("ours", 7.0), ("theirs", 8.0)):
        move_head(repo, a)
        b = commit_at(repo, a, ours_change)
        c = commit_at(repo, a, theirs_change)
        move_head(repo, b)
        with pytest.raises(MergeConflict) as info:
            merge_commit(repo, c)
        assert f"pedestals/{R0}/default" in str(info.value)
        assert head(repo) == b  # nothing was changed
        res = merge_commit(repo, c, prefer=side)  # type: ignore[arg-type]
        assert [x.resolved for x in res.conflicts] == [side]
        assert len(repo.ranges("pedestals")[0][1].versions) == 3  # both additions kept
        assert first(repo, "pedestals", T0) == value


def test_par_set_differently_conflicts_on_every_level(repo: Repository) -> None:
    ped = repo.locate("pedestals", at_ns=T0).version

    def side(value: int) -> Callable[[Any], object]:
        def change(tx: Any) -> None:
            tx.set_pars({"k": value})
            tx.set_pars({"k": value}, ctype="pedestals")
            tx.set_pars({"k": value}, ctype="pedestals", range=R0)
            tx.set_pars({"k": value}, ctype="pedestals", version=ped)

        return change

    result = merged(repo, side(1), side(2))
    assert sorted(c.path for c in result.conflicts) == sorted(
        [
            (ROOT, "pars", "k"),
            ("pedestals", "pars", "k"),
            ("pedestals", R0, "pars", "k"),
            ("pedestals", R0, ped, "pars", "k"),
        ]
    )
    assert all((c.base, c.ours, c.theirs) == (None, 1, 2) for c in result.conflicts)
    resolved = merged(repo, side(1), side(2), prefer="theirs")
    assert dict(resolved.root.pars) == {"k": 2}
    # 1 and True are different stored values
    assert merged(repo, lambda tx: tx.set_pars({"k": 1}), lambda tx: tx.set_pars({"k": True})).conflicts


def test_par_removed_on_one_side_set_on_other_conflicts(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.set_pars({"k": 1})
    result = merged(repo, lambda tx: tx.set_pars({"k": None}), lambda tx: tx.set_pars({"k": 2}))
    assert [(c.path, c.base, c.ours, c.theirs) for c in result.conflicts] == [
        ((ROOT, "pars", "k"), 1, None, 2)
    ]
    assert dict(merged(repo, lambda tx: tx.set_pars({"k": None}), lambda tx: None).root.pars) == {}


def test_remove_vs_change_conflicts(repo: Repository) -> None:
    store = repo.store
    ped = repo.locate("pedestals", at_ns=T0).version
    # a version removed on ours, its parameters changed on theirs
    result = merged(
        repo,
        lambda tx: tx.remove("pedestals", version=ped),
        lambda tx: tx.set_pars({"k": 1}, ctype="pedestals", version=ped),
    )
    assert [c.path for c in result.conflicts] == [("pedestals", R0, ped)]
    assert "removed on ours" in result.conflicts[0].what
    theirs_wins = merged(
        repo,
        lambda tx: tx.remove("pedestals", version=ped),
        lambda tx: tx.set_pars({"k": 1}, ctype="pedestals", version=ped),
        prefer="theirs",
    )
    snap = snapshot(store, stored(store, theirs_wins))
    assert snap["pedestals"]["ranges"][R0]["versions"][ped][1] == {"k": 1}
    # a ctype removed on theirs, added to on ours: merges like a deleted directory in git, so
    # the addition survives and what theirs removed (and ours left alone) is gone
    gain = repo.locate("pixel_gain", at_ns=T0).version
    result = merged(
        repo, lambda tx: tx.add("pixel_gain", arr(9), begin_ns=T1), lambda tx: tx.remove("pixel_gain")
    )
    assert result.conflicts == []
    snap = snapshot(store, stored(store, result))
    assert set(snap["pixel_gain"]["ranges"]) == {R1}
    # ... but a version in it that ours changed is a conflict, named exactly
    result = merged(
        repo,
        lambda tx: tx.set_pars({"k": 1}, ctype="pixel_gain", version=gain),
        lambda tx: tx.remove("pixel_gain"),
    )
    assert [(c.path, c.theirs) for c in result.conflicts] == [(("pixel_gain", R0, gain), None)]
    assert "removed on theirs" in result.conflicts[0].what
    ours_wins = merged(
        repo,
        lambda tx: tx.set_pars({"k": 1}, ctype="pixel_gain", version=gain),
        lambda tx: tx.remove("pixel_gain"),
        prefer="ours",
    )
    assert snapshot(store, stored(store, ours_wins))["pixel_gain"]["ranges"][R0]["versions"][gain][1] == {
        "k": 1
    }
    # a range removed on ours, added to on theirs: the addition survives alone
    result = merged(
        repo,
        lambda tx: tx.remove("pixel_gain", range=R0),
        lambda tx: tx.add("pixel_gain", arr(9), begin_ns=T0, make_default=False),
    )
    assert result.conflicts == []
    rng = snapshot(store, stored(store, result))["pixel_gain"]["ranges"][R0]
    assert set(rng["versions"]) != {gain} and len(rng["versions"]) == 1
    assert rng["default"] is None
    # a range removed on ours whose default theirs re-pinned to a new version: a default conflict
    result = merged(
        repo,
        lambda tx: tx.remove("pixel_gain", range=R0),
        lambda tx: tx.add("pixel_gain", arr(9), begin_ns=T0),
    )
    assert [c.path for c in result.conflicts] == [("pixel_gain", R0, "default")]
    assert (result.conflicts[0].base, result.conflicts[0].ours) == (gain, None)


def test_default_pinning_a_version_the_other_side_removed(repo: Repository) -> None:
    store = repo.store
    first = repo.locate("pedestals", at_ns=T0).version
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=T0, make_default=False)
    second = next(v for v in versions(store, repo.root(), "pedestals", R0) if v != first)

    def ours(tx: Any) -> None:
        tx.remove("pedestals", version=second)

    def theirs(tx: Any) -> None:
        tx.set_default("pedestals", second)

    result = merged(repo, ours, theirs)
    assert [c.path for c in result.conflicts] == [("pedestals", R0, "default")]
    assert "theirs pins" in result.conflicts[0].what
    keep = snapshot(store, stored(store, merged(repo, ours, theirs, prefer="theirs")))
    assert keep["pedestals"]["ranges"][R0]["default"] == second
    assert second in keep["pedestals"]["ranges"][R0]["versions"]
    drop = snapshot(store, stored(store, merged(repo, ours, theirs, prefer="ours")))
    assert drop["pedestals"]["ranges"][R0]["default"] == first
    assert set(drop["pedestals"]["ranges"][R0]["versions"]) == {first}


def test_links_set_differently_conflict(repo: Repository) -> None:
    result = merged(
        repo, lambda tx: tx.set_links(successor="epix-2"), lambda tx: tx.set_links(successor="epix-3")
    )
    assert [(c.path, c.ours, c.theirs) for c in result.conflicts] == [
        ((ROOT, "links", "successor"), "epix-2", "epix-3")
    ]


def test_different_detectors_conflict() -> None:
    store = MemoryStore()
    one, two = RootTree("epix", "1", 5), RootTree("epix", "2", 5)
    result = merge_trees(store, None, one, two)
    assert [c.path for c in result.conflicts] == [(ROOT, "detname")]


def test_describe_conflicts_mentions_every_path(repo: Repository) -> None:
    ped = repo.locate("pedestals", at_ns=T0).version

    def side(value: int) -> Callable[[Any], object]:
        def change(tx: Any) -> None:
            tx.add("pedestals", arr(value), begin_ns=T0)
            tx.set_pars({"k": value}, ctype="pedestals", version=ped)
            tx.set_links(predecessor=f"epix-{value}")

        return change

    result = merged(repo, side(5), side(6))
    assert len(result.conflicts) == 3
    text = describe_conflicts("epix-1", result.conflicts)
    assert text.startswith("epix-1: 3 conflicts")
    for c in result.conflicts:
        assert "/".join(c.path) in text
    assert "epix-5" in text and "epix-6" in text
    assert "--ours" in text and "--theirs" in text and "pull again" in text
    resolved = merged(repo, side(5), side(6), prefer="ours").conflicts
    assert "resolved toward ours" in describe_conflicts("epix-1", resolved)
    assert describe_conflicts("epix-1", []) == "epix-1: no conflicts"
    one = describe_conflicts("epix-1", [Conflict((ROOT, "pars", "k"), "x", None, 1, "a")])
    assert "1 conflict;" in one and "(absent)" in one


def _pinned(store: ObjectStore, cid: ObjectId, rk: str) -> VersionKey:
    ct = store.read_object(root_of(store, cid).ctypes["pedestals"])
    assert isinstance(ct, CtypeTree)
    tree = store.read_object(ct.ranges[RangeKey(rk)].tree)
    assert isinstance(tree, RangeTree) and tree.default is not None
    return tree.default


def test_taking_the_remotes_pinned_version_settles_a_default_conflict(repo: Repository) -> None:
    """The way out the conflict report names: take theirs' version (fetched, under
    ``remotes/origin``) into HEAD and pin it; the merge then has nothing to decide there."""
    store = repo.store
    _, b, c = three(
        repo,
        lambda tx: tx.add("pedestals", arr(5), begin_ns=T0),
        lambda tx: (tx.add("pedestals", arr(6), begin_ns=T0), tx.add("pedestals", arr(7), begin_ns=T1)),
    )
    ours_key, theirs_key = _pinned(store, b, R0), _pinned(store, c, R0)
    conflicts = merged(
        repo,
        lambda tx: tx.add("pedestals", arr(5), begin_ns=T0),
        lambda tx: tx.add("pedestals", arr(6), begin_ns=T0),
    )
    text = describe_conflicts("epix-1", conflicts.conflicts, remote="central")
    assert "dcsync default epix-1 pedestals central:" in text and f"--range {R0}" in text
    (doc,) = conflicts_json(conflicts.conflicts)
    assert doc["path"] == ["pedestals", R0, "default"] and set(doc) == {
        "path",
        "what",
        "base",
        "ours",
        "theirs",
    }
    move_head(repo, b)
    with store.writing():
        store.set_ref("remotes/origin", None, c, LogRecord("remotes/origin", None, c, "fetch", "test"))

    with repo.transaction("keep theirs, unpinned") as tx:  # make_default=False: lookups unchanged
        tx.take_version("pedestals", theirs_key[:5], ref="remotes/origin", make_default=False)
    assert first(repo, "pedestals", T0) == 5.0 and _pinned(store, head(repo), R0) == ours_key
    with pytest.raises(MergeConflict):
        merge_commit(repo, c)

    with repo.transaction("pin theirs") as tx:
        loc = tx.take_version("pedestals", theirs_key[:5], ref="remotes/origin")
    assert (loc.version, loc.tree.default, loc.range) == (theirs_key, theirs_key, R0)
    assert loc.entry == repo.find_version("pedestals", theirs_key).entry  # the same entry, same key
    result = merge_commit(repo, c)
    assert result.conflicts == []
    assert first(repo, "pedestals", T0) == 6.0 and first(repo, "pedestals", T1) == 7.0
    assert versions(store, repo.root(), "pedestals", R0) >= {ours_key, theirs_key}

    with pytest.raises(VersionNotFound, match=r"remotes/origin: .*'ffff'"):
        repo.transaction().take_version("pedestals", "ffff", ref="remotes/origin")
    with pytest.raises(NotFound, match="remotes/upstream"):
        repo.transaction().take_version("pedestals", theirs_key, ref="remotes/upstream")


# -- properties ------------------------------------------------------------------------------------

PROP_VERSIONS = [VersionKey(f"{i:012x}") for i in range(3)]
PROP_RANGES = [(0, None), (0, 10 * NS), (5 * NS, None)]
PROP_CTYPES = ["pedestals", "pixel_gain"]
PROP_ENTRIES = [
    VersionEntry.describe(np.full(2, i, np.float32), tsprod=i, author="t", pars={}) for i in range(3)
]
pars_st = st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from([1, 2, "x"]), max_size=2)
range_st = st.tuples(
    st.integers(0, 3),  # default: an index into the range's versions, or unpinned
    pars_st,
    st.dictionaries(st.sampled_from(PROP_VERSIONS), st.tuples(st.integers(0, 2), pars_st), min_size=1),
)
ctype_st = st.tuples(pars_st, st.dictionaries(st.sampled_from(range(len(PROP_RANGES))), range_st, min_size=1))
tree_st = st.tuples(
    pars_st, st.sampled_from(["", "epix-0"]), st.dictionaries(st.sampled_from(PROP_CTYPES), ctype_st)
)


def build(store: ObjectStore, desc: Any) -> RootTree:
    root_pars, pred, ctypes = desc
    out: dict[str, ObjectId] = {}
    with store.writing():
        for name, (ct_pars, ranges) in ctypes.items():
            refs: dict[RangeKey, RangeRef] = {}
            for ri, (default, r_pars, vers) in ranges.items():
                begin, end = PROP_RANGES[ri]
                entries = {vk: replace(PROP_ENTRIES[p], pars=vp) for vk, (p, vp) in vers.items()}
                keys = sorted(entries)
                pinned = keys[default] if default < len(keys) else None
                rid = store.put_object(RangeTree(begin, end, pinned, r_pars, entries))
                refs[range_key(begin, end)] = RangeRef(begin, end, rid)
            out[name] = store.put_object(CtypeTree(ct_pars, refs))
    return RootTree("epix", "1", 0, pred, "", root_pars, out)


def rid(root: RootTree) -> ObjectId:
    return object_id(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=tree_st, ours=tree_st)
def test_identities(base: Any, ours: Any) -> None:
    store = MemoryStore()
    b, o = build(store, base), build(store, ours)
    for x in (b, o):
        assert rid(merge_trees(store, x, x, x).root) == rid(x)
        assert rid(merge_trees(store, None, x, x).root) == rid(x)
    same = merge_trees(store, b, o, b)
    assert rid(same.root) == rid(o) and same.conflicts == [] and same.new_objects == []
    assert rid(merge_trees(store, b, b, o).root) == rid(o)
    assert rid(merge_trees(store, b, o, o).root) == rid(o)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=tree_st, ours=tree_st, pars=pars_st)
def test_a_root_only_change_merges_into_any_tree(base: Any, ours: Any, pars: dict[str, Any]) -> None:
    """Theirs changed only the root's parameters: the result is ours with those parameters, which
    walks every level of ours against the base without short-circuiting at the root."""
    store = MemoryStore()
    b, o = build(store, base), build(store, ours)
    t = replace(b, pars=pars)
    result = merge_trees(store, b, o, t)
    if dict(o.pars) == dict(b.pars) or dict(o.pars) == pars:
        assert result.conflicts == []
        assert rid(result.root) == rid(replace(o, pars=pars))
        assert result.new_objects == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=tree_st, ours=tree_st, theirs=tree_st, with_base=st.booleans())
def test_merge_is_symmetric(base: Any, ours: Any, theirs: Any, with_base: bool) -> None:
    store = MemoryStore()
    b = build(store, base) if with_base else None
    o, t = build(store, ours), build(store, theirs)
    ot, to = merge_trees(store, b, o, t), merge_trees(store, b, t, o)
    assert sorted(c.path for c in ot.conflicts) == sorted(c.path for c in to.conflicts)
    if not ot.conflicts:
        assert rid(stored(store, ot)) == rid(stored(store, to))
        snapshot(store, ot.root)  # no empty ranges, every id resolvable
    ours_wins = merge_trees(store, b, o, t, prefer="ours")
    theirs_wins = merge_trees(store, b, t, o, prefer="theirs")
    assert rid(stored(store, ours_wins)) == rid(stored(store, theirs_wins))
    snapshot(store, ours_wins.root)
    # resolving again with the result as one side changes nothing more
    again = merge_trees(store, b, ours_wins.root, t, prefer="ours")
    assert rid(again.root) == rid(ours_wins.root)
