"""Diffs of detector trees (within one store, across stores, against an absent detector) and the
numbers :func:`value_stats` reports for known payloads."""

from __future__ import annotations

import shutil
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey, range_key
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree, Tree, VersionEntry
from dcsync.repo import diff as diff_module
from dcsync.repo.diff import KINDS, Change, diff_roots, summarize, value_stats
from dcsync.repo.repository import Repository
from dcsync.store.memory import MemoryStore

NS = 1_000_000_000
T0 = 1_795_248_000 * NS
T1 = T0 + 3600 * NS
R0 = range_key(T0, None)
R1 = range_key(T1, None)


def arr(value: float, dtype: str = "f4") -> np.ndarray:
    return np.full((2, 3), value, dtype=dtype)


def kinds(changes: list[Change]) -> list[tuple[str | None, str | None, str | None, str]]:
    return [(c.ctype, c.range, c.version, c.kind) for c in changes]


@pytest.fixture
def repo() -> Repository:
    r = Repository.create(None, "epix-1")
    with r.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=T0)
        tx.add("pixel_gain", arr(2), begin_ns=T0)
        tx.add("geometry", "line 1\nline 2\n", begin_ns=T0)
    return r


def test_identical_trees_have_no_changes(repo: Repository) -> None:
    root = repo.root()
    assert diff_roots(repo.store, root, repo.store, root) == []
    assert diff_roots(repo.store, None, repo.store, None) == []
    assert summarize([]) == dict.fromkeys(KINDS, 0)


def test_added_removed_and_default_changes(repo: Repository) -> None:
    store = repo.store
    old = repo.root()
    first = repo.locate("pedestals", at_ns=T0).version
    old_gain = repo.locate("pixel_gain", at_ns=T0)
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=T0)  # a new version, pinned
        tx.add("pedestals", arr(4), begin_ns=T1)  # a new range
        tx.remove("pixel_gain")
    new = repo.root()
    second = repo.locate("pedestals", at_ns=T0).version
    third = repo.locate("pedestals", at_ns=T1).version
    changes = diff_roots(store, old, store, new)
    got = kinds(changes)
    assert ("pedestals", R0, None, "default") in got
    assert ("pedestals", R0, second, "added") in got
    assert ("pedestals", R1, None, "range") in got  # a new range is itself a change
    assert ("pedestals", R1, None, "default") in got
    assert ("pedestals", R1, third, "added") in got
    gain = old_gain.version
    assert ("pixel_gain", R0, gain, "removed") in got
    assert ("pixel_gain", R0, None, "default") in got  # its pinned default went with it
    assert ("pixel_gain", R0, None, "range") in got and ("pixel_gain", None, None, "ctype") in got
    assert "geometry" not in {c.ctype for c in changes}  # unchanged ctypes are skipped
    default = next(c for c in changes if c.kind == "default" and c.ctype == "pedestals" and c.range == R0)
    assert (default.old, default.new) == (first, second)
    added = next(c for c in changes if c.version == second)
    assert isinstance(added.new, VersionEntry) and added.old is None and added.new.dtype == "<f4"
    assert all(c.detname == "epix-1" for c in changes)
    # ordered: ctype, then ranges by begin, then versions by production time
    ped = [c for c in changes if c.ctype == "pedestals"]
    assert [c.range for c in ped] == [R0, R0, R1, R1, R1]
    # the reverse diff swaps added and removed
    back = diff_roots(store, new, store, old)
    assert summarize(back)["added"] == summarize(changes)["removed"] == 1
    assert summarize(back)["removed"] == summarize(changes)["added"] == 2
    stat = summarize(changes)
    assert list(stat) == list(KINDS)
    assert stat == {
        "added": 2, "removed": 1, "changed": 0, "default": 3, "pars": 0, "links": 0,
        "range": 2, "ctype": 1, "detector": 0,
    }  # fmt: skip


