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
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import h5py
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
    UsageError,
    VersionNotFound,
)
from dcsync.model.names import PSANA_CTYPES
from dcsync.repo.repository import Repository
from dcsync.repo.transaction import Transaction
from dcsync.repo.verify import verify_file

NS = 1_000_000_000
# A small set of boundaries so ranges collide, nest and share begins; -0.5 s and 10.5 s exercise
# sub-second and pre-epoch range keys (and an end of exactly 0), and "0-1"/"0-10"/"0-10.5" or
# "1-2"/"1-20" make range keys prefixes of each other.
TIMES = [-NS // 2, 0, 1 * NS, 2 * NS, 5 * NS, 10 * NS, 10 * NS + NS // 2, 20 * NS]
PROBES = sorted({t + d for t in TIMES for d in (-1, 0, 1)} | {-NS, 15 * NS, 30 * NS, 2**62})
CTYPES = ["pedestals", "pixel_gain", "geometry"]
MISSING_CTYPE = "missing"  # a valid name that is never added
BAD_CTYPE = "Bad-Name"  # an invalid name
UNKNOWN_VERSION = "zzzzzzzzzzzz"  # not hex: never a key nor a prefix of one
PAR_KEYS = ["a", "b", "gain_mode"]
BAD_PAR_KEY = "bad key"
TSEND_OPEN = 2**63 - 1  # how the view spells an open end

DTYPES = [
    "|b1", "|i1", "|u1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", "<u8", ">u8",
    "<f2", "<f4", ">f4", "<f8", ">f8", "<c8", "<c16", ">c16",
]  # fmt: skip

# -- operations ---------------------------------------------------------------------------------------
# Operations name versions by our own integer ids (UNKNOWN: one never handed out) and ranges by
# their bounds; each side maps ids to its random keys, ranges to keys via range_key().

Bounds = tuple[int, int | None]
RangeName = Bounds | str  # bounds, or a key or key prefix as typed (range keys are not prefix-free)
UNKNOWN = -1


class Add(NamedTuple):
    ctype: str
    value: Any
    range: Bounds
    pars: dict[str, Any]
    make_default: bool
    tsprod: int
    vid: int  # the id this version gets


class SetDefault(NamedTuple):
    ctype: str
    version: int | None  # None unpins the range
    range: RangeName | None


class Remove(NamedTuple):
    ctype: str
    version: int | None  # neither version nor range: the whole ctype
    range: RangeName | None


class SetPars(NamedTuple):
    level: str  # root, ctype, range, version
    ctype: str
    range: RangeName | None
    version: int | None
    pars: dict[str, Any]


Op = Add | SetDefault | Remove | SetPars


def range_key(begin: int, end: int | None) -> str:
    """Unix seconds, exact (an independent spelling of dcsync's range keys)."""

    def seconds(ns: int) -> str:
        whole, frac = divmod(abs(ns), NS)
        sign = "-" if ns < 0 else ""
        return sign + (str(whole) if not frac else f"{whole}.{frac:09d}".rstrip("0"))

    return f"{seconds(begin)}-{'end' if end is None else seconds(end)}"


def _bounds(i: int, offset: int | None) -> Bounds:
    """A begin from TIMES and an end ``offset`` boundaries later (None or past the last: open;
    0 or less: an end not after the begin, which must fail)."""
    j = None if offset is None else i + offset
    return TIMES[i], None if j is None or j >= len(TIMES) else TIMES[max(j, 0)]


valid_bounds = st.builds(_bounds, st.integers(0, len(TIMES) - 1), st.sampled_from([None, 1, 1, 2, 3, 5]))
any_bounds = st.builds(_bounds, st.integers(0, len(TIMES) - 1), st.sampled_from([None, 1, 2, 0, -1]))
par_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
valid_pars = st.dictionaries(st.sampled_from(PAR_KEYS), par_values, max_size=2)
any_pars = st.dictionaries(
    st.sampled_from([*PAR_KEYS, BAD_PAR_KEY]), st.one_of(par_values, st.none()), max_size=2
)  # a bad key, or None as a value, must fail in add()
set_pars_values = st.one_of(
    st.dictionaries(st.sampled_from(PAR_KEYS), st.one_of(par_values, st.none()), max_size=3),  # None deletes
    st.dictionaries(st.sampled_from([*PAR_KEYS, BAD_PAR_KEY]), st.just([1]), min_size=1, max_size=1),  # fail
)
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
)
valid_payloads = st.one_of(
    arrays, arrays, arrays, st.text(st.characters(exclude_characters="\0"), max_size=30)
)
any_payloads = st.one_of(
    arrays,
    st.text(max_size=30).map(lambda t: t + "\0"),  # NUL in text must fail
    st.just(np.array(["not", "numeric"])),  # must fail
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

    def _range(self, state: dict[str, Any], ctype: str, name: RangeName) -> Bounds:
        """A range by key, or by its begin alone ("5" names "5-10" when that is the only range
        beginning at 5); "1-2" never names "1-20"."""
        by_key = {range_key(*b): b for b in self._ctype(state, ctype)["ranges"]}
        query = name if isinstance(name, str) else range_key(*name)
        if query in by_key:
            return by_key[query]
        hits = [k for k in by_key if k.startswith(query + "-")]
        if len(hits) > 1:
            raise ModelError(AmbiguousName)
        if not hits:
            raise ModelError(RangeNotFound)
        return by_key[hits[0]]

    def _version(
        self, state: dict[str, Any], ctype: str, vid: int | None, within: RangeName | None
    ) -> tuple[Bounds, int]:
        ct = self._ctype(state, ctype)
        for bounds in [self._range(state, ctype, within)] if within is not None else list(ct["ranges"]):
            if vid in ct["ranges"][bounds]["versions"]:
                assert vid is not None
                return bounds, vid
        raise ModelError(VersionNotFound)

    # -- operations --------------------------------------------------------------------------------
    def apply(self, state: dict[str, Any], op: Op) -> None:
        """Apply one operation to ``state`` in place, or raise ModelError as the repository must."""
        if isinstance(op, Add):
            self._add(state, op)
        elif isinstance(op, SetDefault):
            self._set_default(state, op)
        elif isinstance(op, Remove):
            self._remove(state, op)
        else:
            self._set_pars(state, op)
        # An empty range means nothing and an empty ctype does not exist.
        for name, ct in list(state["ctypes"].items()):
            ct["ranges"] = {b: r for b, r in ct["ranges"].items() if r["versions"]}
            if not ct["ranges"] and not ct["pars"]:
                del state["ctypes"][name]

    def _add(self, state: dict[str, Any], op: Add) -> None:
        if op.ctype == BAD_CTYPE:
            raise ModelError(InvalidName)
        begin, end = op.range
        if end is not None and end <= begin:
            raise ModelError(InvalidTime)
        if isinstance(op.value, str):
            if "\0" in op.value or any(0xD800 <= ord(c) <= 0xDFFF for c in op.value):
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
            rng["default"] = op.vid
        elif rng["default"] is None and rng["versions"]:  # keep lookups returning what they did
            rng["default"] = max(rng["versions"], key=lambda v: rng["versions"][v]["tsprod"])
        rng["versions"][op.vid] = {
            "value": canonical_value(op.value),
            "tsprod": op.tsprod,
            "pars": dict(op.pars),
        }

    def _set_default(self, state: dict[str, Any], op: SetDefault) -> None:
        if op.version is not None:
            bounds, vid = self._version(state, op.ctype, op.version, op.range)
            state["ctypes"][op.ctype]["ranges"][bounds]["default"] = vid
            return
        if op.range is None:
            raise ModelError(RangeNotFound)
        bounds = self._range(state, op.ctype, op.range)
        state["ctypes"][op.ctype]["ranges"][bounds]["default"] = None

    def _remove(self, state: dict[str, Any], op: Remove) -> None:
        if op.version is not None:
            bounds, vid = self._version(state, op.ctype, op.version, op.range)
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

    def _set_pars(self, state: dict[str, Any], op: SetPars) -> None:
        if BAD_PAR_KEY in op.pars:
            raise ModelError(InvalidName)
        if op.level != "root" and op.ctype == BAD_CTYPE:
            raise ModelError(InvalidName)
        if op.level == "ctype" and op.ctype not in state["ctypes"] and op.ctype not in PSANA_CTYPES:
            raise ModelError(UsageError)  # it would start a ctype psana does not know: needs new_ctype
        if op.level == "root":
            target = state["pars"]
        elif op.level == "version":
            bounds, vid = self._version(state, op.ctype, op.version, op.range)
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

    def run(self, ops: list[Op]) -> tuple[int, type] | None:
        """Run ``ops`` as one transaction; on a DcsyncError return (op index, error class)."""
        failure: tuple[int, type] | None = None
        try:
            with self.repo.transaction("model step") as tx:
                for i, op in enumerate(ops):
                    try:
                        self._apply(tx, op)
                    except DcsyncError as exc:
                        failure = (i, type(exc))
                        raise
        except DcsyncError as exc:
            if failure is None:  # raised while committing
                failure = (len(ops), type(exc))
        return failure

    def _key(self, vid: int) -> str:
        return self.key_of.get(vid, UNKNOWN_VERSION)

    def _apply(self, tx: Transaction, op: Op) -> None:
        rkey = op.range if op.range is None or isinstance(op.range, str) else range_key(*op.range)
        if isinstance(op, Add):
            loc = tx.add(
                op.ctype,
                op.value,
                begin_ns=op.range[0],
                end_ns=op.range[1],
                pars=op.pars,
                make_default=op.make_default,
                tsprod_ns=op.tsprod,
            )
            self.key_of[op.vid] = loc.version
            self.vid_of[loc.version] = op.vid
        elif isinstance(op, SetDefault):
            tx.set_default(op.ctype, None if op.version is None else self._key(op.version), range=rkey)
        elif isinstance(op, Remove):
            tx.remove(op.ctype, range=rkey, version=None if op.version is None else self._key(op.version))
        elif op.level == "root":
            tx.set_pars(op.pars)
        elif op.level == "ctype":
            tx.set_pars(op.pars, ctype=op.ctype)
        elif op.level == "range":
            tx.set_pars(op.pars, ctype=op.ctype, range=rkey)
        else:
            assert op.version is not None
            tx.set_pars(op.pars, ctype=op.ctype, range=rkey, version=self._key(op.version))

    def lookup(self, ctype: str, t: int) -> tuple[Any, ...]:
        try:
            c = self.repo.get(ctype, at_ns=t)
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
        self.vid_home: dict[int, tuple[str, Bounds]] = {}  # where each id was added (maybe aborted)
        self.tsprods: set[int] = set()

    def teardown(self) -> None:
        self.h5.repo.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- drawing operations that mostly name things that exist (and sometimes what does not) --------
    def _ctype(self, data: st.DataObject) -> str:
        existing = sorted(self.model.state["ctypes"])
        anything = st.sampled_from([*CTYPES, MISSING_CTYPE])
        return data.draw(st.one_of(st.sampled_from(existing), anything) if existing else anything)

    def _bounds(self, data: st.DataObject, ctype: str) -> RangeName:
        """An existing range, a prefix of an existing key ("5-10" names "5-10.5"), or any range."""
        existing = sorted(self.model.state["ctypes"].get(ctype, {}).get("ranges", {}), key=str)
        if not existing:
            return data.draw(any_bounds)
        keys = [range_key(*b) for b in existing]
        prefixes = st.sampled_from(keys).flatmap(lambda k: st.integers(1, len(k)).map(lambda n: k[:n]))
        return data.draw(st.one_of(st.sampled_from(existing), any_bounds, prefixes))

    def _version(self, data: st.DataObject) -> int:
        live = [
            vid
            for ct in self.model.state["ctypes"].values()
            for rng in ct["ranges"].values()
            for vid in rng["versions"]
        ]
        choices = [st.just(UNKNOWN)]
        if self.vid_home:
            choices.insert(0, st.sampled_from(sorted(self.vid_home)))  # removed and aborted ones too
        if live:
            choices.insert(0, st.sampled_from(sorted(live)))
        return data.draw(st.one_of(*choices))

    def _version_op(self, data: st.DataObject) -> tuple[str, int, RangeName | None]:
        """A version, usually with its own ctype and no range or its own range."""
        vid = self._version(data)
        home = self.vid_home.get(vid)
        if home is None or data.draw(st.integers(0, 4)) == 0:
            ctype = self._ctype(data)
            return ctype, vid, data.draw(st.one_of(st.none(), st.just(self._bounds(data, ctype))))
        ctype, bounds = home
        return ctype, vid, data.draw(st.sampled_from([None, bounds, self._bounds(data, ctype)]))

    def _op(self, data: st.DataObject) -> Op:
        what = data.draw(
            st.sampled_from(
                ["add", "add", "add", "add", "bad-add", "default", "unpin", "rm", "rm-range", "pars"]
            )
        )
        if what in ("add", "bad-add"):
            valid = what == "add"
            ctype = data.draw(st.sampled_from(CTYPES if valid else [*CTYPES, BAD_CTYPE]))
            existing = list(self.model.state["ctypes"].get(ctype, {}).get("ranges", {}))
            new = valid_bounds if valid else any_bounds
            bounds = data.draw(st.one_of(st.sampled_from(existing), new) if existing else new)
            tsprod = data.draw(st.integers(0, 999)) * 1000
            while tsprod in self.tsprods:  # distinct production times keep "newest wins" deterministic
                tsprod += 1
            self.tsprods.add(tsprod)
            vid, self.next_vid = self.next_vid, self.next_vid + 1
            self.vid_home[vid] = (ctype, bounds)
            value = data.draw(valid_payloads if valid else any_payloads)
            pars = data.draw(valid_pars if valid else any_pars)
            return Add(ctype, value, bounds, pars, data.draw(st.booleans()), tsprod, vid)
        if what == "default":
            return SetDefault(*self._version_op(data))
        if what == "unpin":
            ctype = self._ctype(data)
            bounds = self._bounds(data, ctype)
            return SetDefault(ctype, None, data.draw(st.sampled_from([bounds, bounds, bounds, None])))
        if what == "rm":
            return Remove(*self._version_op(data))
        if what == "rm-range":
            ctype = self._ctype(data)
            bounds = self._bounds(data, ctype)  # None: the whole ctype
            return Remove(ctype, None, data.draw(st.sampled_from([bounds, bounds, bounds, None])))
        level = data.draw(st.sampled_from(["root", "ctype", "range", "version"]))
        pars = data.draw(set_pars_values)
        if level == "version":
            ctype, vid, bounds = self._version_op(data)
            return SetPars(level, ctype, bounds, vid, pars)
        ctype = data.draw(st.sampled_from([self._ctype(data), self._ctype(data), BAD_CTYPE]))
        return SetPars(level, ctype, self._bounds(data, ctype) if level == "range" else None, None, pars)

    # -- rules ---------------------------------------------------------------------------------------
    @rule(data=st.data())
    def transaction(self, data: st.DataObject) -> None:
        """One to four operations as one transaction, on both sides and in the model."""
        if data.draw(st.integers(0, 7)) == 0:
            self.h5.repo.close()  # and read the file afresh from here on
            self.h5.repo = Repository.open(self.path)
        batch = [self._op(data) for _ in range(data.draw(st.sampled_from([1, 1, 2, 3, 4])))]
        before_h5, before_mem = self.h5.repo.head(), self.mem.repo.head()
        state = copy.deepcopy(self.model.state)
        expected: tuple[int, type] | None = None
        for i, op in enumerate(batch):
            try:
                self.model.apply(state, op)
            except ModelError as exc:
                expected = (i, exc.cls)
                break

        got_h5 = self.h5.run(batch)
        got_mem = self.mem.run(batch)
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
        report = verify_file(self.path)
        assert report.ok, report.problems

    @invariant()
    def plain_h5py_view_agrees(self) -> None:
        """What an h5py user without dcsync reads (the seed-schema view) is the model's HEAD."""
        key_of = self.h5.key_of
        with open(self.path, "rb") as fh, h5py.File(fh, "r") as f:
            assert set(f) - {".dcsync"} == set(self.model.state["ctypes"])
            assert strict_pars(json.loads(f.attrs["dictpars"])) == strict_pars(self.model.state["pars"])
            for name, ct in self.model.state["ctypes"].items():
                assert strict_pars(json.loads(f[name].attrs["dictpars"])) == strict_pars(ct["pars"])
                assert set(f[name]) == {range_key(*b) for b in ct["ranges"]}
                for (begin, end), rng in ct["ranges"].items():
                    g = f[name][range_key(begin, end)]
                    assert (int(g.attrs["tsbegin"]), int(g.attrs["tsend"])) == (
                        begin,
                        TSEND_OPEN if end is None else end,
                    )
                    assert g.attrs["defaultv"] == ("" if rng["default"] is None else key_of[rng["default"]])
                    versions = rng["versions"]
                    effective = rng["default"]
                    if effective is None:
                        effective = max(versions, key=lambda v: versions[v]["tsprod"])
                    assert g.attrs["effectivev"] == key_of[effective]
                    by_age = sorted(versions, key=lambda v: versions[v]["tsprod"])
                    assert [str(k) for k in g.attrs["versions"]] == [key_of[v] for v in by_age]
                    for vid, v in versions.items():
                        calib = g[key_of[vid]]["calib"][()]
                        if v["value"][0] == "text":
                            assert bytes(calib).decode() == v["value"][1]
                        else:
                            assert canonical_value(calib) == v["value"]


RepositoryModelMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestRepositoryModel = RepositoryModelMachine.TestCase
