"""Stateful model test: an HDF5-backed and a memory-backed repository against a plain-Python model.

Hypothesis drives random transactions (adds of arrays of many dtypes and shapes, 0-d included, and
text; defaults pinned and unpinned; versions, ranges and ctypes removed; parameters merged at every
level; and operations that must fail) through both repositories and through :class:`Model`, a
dictionary-based reference that spells out the lookup rule independently of dcsync:

* among the ranges with ``begin <= t < end`` the latest begin wins; on equal begins the narrower
  range (smaller end; an open end is the widest);
* in that range the pinned default if set, else the version with the largest ``tsprod``.

After every step both repositories must answer the same (value, range, version mapped through our
own bookkeeping, since version keys are random) for probe times around every boundary, list the
same structure as the model, have the same number of commits, and the file must pass ``verify``.
A transaction in which one operation fails must fail with the same error class on both sides and
in the model, and change nothing.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from dcsync.errors import (
    AmbiguousName,
    CtypeNotFound,
    DcsyncError,
    InputError,
    InvalidName,
    InvalidTime,
    NoValidConstant,
    RangeNotFound,
    VersionNotFound,
)
from dcsync.repository import Repository, Transaction
from dcsync.verify import verify_path

NS = 1_000_000_000
# A small set of boundaries so ranges collide, nest and share begins; 10.5 s exercises sub-second
# range keys, and "0-1"/"0-10"/"0-10.5" or "1-2"/"1-20" make range keys prefixes of each other.
TIMES = [0, 1 * NS, 2 * NS, 5 * NS, 10 * NS, 10 * NS + NS // 2, 20 * NS]
PROBES = sorted({t + d for t in TIMES for d in (-1, 0, 1)} | {-NS, 15 * NS, 30 * NS, 2**62})
CTYPES = ["pedestals", "gain", "geometry"]
MISSING_CTYPE = "missing"  # a valid name that is never added
BAD_CTYPE = "Bad-Name"  # an invalid name
UNKNOWN_VERSION = "zzzzzzzzzzzz"  # not hex: never a key nor a prefix of one
PAR_KEYS = ["a", "b", "gain_mode"]
BAD_PAR_KEY = "bad key"

DTYPES = [
    "|b1", "|i1", "|u1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", "<u8", ">u8",
    "<f2", "<f4", ">f4", "<f8", ">f8", "<c8", "<c16", ">c16",
]  # fmt: skip

# -- operations ---------------------------------------------------------------------------------------


class RangeSel(NamedTuple):
    """A range named by begin index and end offset (``None`` open; <= 0 gives end <= begin)."""

    begin: int
    end: int | None

    def bounds(self) -> tuple[int, int | None]:
        begin = TIMES[self.begin]
        if self.end is None:
            return begin, None
        j = self.begin + self.end
        if j >= len(TIMES):
            return begin, None
        return begin, TIMES[max(j, 0)]

    def key(self) -> str:
        return range_key(*self.bounds())


class Add(NamedTuple):
    ctype: str
    value: Any
    range: RangeSel
    pars: dict[str, Any]
    make_default: bool
    tsprod: int


class SetDefault(NamedTuple):
    ctype: str
    version: int | None  # index into the machine's versions, resolved at run time; None = unpin
    range: RangeSel | None


class Remove(NamedTuple):
    ctype: str
    version: int | None
    range: RangeSel | None


class SetPars(NamedTuple):
    level: str  # root, ctype, range, version
    ctype: str
    range: RangeSel | None
    version: int | None
    pars: dict[str, Any]


Op = Add | SetDefault | Remove | SetPars


def range_key(begin: int, end: int | None) -> str:
    """Unix seconds, exact (an independent spelling of dcsync's range keys for times >= 0)."""

    def seconds(ns: int) -> str:
        whole, frac = divmod(ns, NS)
        return str(whole) if not frac else f"{whole}.{frac:09d}".rstrip("0")

    return f"{seconds(begin)}-{'end' if end is None else seconds(end)}"


par_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
valid_pars = st.dictionaries(st.sampled_from(PAR_KEYS), par_values, max_size=2)
add_pars = st.one_of(
    valid_pars,
    st.dictionaries(st.sampled_from([*PAR_KEYS, BAD_PAR_KEY]), st.one_of(par_values, st.none()), max_size=2),
)
set_pars_values = st.dictionaries(
    st.sampled_from([*PAR_KEYS, *PAR_KEYS, BAD_PAR_KEY]),
    st.one_of(par_values, st.none(), st.none(), st.just([1])),
    max_size=3,
)
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
)
payloads = st.one_of(
    arrays,
    arrays,
    st.text(max_size=30),  # may contain NUL, which must fail
    st.just(np.array(["not", "numeric"])),  # must fail
)
range_sels = st.builds(
    RangeSel,
    st.integers(0, len(TIMES) - 1),
    st.sampled_from([None, None, 1, 1, 2, 3, 0, -1]),
)
ctypes = st.sampled_from([*CTYPES, *CTYPES, MISSING_CTYPE])
version_refs = st.integers(0, 40)

ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(
        Add,
        st.sampled_from([*CTYPES, *CTYPES, *CTYPES, BAD_CTYPE]),
        payloads,
        range_sels,
        add_pars,
        st.booleans(),
        st.integers(0, 999),
    ),
    st.builds(Add, st.sampled_from(CTYPES), arrays, range_sels, valid_pars, st.booleans(), st.integers(0, 999)),
    st.builds(SetDefault, ctypes, version_refs, st.one_of(st.none(), range_sels)),
    st.builds(SetDefault, ctypes, st.none(), st.one_of(st.none(), range_sels, range_sels)),
    st.builds(Remove, ctypes, version_refs, st.one_of(st.none(), range_sels)),
    st.builds(Remove, ctypes, st.none(), st.one_of(st.none(), range_sels, range_sels)),
    st.builds(
        SetPars,
        st.sampled_from(["root", "ctype", "range", "version"]),
        st.sampled_from([*CTYPES, MISSING_CTYPE, BAD_CTYPE]),
        range_sels,
        version_refs,
        set_pars_values,
    ),
)