def test_pars_and_links(repo: Repository) -> None:
    store = repo.store
    old = repo.root()
    version = repo.locate("pedestals", at_ns=T0).version
    with repo.transaction() as tx:
        tx.set_pars({"run": 42})
        tx.set_pars({"gain_mode": "high"}, ctype="pedestals")
        tx.set_pars({"quality": 0.5}, ctype="pedestals", range=R0)
        tx.set_pars({"dark_run": 7}, ctype="pedestals", version=version)
        tx.set_links(predecessor="epix-0")
    changes = diff_roots(store, old, store, repo.root())
    assert kinds(changes) == [
        (None, None, None, "links"),
        (None, None, None, "pars"),
        ("pedestals", None, None, "pars"),
        ("pedestals", R0, None, "pars"),
        ("pedestals", R0, version, "pars"),
    ]
    assert changes[0].old == {"predecessor": "", "successor": ""}
    assert changes[0].new == {"predecessor": "epix-0", "successor": ""}
    assert (changes[1].old, changes[1].new) == ({}, {"run": 42})
    assert changes[4].new == {"dark_run": 7}
    # a parameter changing type only (1 -> True) is a change: they are different stored values
    with repo.transaction() as tx:
        tx.set_pars({"run": 1})
    mid = repo.root()
    with repo.transaction() as tx:
        tx.set_pars({"run": True})
    assert kinds(diff_roots(store, mid, store, repo.root())) == [(None, None, None, "pars")]


def test_changed_version_same_key_other_payload(repo: Repository) -> None:
    """Only hand-made trees (or a bad merge) do this; the diff must still say so."""
    store = repo.store
    old = repo.root()
    located = repo.locate("pedestals", at_ns=T0)
    entry = VersionEntry.describe(arr(9, "f8"), tsprod=located.entry.tsprod, author="x", pars={})
    ct = repo.ctype_tree("pedestals")
    ref = ct.ranges[located.range]
    with store.writing():
        store.put_payload(arr(9, "f8"))
        rid = store.put_object(replace(located.tree, versions={located.version: entry}))
        cid = store.put_object(replace(ct, ranges={located.range: replace(ref, tree=rid)}))
    new = replace(old, ctypes={**old.ctypes, "pedestals": cid})
    changes = diff_roots(store, old, store, new)
    assert kinds(changes) == [("pedestals", R0, located.version, "changed")]
    assert changes[0].old == located.entry and changes[0].new == entry


def test_absent_detector(repo: Repository) -> None:
    store = repo.store
    with repo.transaction() as tx:
        tx.set_pars({"k": 1})
        tx.set_pars({"c": 2}, ctype="pixel_gain")
        tx.set_links(successor="epix-2")
    root = repo.root()
    added = diff_roots(MemoryStore(), None, store, root)
    stat = summarize(added)
    assert stat["added"] == 3 and stat["removed"] == 0
    assert stat["default"] == 3 and stat["pars"] == 2 and stat["links"] == 1
    assert stat["detector"] == 1 and stat["ctype"] == 3 and stat["range"] == 3
    assert next(c for c in added if c.kind == "links").old is None
    removed = diff_roots(store, root, MemoryStore(), None)
    assert summarize(removed)["removed"] == 3 and summarize(removed)["added"] == 0
    assert {c.detname for c in added + removed} == {"epix-1"}
    # an absent detector against one with no links reports no links change (only its arrival)
    bare = Repository.create(None, "epix-9")
    assert kinds(diff_roots(bare.store, None, bare.store, bare.root())) == [(None, None, None, "detector")]


def test_ctype_filter(repo: Repository) -> None:
    store = repo.store
    old = repo.root()
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=T1)
        tx.add("pixel_gain", arr(3), begin_ns=T1)
        tx.set_pars({"k": 1})
    changes = diff_roots(store, old, store, repo.root(), ctypes={"pixel_gain"})
    assert {c.ctype for c in changes} == {"pixel_gain"}  # and no detector-level changes
    assert diff_roots(store, old, store, repo.root(), ctypes={"geometry", "missing"}) == []
    assert diff_roots(store, None, store, repo.root(), ctypes={"pedestals"})[-1].ctype == "pedestals"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[ObjectId] = []

    def read_object(self, oid: ObjectId, *, fresh: bool = False) -> Tree | Commit:
        self.reads.append(oid)
        return super().read_object(oid, fresh=fresh)


