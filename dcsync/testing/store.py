"""Contract tests every :class:`~dcsync.store.base.ObjectStore` must pass, shipped in the package so
each implementation (and any third-party one) runs the same suite by subclassing (zarr's
``testing/store.py`` idea).

Use::

    class TestMyStore(StoreContract):
        def open_store(self, tmp_path: Path) -> ObjectStore: ...
        def reopen_store(self, store: ObjectStore) -> ObjectStore: ...   # optional

``reopen_store`` returns a fresh handle on the same data (for a file: a new store on the path), so
the suite checks what was *persisted*, not what one handle remembers. Needs pytest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcsync.errors import CorruptObject, DcsyncError, InvalidName, ObjectNotFound, RefConflict
from dcsync.model.hashing import ObjectId, canonical_array, hash_array, hash_text
from dcsync.model.names import VersionKey, range_key
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree, VersionEntry, object_id
from dcsync.store.base import ObjectStore
from dcsync.store.refs import HEAD, LogRecord

__all__ = ["NUMERIC_DTYPES", "SHAPES", "TEXTS", "StoreContract", "sample_array"]

NUMERIC_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
SHAPES: tuple[tuple[int, ...], ...] = ((), (0,), (3, 0), (7,), (4, 5), (2, 3, 4))
TEXTS = (
    "",
    "plain ascii",
    "non-ASCII: é ü ß 漢字 κ 🙂",
    "lines\n  with trailing spaces  \n\n",
    " leading and trailing space ",
    "x" * 100_000,
)


def sample_array(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic values for a dtype, with its extremes (and NaN/inf for floats) included."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        flat = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        flat[: min(n, 2)] = [info.min, info.max][: min(n, 2)]
    elif dt.kind == "f":
        flat = (rng.standard_normal(n) * 1000).astype(dt)
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).max], dtype=dt)
        flat[: min(n, len(specials))] = specials[: min(n, len(specials))]
    else:
        flat = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
        if n:
            flat[0] = complex(np.nan, np.inf)
    return flat.reshape(shape)


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _record(ref: str, old: ObjectId | None, new: ObjectId | None, message: str = "") -> LogRecord:
    return LogRecord(ref, old, new, "test", message, user="tester", host="testhost", time=1)


def _commit(tree: ObjectId, parents: tuple[ObjectId, ...] = (), message: str = "m") -> Commit:
    return Commit(tree, parents, "tester", "testhost", 1_700_000_000 * 10**9, message)


class StoreContract:
    """The behaviour every store shares; subclass and implement :meth:`open_store`."""

    def open_store(self, tmp_path: Path) -> ObjectStore:
        raise NotImplementedError

    def reopen_store(self, store: ObjectStore) -> ObjectStore:
        """A fresh handle on the same data; a memory store has only the one."""
        return store

    def close_store(self, store: ObjectStore) -> None:
        close = getattr(store, "close", None)
        if callable(close):
            close()

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[ObjectStore]:
        s = self.open_store(tmp_path)
        try:
            yield s
        finally:
            self.close_store(s)

    @contextlib.contextmanager
    def reopened(self, store: ObjectStore) -> Iterator[ObjectStore]:
        fresh = self.reopen_store(store)
        try:
            yield fresh
        finally:
            if fresh is not store:
                self.close_store(fresh)

    # -- an empty store ---------------------------------------------------------------------------
    def test_new_store_is_empty(self, store: ObjectStore) -> None:
        assert store.refs() == {}
        assert store.head() is None
        assert store.log() == []
        assert list(store.object_ids()) == []
        assert not store.has(ObjectId("0" * 32))
        assert not store.has(ObjectId("not an id"))
        assert store.hash_algorithm == "xxh3-128"

    def test_missing_objects_raise_object_not_found(self, store: ObjectStore) -> None:
        missing = ObjectId("ab" * 16)
        for read in (store.read_payload, store.read_object, store.kind_of):
            with pytest.raises(ObjectNotFound):
                read(missing)
        with pytest.raises(KeyError):  # the builtin it subclasses
            store.read_payload(missing)

    # -- payloads ---------------------------------------------------------------------------------
    @pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "0d")
    @pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
    def test_array_round_trip(self, store: ObjectStore, dtype: str, shape: tuple[int, ...]) -> None:
        value = sample_array(dtype, shape)
        with store.writing():
            oid = store.put_payload(value)
        assert oid == hash_array(canonical_array(value))
        with self.reopened(store) as fresh:
            assert fresh.has(oid)
            assert fresh.kind_of(oid) == "array"
            back = fresh.read_payload(oid)
            assert isinstance(back, np.ndarray)
            assert _same_array(back, canonical_array(value))
            assert oid in set(fresh.object_ids())

    @pytest.mark.parametrize("dtype", ["int16", "uint32", "int64", "float32", "float64", "complex128"])
    def test_big_endian_input_is_stored_little_endian(self, store: ObjectStore, dtype: str) -> None:
        little = sample_array(dtype, (3, 4), seed=1)
        big = little.astype(np.dtype(dtype).newbyteorder(">"))
        assert big.dtype.byteorder == ">"
        with store.writing():
            oid_big = store.put_payload(big)
            oid_little = store.put_payload(little)
        assert oid_big == oid_little  # the id is over canonical content, not over input layout
        with self.reopened(store) as fresh:
            back = fresh.read_payload(oid_big)
            assert isinstance(back, np.ndarray)
            assert back.dtype.byteorder in "<=|"
            assert _same_array(back, little)

    def test_non_contiguous_input(self, store: ObjectStore) -> None:
        base = np.arange(60, dtype=np.float32).reshape(6, 10)
        views = [base[::2, 1::3], base.T, np.asfortranarray(base)]
        with store.writing():
            ids = [store.put_payload(v) for v in views]
        with self.reopened(store) as fresh:
            for oid, v in zip(ids, views, strict=True):
                back = fresh.read_payload(oid)
                assert isinstance(back, np.ndarray)
                np.testing.assert_array_equal(back, v)
                assert back.flags.c_contiguous
        assert ids[2] == hash_array(base)  # Fortran order holds the same values as base

    @pytest.mark.parametrize("text", TEXTS, ids=["empty", "ascii", "unicode", "lines", "spaces", "long"])
    def test_text_round_trip(self, store: ObjectStore, text: str) -> None:
        with store.writing():
            oid = store.put_payload(text)
        assert oid == hash_text(text)
        with self.reopened(store) as fresh:
            assert fresh.kind_of(oid) == "text"
            assert fresh.read_payload(oid) == text

    def test_text_and_array_of_same_bytes_are_different_objects(self, store: ObjectStore) -> None:
        with store.writing():
            t = store.put_payload("ab")
            a = store.put_payload(np.frombuffer(b"ab", dtype=np.uint8))
        assert t != a
        assert store.kind_of(t) == "text" and store.kind_of(a) == "array"

    def test_text_with_nul_is_refused(self, store: ObjectStore) -> None:
        with pytest.raises(DcsyncError), store.writing():
            store.put_payload("a\0b")
        assert list(store.object_ids()) == []

    def test_identical_payloads_are_stored_once(self, store: ObjectStore) -> None:
        a = np.linspace(0, 1, 1000)
        with store.writing():
            first = store.put_payload(a)
            again = store.put_payload(a.copy())
            text1 = store.put_payload("geometry")
            text2 = store.put_payload("geo" + "metry")
        with store.writing():
            later = store.put_payload(a.astype(">f8"))
            known = store.put_payload(a, known_id=first)
        assert first == again == later == known
        assert text1 == text2
        with self.reopened(store) as fresh:
            ids = list(fresh.object_ids())
            assert sorted(ids) == sorted({first, text1})

    def test_read_payload_returns_an_independent_copy(self, store: ObjectStore) -> None:
        with store.writing():
            oid = store.put_payload(np.zeros(10))
        value = store.read_payload(oid)
        assert isinstance(value, np.ndarray)
        value[:] = 5
        again = store.read_payload(oid)
        assert isinstance(again, np.ndarray)
        assert not again.any()

    # -- trees and commits ------------------------------------------------------------------------
    def _tiny_history(self, store: ObjectStore) -> dict[str, Any]:
        with store.writing():
            payload = store.put_payload(np.arange(4, dtype=np.int32))
            entry = VersionEntry.describe(np.arange(4, dtype=np.int32), tsprod=5, author="t", pars={"a": 1})
            rng = RangeTree(10, None, None, {"p": "q"}, {VersionKey("0123456789ab"): entry})
            rng_id = store.put_object(rng)
            ct = CtypeTree({"c": 1.5}, {range_key(10, None): RangeRef(10, None, rng_id)})
            ct_id = store.put_object(ct)
            root = RootTree("epix", "1", 3, ctypes={"pedestals": ct_id})
            root_id = store.put_object(root)
            commit = _commit(root_id)
            commit_id = store.put_object(commit)
        return {
            "payload": payload,
            "range": (rng_id, rng),
            "ctype": (ct_id, ct),
            "root": (root_id, root),
            "commit": (commit_id, commit),
        }

    def test_trees_and_commits_round_trip(self, store: ObjectStore) -> None:
        h = self._tiny_history(store)
        with self.reopened(store) as fresh:
            for name in ("range", "ctype", "root", "commit"):
                oid, obj = h[name]
                assert oid == object_id(obj)
                assert fresh.has(oid)
                assert fresh.kind_of(oid) == ("commit" if name == "commit" else "tree")
                assert fresh.read_object(oid, fresh=True) == obj
                assert fresh.read_object(oid) == obj
            commit_id, commit = h["commit"]
            assert fresh.read_commit(commit_id) == commit
            with pytest.raises(CorruptObject):
                fresh.read_commit(h["root"][0])  # a tree is not a commit
            assert set(fresh.object_ids()) == {h["payload"]} | {
                h[n][0] for n in ("range", "ctype", "root", "commit")
            }

    def test_identical_trees_are_stored_once(self, store: ObjectStore) -> None:
        root = RootTree("epix", "1", 3)
        with store.writing():
            a = store.put_object(root)
            b = store.put_object(RootTree("epix", "1", 3))
        assert a == b
        assert list(store.object_ids()) == [a]

    # -- refs -------------------------------------------------------------------------------------
    def test_set_ref_is_compare_and_swap(self, store: ObjectStore) -> None:
        with store.writing():
            t = store.put_object(RootTree("epix", "1", 3))
            c1 = store.put_object(_commit(t, message="one"))
            c2 = store.put_object(_commit(t, (c1,), message="two"))
            store.set_ref(HEAD, None, c1, _record(HEAD, None, c1))
        assert store.head() == c1
        with pytest.raises(RefConflict), store.writing():
            store.set_ref(HEAD, None, c2, _record(HEAD, None, c2))  # expected nothing, found c1
        with pytest.raises(RefConflict), store.writing():
            store.set_ref(HEAD, c2, c1, _record(HEAD, c2, c1))
        assert store.head() == c1
        with store.writing():
            store.set_ref(HEAD, c1, c2, _record(HEAD, c1, c2))
            store.set_ref("remotes/origin", None, c1, _record("remotes/origin", None, c1))
        with self.reopened(store) as fresh:
            assert fresh.refs() == {HEAD: c2, "remotes/origin": c1}
            assert fresh.head() == c2
        with store.writing():
            store.set_ref("remotes/origin", c1, None, _record("remotes/origin", c1, None))
        with self.reopened(store) as fresh:
            assert fresh.refs() == {HEAD: c2}

    def test_ref_conflict_rolls_back_the_whole_transaction(self, store: ObjectStore) -> None:
        with store.writing():
            t = store.put_object(RootTree("epix", "1", 3))
            c1 = store.put_object(_commit(t))
            store.set_ref(HEAD, None, c1, _record(HEAD, None, c1))
        before = sorted(store.object_ids())
        with pytest.raises(RefConflict), store.writing():
            p = store.put_payload(np.arange(10))
            c2 = store.put_object(_commit(t, (c1,), message="lost"))
            store.set_ref(HEAD, None, c2, _record(HEAD, None, c2))
        with self.reopened(store) as fresh:
            assert not fresh.has(p)
            assert not fresh.has(c2)
            assert sorted(fresh.object_ids()) == before
            assert fresh.head() == c1
            assert len(fresh.log()) == 1

    @pytest.mark.parametrize(
        "name", ["refs/heads/main", "head", "remotes/", "remotes/a/b", "remotes/../x", "HEAD\n"]
    )
    def test_invalid_ref_names(self, store: ObjectStore, name: str) -> None:
        with store.writing():
            c = store.put_object(_commit(store.put_object(RootTree("epix", "1", 3))))
        with pytest.raises(InvalidName), store.writing():
            store.set_ref(name, None, c, _record(HEAD, None, c))
        assert store.refs() == {}

    # -- log --------------------------------------------------------------------------------------
    def test_log_is_append_only(self, store: ObjectStore) -> None:
        with store.writing():
            t = store.put_object(RootTree("epix", "1", 3))
            commits = [store.put_object(_commit(t, message=str(i))) for i in range(4)]
        seen: list[str] = []
        old: ObjectId | None = None
        for i, c in enumerate(commits):
            with store.writing():
                store.set_ref(HEAD, old, c, _record(HEAD, old, c, f"move {i}"))
            with self.reopened(store) as fresh:
                log = [r.to_json() for r in fresh.log()]
            assert log[: len(seen)] == seen  # nothing before was rewritten
            assert len(log) == len(seen) + 1
            seen = log
            old = c
        with self.reopened(store) as fresh:
            records = fresh.log()
            assert [(r.old, r.new) for r in records] == list(zip([None, *commits[:-1]], commits, strict=True))
            assert [r.message for r in records] == [f"move {i}" for i in range(4)]
            assert records[0].user == "tester" and records[0].host == "testhost"
            assert fresh.log(last=1) == records[-1:]
            assert fresh.log(last=2) == records[-2:]
            assert fresh.log(last=10) == records
            assert fresh.log(last=0) == []

    # -- atomicity --------------------------------------------------------------------------------
    @pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
    def test_writing_rolls_back_on_exception(self, store: ObjectStore, error: type[BaseException]) -> None:
        with store.writing():
            t = store.put_object(RootTree("epix", "1", 3))
            c1 = store.put_object(_commit(t))
            store.set_ref(HEAD, None, c1, _record(HEAD, None, c1))
        before = (sorted(store.object_ids()), store.refs(), [r.to_json() for r in store.log()])
        with pytest.raises(error), store.writing():
            p = store.put_payload(np.ones((100, 100)))
            text = store.put_payload("rolled back")
            t2 = store.put_object(RootTree("epix", "1", 4))
            c2 = store.put_object(_commit(t2, (c1,)))
            store.set_ref(HEAD, c1, c2, _record(HEAD, c1, c2))
            store.set_ref("remotes/x", None, c2, _record("remotes/x", None, c2))
            raise error("abort")
        with self.reopened(store) as fresh:
            after = (sorted(fresh.object_ids()), fresh.refs(), [r.to_json() for r in fresh.log()])
            assert after == before
            for oid in (p, text, t2, c2):
                assert not fresh.has(oid)
        # and the store takes the next transaction normally
        with store.writing():
            store.set_ref(HEAD, c1, None, _record(HEAD, c1, None))
        assert store.refs() == {}