# -- the reference model ---------------------------------------------------------------------------


def canonical_value(value: Any) -> tuple[Any, ...]:
    """What a payload is, independent of memory layout: kind, little-endian dtype, shape, bytes."""
    if isinstance(value, str):
        return ("text", value)
    arr = np.asarray(value)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    arr = arr.astype(dtype, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    return ("array", dtype.str, arr.shape, arr.tobytes())


def strict_pars(pars: Any) -> dict[str, tuple[str, str]]:
    """Parameters compared by type and repr, so True != 1 != 1.0 and 0.0 != -0.0 (they encode apart)."""
    return {k: (type(v).__name__, repr(v)) for k, v in dict(pars).items()}


class ModelError(Exception):
    def __init__(self, cls: type[DcsyncError]) -> None:
        super().__init__(cls.__name__)
        self.cls = cls


class Model:
    """Plain dictionaries, the rules written out. Versions are named by our own integer ids.

    state = {"pars": {...}, "ctypes": {ctype: {"pars": {...}, "ranges": {(begin, end): range}}}}
    range = {"default": vid | None, "pars": {...}, "versions": {vid: {"value", "tsprod", "pars"}}}
    """

    def __init__(self) -> None:
        self.state: dict[str, Any] = {"pars": {}, "ctypes": {}}
        self.commits = 1  # the creation commit

    # -- reads -------------------------------------------------------------------------------------
    def ctypes(self) -> list[str]:
        return sorted(self.state["ctypes"])

    def lookup(self, ctype: str, t: int) -> tuple[tuple[int, int | None], int, bool]:
        """(range bounds, version id, pinned) a lookup at ``t`` returns, or ModelError."""
        ct = self.state["ctypes"].get(ctype)
        if ct is None:
            raise ModelError(CtypeNotFound)
        containing = [(b, e) for (b, e) in ct["ranges"] if b <= t and (e is None or t < e)]
        if not containing:
            raise ModelError(NoValidConstant)
        best = max(containing, key=lambda r: (r[0], -(float("inf") if r[1] is None else r[1])))
        rng = ct["ranges"][best]
        if rng["default"] is not None:
            return best, rng["default"], True
        vid = max(rng["versions"], key=lambda v: rng["versions"][v]["tsprod"])
        return best, vid, False

    # -- name resolution, mirroring the transaction's order of checks --------------------------------
    @staticmethod
    def _ctype(state: dict[str, Any], ctype: str) -> dict[str, Any]:
        ct = state["ctypes"].get(ctype)
        if ct is None:
            raise ModelError(CtypeNotFound)
        return ct

    def _range(self, state: dict[str, Any], ctype: str, sel: RangeSel) -> tuple[int, int | None]:
        """A range by key or unique key prefix (keys are not prefix-free: "1-2" names "1-20")."""
        by_key = {range_key(*b): b for b in self._ctype(state, ctype)["ranges"]}
        query = sel.key()
        if query in by_key:
            return by_key[query]
        hits = [k for k in by_key if k.startswith(query)]
        if len(hits) > 1:
            raise ModelError(AmbiguousName)
        if not hits:
            raise ModelError(RangeNotFound)
        return by_key[hits[0]]

    def _version(
        self, state: dict[str, Any], ctype: str, vid: int | None, sel: RangeSel | None
    ) -> tuple[tuple[int, int | None], int]:
        ranges = [self._range(state, ctype, sel)] if sel is not None else list(self._ctype(state, ctype)["ranges"])
        for bounds in ranges:
            if vid in self._ctype(state, ctype)["ranges"][bounds]["versions"]:
                assert vid is not None
                return bounds, vid
        raise ModelError(VersionNotFound)

    # -- operations --------------------------------------------------------------------------------
    def apply(self, state: dict[str, Any], op: Op, vid: int | None, ref: int | None) -> None:
        """Apply one operation to ``state`` in place; ``vid`` is the id of an add, ``ref`` the id a
        version reference resolved to (None when it names an unknown version)."""
        if isinstance(op, Add):
            self._add(state, op, vid)
        elif isinstance(op, SetDefault):
            self._set_default(state, op, ref)
        elif isinstance(op, Remove):
            self._remove(state, op, ref)
        else:
            self._set_pars(state, op, ref)
        # An empty range means nothing and an empty ctype does not exist.
        for name, ct in list(state["ctypes"].items()):
            ct["ranges"] = {b: r for b, r in ct["ranges"].items() if r["versions"]}
            if not ct["ranges"] and not ct["pars"]:
                del state["ctypes"][name]

    def _add(self, state: dict[str, Any], op: Add, vid: int | None) -> None:
        if op.ctype == BAD_CTYPE:
            raise ModelError(InvalidName)
        begin, end = op.range.bounds()
        if end is not None and end <= begin:
            raise ModelError(InvalidTime)
        if isinstance(op.value, str):
            if "\0" in op.value:
                raise ModelError(InputError)
        elif op.value.dtype.kind not in "biufc":
            raise ModelError(InputError)
        for k, v in op.pars.items():
            if k == BAD_PAR_KEY:
                raise ModelError(InvalidName)
            if v is None:
                raise ModelError(InputError)
        ct = state["ctypes"].setdefault(op.ctype, {"pars": {}, "ranges": {}})
        rng = ct["ranges"].setdefault((begin, end), {"default": None, "pars": {}, "versions": {}})
        if op.make_default:
            rng["default"] = vid
        elif rng["default"] is None and rng["versions"]:  # keep lookups returning what they did
            rng["default"] = max(rng["versions"], key=lambda v: rng["versions"][v]["tsprod"])
        rng["versions"][vid] = {"value": canonical_value(op.value), "tsprod": op.tsprod, "pars": dict(op.pars)}

    def _set_default(self, state: dict[str, Any], op: SetDefault, ref: int | None) -> None:
        if op.version is not None:
            bounds, vid = self._version(state, op.ctype, ref, op.range)
            state["ctypes"][op.ctype]["ranges"][bounds]["default"] = vid
            return
        if op.range is None:
            raise ModelError(RangeNotFound)
        bounds = self._range(state, op.ctype, op.range)
        state["ctypes"][op.ctype]["ranges"][bounds]["default"] = None

    def _remove(self, state: dict[str, Any], op: Remove, ref: int | None) -> None:
        if op.version is not None:
            bounds, vid = self._version(state, op.ctype, ref, op.range)
            rng = state["ctypes"][op.ctype]["ranges"][bounds]
            del rng["versions"][vid]
            if rng["default"] == vid:
                rng["default"] = None
        elif op.range is not None:
            bounds = self._range(state, op.ctype, op.range)
            del state["ctypes"][op.ctype]["ranges"][bounds]
        else:
            self._ctype(state, op.ctype)
            del state["ctypes"][op.ctype]

    def _set_pars(self, state: dict[str, Any], op: SetPars, ref: int | None) -> None:
        if BAD_PAR_KEY in op.pars:
            raise ModelError(InvalidName)
        if op.level != "root" and op.ctype == BAD_CTYPE:
            raise ModelError(InvalidName)
        if op.level == "root":
            target = state["pars"]
        elif op.level == "version":
            bounds, vid = self._version(state, op.ctype, ref, op.range)
            target = state["ctypes"][op.ctype]["ranges"][bounds]["versions"][vid]["pars"]
        elif op.level == "range":
            bounds = self._range(state, op.ctype, op.range)  # type: ignore[arg-type]
            target = state["ctypes"][op.ctype]["ranges"][bounds]["pars"]
        else:
            target = state["ctypes"].setdefault(op.ctype, {"pars": {}, "ranges": {}})["pars"]
        for k, v in op.pars.items():
            if v is None:
                target.pop(k, None)
            elif isinstance(v, list):
                raise ModelError(InputError)
            else:
                target[k] = v

    @staticmethod
    def fingerprint(state: dict[str, Any]) -> Any:
        """The state as compared for "did this change anything" (parameters compared strictly)."""
        return (
            strict_pars(state["pars"]),
            {
                name: (
                    strict_pars(ct["pars"]),
                    {
                        bounds: (
                            rng["default"],
                            strict_pars(rng["pars"]),
                            {
                                vid: (v["value"], v["tsprod"], strict_pars(v["pars"]))
                                for vid, v in rng["versions"].items()
                            },
                        )
                        for bounds, rng in ct["ranges"].items()
                    },
                )
                for name, ct in state["ctypes"].items()
            },
        )


# -- one side: a repository and the map between its random version keys and our ids -----------------


class Side:
    def __init__(self, name: str, repo: Repository) -> None:
        self.name = name
        self.repo = repo
        self.key_of: dict[int, str] = {}
        self.vid_of: dict[str, int] = {}

    def run(self, ops: list[Op], resolve: Callable[[int], int | None], first_vid: int) -> tuple[int, type] | None:
        """Run ``ops`` as one transaction; on a DcsyncError return (op index, error class)."""
        failure: tuple[int, type] | None = None
        try:
            with self.repo.transaction("model step") as tx:
                for i, op in enumerate(ops):
                    try:
                        self._apply(tx, op, first_vid + i, resolve)
                    except DcsyncError as exc:
                        failure = (i, type(exc))
                        raise
        except DcsyncError as exc:
            if failure is None:  # raised while committing
                failure = (len(ops), type(exc))
        return failure

    def _key(self, ref: int | None) -> str:
        return UNKNOWN_VERSION if ref is None else self.key_of.get(ref, UNKNOWN_VERSION)

    def _apply(self, tx: Transaction, op: Op, vid: int, resolve: Callable[[int], int | None]) -> None:
        if isinstance(op, Add):
            begin, end = op.range.bounds()
            loc = tx.add(
                op.ctype, op.value, begin, end, pars=op.pars, make_default=op.make_default, tsprod=op.tsprod
            )
            self.key_of[vid] = loc.version
            self.vid_of[loc.version] = vid
        elif isinstance(op, SetDefault):
            version = None if op.version is None else self._key(resolve(op.version))
            tx.set_default(op.ctype, version, range=None if op.range is None else op.range.key())
        elif isinstance(op, Remove):
            version = None if op.version is None else self._key(resolve(op.version))
            tx.remove(op.ctype, range=None if op.range is None else op.range.key(), version=version)
        elif op.level == "root":
            tx.set_pars(op.pars)
        elif op.level == "ctype":
            tx.set_pars(op.pars, ctype=op.ctype)
        elif op.level == "range":
            assert op.range is not None
            tx.set_pars(op.pars, ctype=op.ctype, range=op.range.key())
        else:
            tx.set_pars(
                op.pars,
                ctype=op.ctype,
                range=None if op.range is None else op.range.key(),
                version=self._key(resolve(op.version)),  # type: ignore[arg-type]
            )

    def lookup(self, ctype: str, t: int) -> tuple[Any, ...]:
        try:
            c = self.repo.get(ctype, t)
        except DcsyncError as exc:
            return ("error", type(exc))
        assert c.ctype == ctype and c.detname == "epix-1"
        assert c.range == range_key(c.begin, c.end)
        assert c.entry.kind == ("text" if isinstance(c.value, str) else "array")
        return ("ok", (c.begin, c.end), self.vid_of[c.version], c.pinned, canonical_value(c.value))

    def structure(self) -> Any:
        """Everything the listing API shows, with version keys mapped to our ids."""
        out: dict[str, Any] = {"pars": strict_pars(self.repo.root().pars), "ctypes": {}}
        for name in self.repo.ctypes():
            ranges = {}
            for key, tree in self.repo.ranges(name):
                assert key == range_key(tree.begin, tree.end)
                ranges[(tree.begin, tree.end)] = (
                    None if tree.default is None else self.vid_of[tree.default],
                    strict_pars(tree.pars),
                    {
                        self.vid_of[k]: (
                            e.tsprod,
                            strict_pars(e.pars),
                            e.kind,
                            e.dtype,
                            e.shape,
                            e.nbytes,
                            e.obj,
                        )
                        for k, e in tree.versions.items()
                    },
                )
            out["ctypes"][name] = (strict_pars(self.repo.ctype_tree(name).pars), ranges)
        return out


# -- the state machine ---------------------------------------------------------------------------------


class RepositoryModelMachine(RuleBasedStateMachine):
    """HDF5-backed and memory-backed repositories driven in lockstep and checked against Model."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="dcsync-model-"))
        self.path = self.tmp / "epix-1.h5"
        self.h5 = Side("hdf5", Repository.create(self.path, "epix-1"))
        self.mem = Side("memory", Repository.create(None, "epix-1"))
        self.model = Model()
        self.next_vid = 0
        self.tsprods: set[int] = set()

    def teardown(self) -> None:
        self.h5.repo.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _unique_tsprod(self, op: Op) -> Op:
        if not isinstance(op, Add):
            return op
        tsprod = op.tsprod * 1000
        while tsprod in self.tsprods:  # distinct production times keep "newest wins" deterministic
            tsprod += 1
        self.tsprods.add(tsprod)
        return op._replace(tsprod=tsprod)

    @rule(batch=st.lists(ops, min_size=1, max_size=4))
    def transaction(self, batch: list[Op]) -> None:
        batch = [self._unique_tsprod(op) for op in batch]
        first_vid = self.next_vid
        self.next_vid += len(batch)  # ids of adds in this batch (resolvable by later ops in it)

        def resolve(ref: int) -> int | None:
            """Any id handed out so far (removed, aborted or not yet added ones included), or unknown."""
            vid = ref % (self.next_vid + 1)
            return None if vid == self.next_vid else vid

        before_h5, before_mem = self.h5.repo.head(), self.mem.repo.head()
        state = copy.deepcopy(self.model.state)
        expected: tuple[int, type] | None = None
        for i, op in enumerate(batch):
            ref = None
            if getattr(op, "version", None) is not None:
                ref = resolve(op.version)  # type: ignore[union-attr]
            try:
                self.model.apply(state, op, first_vid + i, ref)
            except ModelError as exc:
                expected = (i, exc.cls)
                break

        got_h5 = self.h5.run(batch, resolve, first_vid)
        got_mem = self.mem.run(batch, resolve, first_vid)
        assert got_h5 == got_mem, f"hdf5 failed with {got_h5}, memory with {got_mem}"
        assert got_h5 == expected, f"repositories failed with {got_h5}, the model with {expected}"
        if expected is not None:
            assert self.h5.repo.head() == before_h5 and self.mem.repo.head() == before_mem
            return
        changed = Model.fingerprint(state) != Model.fingerprint(self.model.state)
        assert (self.h5.repo.head() != before_h5) == changed, "hdf5: a commit iff something changed"
        assert (self.mem.repo.head() != before_mem) == changed, "memory: a commit iff something changed"
        self.model.state = state
        self.model.commits += changed

    @rule()
    def reopen_file(self) -> None:
        self.h5.repo.close()
        self.h5.repo = Repository.open(self.path)

    @invariant()
    def same_answers(self) -> None:
        for ctype in [*CTYPES, MISSING_CTYPE]:
            for t in PROBES:
                h5, mem = self.h5.lookup(ctype, t), self.mem.lookup(ctype, t)
                assert h5 == mem, f"get({ctype}, {t}): hdf5 {h5[:4]} != memory {mem[:4]}"
                try:
                    bounds, vid, pinned = self.model.lookup(ctype, t)
                except ModelError as exc:
                    assert h5 == ("error", exc.cls), f"get({ctype}, {t}): {h5[:4]}, model {exc.cls}"
                    continue
                rng = self.model.state["ctypes"][ctype]["ranges"][bounds]
                want = ("ok", bounds, vid, pinned, rng["versions"][vid]["value"])
                assert h5 == want, f"get({ctype}, {t}): repositories {h5[:4]}, model {want[:4]}"

    @invariant()
    def same_structure(self) -> None:
        h5, mem = self.h5.structure(), self.mem.structure()
        assert h5 == mem
        state = self.model.state
        assert sorted(h5["ctypes"]) == self.model.ctypes() == self.h5.repo.ctypes()
        assert h5["pars"] == strict_pars(state["pars"])
        for name, (pars, ranges) in h5["ctypes"].items():
            ct = state["ctypes"][name]
            assert pars == strict_pars(ct["pars"])
            assert set(ranges) == set(ct["ranges"])
            for bounds, (default, rpars, versions) in ranges.items():
                rng = ct["ranges"][bounds]
                assert default == rng["default"]
                assert rpars == strict_pars(rng["pars"])
                assert set(versions) == set(rng["versions"])
                for vid, (tsprod, vpars, kind, dtype, shape, _nbytes, _obj) in versions.items():
                    v = rng["versions"][vid]
                    assert (tsprod, vpars) == (v["tsprod"], strict_pars(v["pars"]))
                    assert kind == v["value"][0]
                    if kind == "array":
                        assert (dtype, shape) == (v["value"][1], v["value"][2])

    @invariant()
    def versions_by_key(self) -> None:
        for name, ct in self.model.state["ctypes"].items():
            for bounds, rng in ct["ranges"].items():
                for vid, v in rng["versions"].items():
                    for side in (self.h5, self.mem):
                        c = side.repo.get(name, version=side.key_of[vid])
                        assert (c.begin, c.end) == bounds
                        assert canonical_value(c.value) == v["value"]

    @invariant()
    def same_history(self) -> None:
        for side in (self.h5, self.mem):
            assert len(list(side.repo.commits())) == self.model.commits, side.name
            assert len(side.repo.log()) == self.model.commits, side.name

    @invariant()
    def file_verifies(self) -> None:
        report = verify_path(self.path)
        assert report.ok, report.problems


RepositoryModelMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestRepositoryModel = RepositoryModelMachine.TestCase