def test_across_stores_short_circuits_on_equal_ids(tmp_path: Path) -> None:
    """Two copies of one detector file: shared subtrees are never opened, in either store."""
    path_a, path_b = tmp_path / "a.h5", tmp_path / "b.h5"
    with Repository.create(path_a, "epix-1") as repo, repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=T0)
        tx.add("pixel_gain", arr(2), begin_ns=T0)
    shutil.copy(path_a, path_b)
    with Repository.open(path_b) as rb, rb.transaction() as tx:
        tx.add("pedestals", arr(5), begin_ns=T1)
    with Repository.open(path_a) as ra, Repository.open(path_b) as rb:
        root_a, root_b = ra.root(), rb.root()
        assert root_a.ctypes["pixel_gain"] == root_b.ctypes["pixel_gain"]
        changes = diff_roots(ra.store, root_a, rb.store, root_b)
        assert kinds(changes) == [
            ("pedestals", R1, None, "range"),
            ("pedestals", R1, None, "default"),
            ("pedestals", R1, rb.locate("pedestals", at_ns=T1).version, "added"),
        ]
    # the same trees rebuilt in counting stores: only the changed path is read
    sa, sb = CountingStore(), CountingStore()
    for path, dst in ((path_a, sa), (path_b, sb)):
        with Repository.open(path) as r, dst.writing():
            for oid in r.store.object_ids():
                if r.store.kind_of(oid) == "tree":
                    dst.put_object(r.store.read_object(oid))
    ped_a = sa.read_object(root_a.ctypes["pedestals"])
    assert isinstance(ped_a, CtypeTree)
    sa.reads.clear()
    sb.reads.clear()
    assert kinds(diff_roots(sa, root_a, sb, root_b)) == kinds(changes)
    reads = sa.reads + sb.reads
    assert root_a.ctypes["pixel_gain"] not in reads  # the shared ctype is never opened
    assert ped_a.ranges[RangeKey(R0)].tree not in reads  # nor the shared range
    assert len(reads) == 3  # pedestals on each side, and the new range


def test_range_ordering_uses_times_not_key_text() -> None:
    store = MemoryStore()
    entry = VersionEntry.describe(arr(1), tsprod=1, author="t", pars={})
    ranges = {}
    with store.writing():
        for begin in (9 * NS, 10 * NS, 100 * NS):
            tree = RangeTree(begin, None, None, {}, {VersionKey(f"{begin:012x}"[-12:]): entry})
            ranges[range_key(begin, None)] = RangeRef(begin, None, store.put_object(tree))
        ct = store.put_object(CtypeTree({}, ranges))
    root = RootTree("epix", "1", 0, ctypes={"pedestals": ct})
    changes = [c for c in diff_roots(store, None, store, root) if c.kind == "added"]
    assert [c.range for c in changes] == ["9-end", "10-end", "100-end"]


# -- value_stats -----------------------------------------------------------------------------------


def test_value_stats_known_arrays() -> None:
    old = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    new = old.astype(np.float64)
    new[0, 0] = 3.0  # +2
    new[1, 2] = 5.5  # -0.5
    stats = value_stats(old, new)
    assert stats == {
        "dtype_old": "<f4",
        "dtype_new": "<f8",
        "shape_old": (2, 3),
        "shape_new": (2, 3),
        "comparable": True,
        "max_abs_diff": 2.0,
        "mean_diff": pytest.approx(1.5 / 6),
        "changed_elements": 2,
        "changed_lines": None,
        "nonfinite_old": 0,
        "nonfinite_new": 0,
    }
    same = value_stats(old, old.astype(np.float64))  # a dtype change alone changes no value
    assert same["changed_elements"] == 0 and same["max_abs_diff"] == 0.0 and same["mean_diff"] == 0.0
    assert (same["dtype_old"], same["dtype_new"]) == ("<f4", "<f8")


def test_value_stats_shape_change_is_not_comparable() -> None:
    stats = value_stats(np.zeros((2, 3)), np.zeros((3, 2)))
    assert stats["comparable"] is False
    assert (stats["shape_old"], stats["shape_new"]) == ((2, 3), (3, 2))
    assert stats["max_abs_diff"] is None and stats["mean_diff"] is None and stats["changed_elements"] is None
    mixed = value_stats(np.zeros(3), "text")
    assert mixed["comparable"] is False and mixed["dtype_new"] == "text"


def test_value_stats_integers_bools_nans_and_scalars() -> None:
    ints = value_stats(np.array([0, 10, 250], np.uint8), np.array([0, 5, 255], np.int16))
    assert ints["max_abs_diff"] == 5.0 and ints["mean_diff"] == 0.0 and ints["changed_elements"] == 2
    # int64 values float64 cannot tell apart are still counted as changed
    big = value_stats(np.array([2**62], np.int64), np.array([2**62 + 1], np.int64))
    assert big["changed_elements"] == 1
    masks = value_stats(np.array([True, False, True]), np.array([True, True, False]))
    assert masks["changed_elements"] == 2 and masks["max_abs_diff"] == 1.0 and masks["mean_diff"] == 0.0
    nan = np.nan
    nans = value_stats(np.array([nan, 1.0, 2.0, nan]), np.array([nan, 1.0, nan, 4.0]))
    assert nans["changed_elements"] == 2  # NaN == NaN here; NaN -> value and value -> NaN change
    # only the 1.0 -> 1.0 pair has a defined difference
    assert nans["max_abs_diff"] == 0.0 and nans["mean_diff"] == 0.0
    all_nan = value_stats(np.array([nan]), np.array([1.0]))
    assert all_nan["max_abs_diff"] is None and all_nan["mean_diff"] is None
    scalar = value_stats(np.array(3.0), np.array(5, np.int32))
    assert scalar["shape_old"] == () and scalar["max_abs_diff"] == 2.0 and scalar["changed_elements"] == 1
    empty = value_stats(np.zeros((0, 4)), np.zeros((0, 4)))
    assert empty["comparable"] and empty["changed_elements"] == 0 and empty["max_abs_diff"] is None


def test_value_stats_text() -> None:
    old = "a\nb\nc\n"
    stats = value_stats(old, "a\nB\nc\nd\n")
    assert stats["dtype_old"] == stats["dtype_new"] == "text"
    assert (stats["shape_old"], stats["shape_new"]) == ((3,), (4,))
    assert stats["comparable"] and stats["changed_lines"] == 2  # one replaced, one appended
    assert stats["max_abs_diff"] is None and stats["mean_diff"] is None and stats["changed_elements"] is None
    assert value_stats(old, old)["changed_lines"] == 0


def test_value_stats_chunks_agree_with_whole_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    old = rng.normal(size=(37, 11)).astype(np.float32)
    new = old.astype(np.float64)
    new[::3] += rng.normal(size=new[::3].shape)
    new[5, 5] = np.nan
    whole = value_stats(old, new)
    monkeypatch.setattr(diff_module, "CHUNK_ELEMENTS", 10)
    chunked = value_stats(old, new)
    assert chunked["changed_elements"] == whole["changed_elements"]
    assert chunked["max_abs_diff"] == whole["max_abs_diff"]
    assert chunked["mean_diff"] == pytest.approx(whole["mean_diff"])
    d = new - old.astype(np.float64)
    d = d[~np.isnan(d)]
    assert whole["max_abs_diff"] == pytest.approx(np.abs(d).max())
    assert whole["mean_diff"] == pytest.approx(d.mean())
    assert whole["changed_elements"] == int(np.count_nonzero(new != old))  # NaN vs value counts
    assert chunked["nonfinite_new"] == whole["nonfinite_new"] == 1


def test_value_stats_counts_nan_and_inf_on_each_side() -> None:
    inf, nan = np.inf, np.nan
    stats = value_stats(np.array([1.0, nan, 3.0], np.float32), np.array([inf, nan, -inf]))
    assert (stats["nonfinite_old"], stats["nonfinite_new"]) == (1, 3)
    reshaped = value_stats(np.array([nan, 1.0]), np.array([[nan], [inf]]))  # not comparable
    assert not reshaped["comparable"] and (reshaped["nonfinite_old"], reshaped["nonfinite_new"]) == (1, 2)
    ints = value_stats(np.arange(4), np.array([1.0, 2.0, nan, 4.0]))
    assert (ints["nonfinite_old"], ints["nonfinite_new"]) == (0, 1)
    text = value_stats("a\n", np.array([nan]))
    assert (text["nonfinite_old"], text["nonfinite_new"]) == (None, 1)


def test_value_stats_memory_stays_bounded() -> None:
    """Two 32 MB float32 payloads: the comparison itself needs far less than one more payload
    (a whole-array float64 diff would need 64 MB per temporary)."""
    n = 8 * 1024 * 1024
    old = np.ones(n, np.float32)
    new = np.ones(n, np.float32)
    new[::1000] = 2.0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        stats = value_stats(old, new)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats["changed_elements"] == len(range(0, n, 1000))
    assert stats["max_abs_diff"] == 1.0
    assert peak < old.nbytes // 2, f"peak {peak / 2**20:.1f} MiB"
