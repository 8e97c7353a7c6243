"""Property tests: content ids ignore memory layout, objects round-trip exactly, decoders fed random
bytes raise only our errors, times and names parse back what they print or refuse with our error."""

from __future__ import annotations

import math
import re
import string
from typing import Any

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import msgpack
import numpy as np
import pytest
from hypothesis import given, settings

from dcsync.errors import CorruptObject, DcsyncError, InvalidName, InvalidTime, ProtocolError
from dcsync.model import limits, wire
from dcsync.model.hashing import canonical_array, hash_array, hash_bytes
from dcsync.model.names import (
    check_alias,
    check_ctype,
    check_detname,
    check_par_key,
    range_key,
    split_detname,
)
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    RangeRef,
    RangeTree,
    RootTree,
    VersionEntry,
    check_tree_size,
    decode,
    encode,
    object_id,
    payload_id,
)
from dcsync.model.times import NS, TIME_MAX, TIME_MIN, format_seconds, format_time, parse_time
from dcsync.store.refs import check_ref

# -- (a) hashing --------------------------------------------------------------------------------------

NUMERIC_DTYPES = ["b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]

arrays = st.sampled_from(NUMERIC_DTYPES).flatmap(
    lambda dt: hnp.arrays(
        np.dtype("<" + dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    )
)


def layouts(a: np.ndarray) -> list[np.ndarray]:
    """The same content in other memory layouts: Fortran order, strided and reversed views,
    big-endian, and combinations."""
    big = a.dtype.newbyteorder(">")
    out = [  # not np.asfortranarray: it makes 0-d arrays 1-d
        a.copy(order="F"),
        a.astype(big),
        a.astype(big, order="F"),
        np.stack([a, a], axis=-1)[..., 1],  # every other element: non-contiguous
    ]
    if a.ndim:
        out.append(np.flip(np.flip(a, 0).copy(), 0))  # negative strides
        out.append(np.stack([a.astype(big), a.astype(big)], axis=0)[1, ...].T.copy().T)
    else:
        out.append(np.stack([a, a])[1])
    return out


@given(arrays)
def test_hash_ignores_memory_layout(a: np.ndarray) -> None:
    want = hash_array(canonical_array(a))
    for other in layouts(a):
        assert np.array_equal(other, a, equal_nan=a.dtype.kind in "fc")
        canon = canonical_array(other)
        assert canon.flags.c_contiguous and canon.dtype.byteorder != ">"
        assert canon.shape == a.shape and canon.dtype == a.dtype
        assert hash_array(canon) == want, f"layout {other.flags} {other.dtype} hashes differently"
        assert payload_id(other) == want


@given(st.binary(min_size=0, max_size=64).map(lambda b: b[: len(b) // 16 * 16]))
def test_hash_tells_dtype_and_shape_apart(raw: bytes) -> None:
    """The same bytes as different dtypes or shapes are different content, hence different ids."""
    ids: dict[tuple[str, tuple[int, ...]], str] = {}
    for dt in NUMERIC_DTYPES:
        dtype = np.dtype("<" + dt)
        flat = np.frombuffer(raw, dtype=dtype)
        n = flat.size
        shapes = {(n,), (1, n), (n, 1)}
        if n == 1:
            shapes.add(())
        if n % 2 == 0 and n:
            shapes |= {(2, n // 2), (n // 2, 2)}
        if n == 0:
            shapes |= {(0, 0), (0, 3), (3, 0)}
        for shape in shapes:
            ids[(dtype.str, shape)] = hash_array(canonical_array(flat.reshape(shape)))
    assert len(set(ids.values())) == len(ids), "two (dtype, shape) pairs over the same bytes share an id"


@given(st.binary(max_size=64))
def test_hash_kinds_are_apart(raw: bytes) -> None:
    assert len({hash_bytes(kind, raw) for kind in ("array", "text", "tree", "commit")}) == 4
    assert hash_array(np.frombuffer(raw, dtype=np.uint8)) != hash_bytes("tree", raw)


def test_hash_rejects_non_numeric() -> None:
    for bad in (np.array(["a"]), np.array([object()]), np.array([b"x"]), np.zeros(2, "datetime64[s]")):
        with pytest.raises(DcsyncError):
            canonical_array(bad)


# -- (b) objects --------------------------------------------------------------------------------------

oids = st.text("0123456789abcdef", min_size=32, max_size=32)
vkeys = st.text("0123456789abcdef", min_size=12, max_size=12)
int64 = st.integers(-(2**63), 2**63 - 1)
times = st.integers(TIME_MIN, TIME_MAX)  # the validity rules of trees (dcsync/model/fields.py)
par_keys = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,10}\Z")
par_values = st.one_of(st.booleans(), int64, st.floats(allow_nan=False), st.text(max_size=10))
pars = st.dictionaries(par_keys, par_values, max_size=4)
json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        int64,
        st.floats(allow_nan=False),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
extras = st.dictionaries(st.text(max_size=6), json_like, max_size=3)
no_nul = st.text(max_size=10).filter(lambda s: "\0" not in s)


@st.composite
def bounds(draw: st.DrawFn) -> tuple[int, int | None]:
    begin = draw(st.integers(TIME_MIN, TIME_MAX - 1))
    return begin, draw(st.one_of(st.none(), st.integers(begin + 1, TIME_MAX)))


@st.composite
def version_entries(draw: st.DrawFn) -> VersionEntry:
    """Entries whose dtype, shape and size agree (an array's size is its shape's), any author."""
    if draw(st.booleans()):
        dtype = draw(st.sampled_from(["<f8", "|u1", "|b1", "<c16"]))
        shape = tuple(draw(st.lists(st.integers(0, 2**12), max_size=4)))
        kind, nbytes = "array", math.prod(shape) * np.dtype(dtype).itemsize
    else:
        dtype, shape, kind, nbytes = "", (), "text", draw(st.integers(0, 2**50))
    return VersionEntry(
        draw(oids), draw(times), kind, dtype, shape, nbytes, draw(no_nul), draw(pars), draw(extras)
    )


@st.composite
def range_trees(draw: st.DrawFn) -> RangeTree:
    begin, end = draw(bounds())
    # never empty: dcsync prunes a range whose last version goes, and refuses an empty one
    versions = draw(st.dictionaries(vkeys, version_entries(), min_size=1, max_size=3))
    default = draw(st.one_of(st.none(), st.sampled_from(sorted(versions))))
    return RangeTree(begin, end, default, draw(pars), versions)


@st.composite
def ctype_trees(draw: st.DrawFn) -> CtypeTree:
    ranges = {range_key(b, e): RangeRef(b, e, draw(oids)) for b, e in draw(st.lists(bounds(), max_size=4))}
    return CtypeTree(draw(pars), ranges)


# the rule of names.check_detname: a dettype of letters and digits (single '_' between) starting
# with a letter; a detid of letters and digits joined by single '.', '_' or '-'
dettypes = st.from_regex(r"\A[a-z][a-z0-9]{0,4}(_[a-z0-9]{1,3})?\Z")
detids = st.from_regex(r"\A[a-z0-9]{1,5}([._-][a-z0-9]{1,3}){0,2}\Z").filter(lambda d: not d.endswith(".h5"))
detnames = st.tuples(dettypes, detids).map("-".join)
root_trees = st.builds(
    RootTree,
    dettype=dettypes,
    detid=detids,
    created=times,
    predecessor=st.one_of(st.just(""), detnames),
    successor=st.one_of(st.just(""), detnames),
    pars=pars,
    ctypes=st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_]{0,7}\Z"), oids, max_size=4),
)
commits = st.builds(
    Commit,
    tree=oids,
    parents=st.lists(oids, max_size=3).map(tuple),
    author=st.text(max_size=8),
    host=st.text(max_size=8),
    time=times,
    message=st.text(max_size=40),
    meta=extras,
)
objects = st.one_of(range_trees(), ctype_trees(), root_trees, commits)


@given(st.one_of(objects, version_entries()))
def test_to_wire_from_wire_round_trip(obj: Any) -> None:
    again = type(obj).from_wire(obj.to_wire())
    assert again == obj
    # through the real encoding too, byte-exact (== alone would let True become 1)
    assert wire.pack(type(obj).from_wire(wire.unpack(wire.pack(obj.to_wire()))).to_wire()) == wire.pack(
        obj.to_wire()
    )


@given(objects)
def test_encode_decode_round_trip(obj: Any) -> None:
    kind, body = encode(obj)
    back = decode(kind, body, "test")
    assert back == obj and type(back) is type(obj)
    assert encode(back) == (kind, body)
    assert object_id(back) == object_id(obj) == hash_bytes(kind, body)


def _reordered(d: Any) -> dict[str, Any]:
    return dict(reversed(list(dict(d).items())))


@given(range_trees(), ctype_trees(), root_trees)
def test_equal_trees_have_equal_ids(rng: RangeTree, ct: CtypeTree, root: RootTree) -> None:
    """Ids are of values: the order parameters were set in must not matter."""
    from dataclasses import replace

    rng2 = replace(
        rng,
        pars=_reordered(rng.pars),
        versions={k: replace(v, pars=_reordered(v.pars)) for k, v in reversed(list(rng.versions.items()))},
    )
    ct2 = replace(ct, pars=_reordered(ct.pars), ranges=_reordered(ct.ranges))
    root2 = replace(root, pars=_reordered(root.pars), ctypes=_reordered(root.ctypes))
    for a, b in ((rng, rng2), (ct, ct2), (root, root2)):
        assert a == b
        assert object_id(a) == object_id(b)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.one_of(st.none(), st.integers(-3, 4))).filter(
            lambda r: r[1] is None or r[1] > r[0]
        ),
        max_size=8,
        unique=True,
    )
)
def test_ctype_lookup_follows_the_rule(bounds: list[tuple[int, int | None]]) -> None:
    """CtypeTree.lookup (bisect) against the rule spelled out: latest begin, then narrowest (open widest).
    Small times around 0 so an end of exactly 0 occurs."""
    ct = CtypeTree(ranges={range_key(b, e): RangeRef(b, e, "0" * 32) for b, e in bounds})
    for t in range(-5, 7):
        containing = [(b, e) for b, e in bounds if b <= t and (e is None or t < e)]
        want = None
        if containing:
            b, e = max(containing, key=lambda r: (r[0], -(float("inf") if r[1] is None else r[1])))
            want = range_key(b, e)
        assert ct.lookup(t) == want, f"t={t}"


# -- (c) decoders on hostile bytes -------------------------------------------------------------------

msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**64 - 1]),  # int(inf) overflows
        st.text(max_size=8),
        st.binary(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


NASTY = [float("inf"), float("-inf"), float("nan"), None, True, -1, 2**64 - 1, "x", "9" * 5000, b"x", [], {}]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a tree of maps and lists, the root included."""
    out = [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        out.extend(_paths(child, (*path, key)))
    return out


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    out = dict(value) if isinstance(value, dict) else list(value)
    out[path[0]] = _replaced(value[path[0]], path[1:], new)
    return out


def _only_our_errors(kind: str, body: bytes) -> None:
    try:
        decode(kind, body, "fuzz")
    except DcsyncError as exc:
        assert isinstance(exc, CorruptObject), type(exc)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_unpack_random_bytes_raises_only_corrupt_object(data: bytes) -> None:
    try:
        wire.unpack(data)
    except DcsyncError as exc:
        assert isinstance(exc, CorruptObject)


@settings(max_examples=300)
@given(st.sampled_from(["tree", "commit", "array", "bogus"]), st.binary(max_size=200))
def test_decode_random_bytes_raises_only_corrupt_object(kind: str, data: bytes) -> None:
    _only_our_errors(kind, data)


@settings(max_examples=200)
@given(objects, st.data())
def test_decode_damaged_bytes_raises_only_corrupt_object(obj: Any, data: st.DataObject) -> None:
    """Valid objects with one byte changed, or cut short."""
    kind, body = encode(obj)
    i = data.draw(st.integers(0, len(body) - 1))
    _only_our_errors(kind, body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :])
    _only_our_errors(kind, body[:i])


@settings(max_examples=300)
@given(objects, st.data())
def test_decode_damaged_structure_raises_only_corrupt_object(obj: Any, data: st.DataObject) -> None:
    """Valid objects with one part, at any depth, replaced by a value chosen to confuse a type
    conversion (inf for an int, a map for a list...) or by any value."""
    kind = encode(obj)[0]
    tree_name = {RangeTree: "range", CtypeTree: "ctype", RootTree: "root"}.get(type(obj))
    value = obj.to_wire() if tree_name is None else [tree_name, obj.to_wire()]
    path = data.draw(st.sampled_from(_paths(value)[::-1]))  # leaves first: hypothesis favours early
    new = data.draw(st.one_of(st.sampled_from(NASTY), msgpack_values))
    _only_our_errors(kind, msgpack.packb(_replaced(value, path, new), use_bin_type=True))


@given(msgpack_values)
def test_decode_any_msgpack_value_raises_only_corrupt_object(value: Any) -> None:
    body = msgpack.packb(value, use_bin_type=True)
    _only_our_errors("commit", body)
    _only_our_errors("tree", body)
    for name in ("root", "ctype", "range"):
        _only_our_errors("tree", msgpack.packb([name, value], use_bin_type=True))


def test_decode_infinite_integer_field_is_corrupt() -> None:
    """Regression: int(inf) raised OverflowError out of decode."""
    commit = Commit("0" * 32, (), "a", "h", 0, "m").to_wire()
    commit["ti"] = float("inf")
    rng = RangeTree(0, None, versions={"0" * 12: VersionEntry("0" * 32, 1, "text", "", (), 0, "a")})
    range_wire = rng.to_wire()
    range_wire["v"]["0" * 12]["t"] = float("-inf")
    for kind, value in (("commit", commit), ("tree", ["range", range_wire])):
        with pytest.raises(CorruptObject):
            decode(kind, msgpack.packb(value, use_bin_type=True))


def test_a_peers_tree_over_its_kinds_limit_is_refused_naming_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each tree kind is counted against its own limit, read when the check runs (a benchmark raises
    them); at the limit is fine, one over is a ProtocolError naming the peer, the tree and the limit."""
    entry = VersionEntry("0" * 32, 1, "text", "", (), 0, "a")
    two = {
        "MAX_CTYPES_PER_ROOT": RootTree("cspad", "x", 0, ctypes={"a": "0" * 32, "b": "1" * 32}),
        "MAX_RANGES_PER_CTYPE": CtypeTree(
            ranges={
                range_key(0, 5): RangeRef(0, 5, "0" * 32),
                range_key(5, None): RangeRef(5, None, "1" * 32),
            }
        ),
        "MAX_VERSIONS_PER_RANGE": RangeTree(0, None, versions={"0" * 12: entry, "1" * 12: entry}),
    }
    for name, tree in two.items():
        monkeypatch.setattr(limits, name, 2)
        check_tree_size(tree, "t1", peer="host:/r")
        monkeypatch.setattr(limits, name, 1)
        with pytest.raises(
            ProtocolError, match=rf"host:/r sent tree t1 with 2 .*\({name}\): over the limit of 1"
        ):
            check_tree_size(tree, "t1", peer="host:/r")
    check_tree_size(Commit("0" * 32, (), "a", "h", 0, "m"), "c1", peer="host:/r")  # not a tree: no limit


# -- (d) times ----------------------------------------------------------------------------------------

Y1900, Y1970, Y2200 = -2208988800 * NS, 0, 7258118400 * NS
ns_1970_2200 = st.integers(Y1970, Y2200)


@given(ns_1970_2200)
def test_format_time_round_trips(ns: int) -> None:
    text = format_time(ns)
    assert text.endswith("Z")
    assert parse_time(text) == ns
    assert parse_time(f"  {text.lower()}  ") == ns


@given(st.integers(Y1900, Y2200))
def test_format_time_round_trips_before_1970(ns: int) -> None:
    assert parse_time(format_time(ns)) == ns


@given(st.integers(Y1900, Y2200))
def test_unix_seconds_round_trip(ns: int) -> None:
    text = format_seconds(ns)
    assert re.fullmatch(r"-?\d+(\.\d*[1-9])?", text), text
    assert parse_time(text) == ns
    whole = ns // NS
    assert parse_time(str(whole)) == whole * NS == parse_time(whole)


def test_unix_seconds_negative_fraction() -> None:
    """Regression: -0.5 s printed as "-1.5" (divmod floors towards -inf)."""
    assert format_seconds(-NS // 2) == "-0.5"
    assert format_seconds(-3 * NS // 2) == "-1.5"
    assert range_key(-NS // 2, 0) == "-0.5-0"


def _parse_or_invalid_time(text: str) -> None:
    try:
        ns = parse_time(text)
    except DcsyncError as exc:
        assert isinstance(exc, InvalidTime), type(exc)
    else:
        assert isinstance(ns, int) and -(2**63) <= ns < 2**63


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_garbage_time_raises_only_invalid_time(text: str) -> None:
    _parse_or_invalid_time(text)


@settings(max_examples=300)
@given(st.text(alphabet="0123456789.+-:TZz eE" + "\u0661\u0662\u096b\uff11", max_size=30))
def test_numberlike_garbage_raises_only_invalid_time(text: str) -> None:
    _parse_or_invalid_time(text)


# -- (e) names ----------------------------------------------------------------------------------------

_NAME_CHARS = string.ascii_lowercase + string.digits + "._-"
names = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=_NAME_CHARS + "/A\n. ", max_size=30),
    st.from_regex(r"\A[a-z0-9][a-z0-9._]*-[a-z0-9][a-z0-9._-]*\Z").flatmap(
        lambda s: st.sampled_from([s, s + "\n", s + "/x", s.upper(), s + "..", "../" + s, s + "\u0131"])
    ),
)


@settings(max_examples=400)
@given(names)
def test_detector_names_pass_or_raise_invalid_name(name: str) -> None:
    try:
        checked = check_detname(name)
    except DcsyncError as exc:
        assert isinstance(exc, InvalidName)
        return
    assert checked == name
    assert "/" not in name and ".." not in name and name == name.lower()
    assert set(name) <= set(_NAME_CHARS), f"{name!r} passed with characters outside [a-z0-9._-]"
    assert "-" in name and name[0] not in "._-" and len(name) <= 200
    dettype, detid = split_detname(name)
    assert f"{dettype}-{detid}" == name and "-" not in dettype


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=20), st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z").map(lambda s: s + "\n")))
def test_ctype_names_pass_or_raise_invalid_name(name: str) -> None:
    try:
        check_ctype(name)
    except DcsyncError as exc:
        assert isinstance(exc, InvalidName)
        return
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name), f"{name!r} passed"


@pytest.mark.parametrize("name", ["epix-1\n", "../epix-1", "epix-1/..", "Epix-1", "epix/1-2", "epix..x-1"])
def test_bad_detector_names(name: str) -> None:
    with pytest.raises(InvalidName):
        check_detname(name)


@pytest.mark.parametrize(
    ("check", "name"),
    [
        (check_ctype, "pedestals\n"),
        (check_detname, "epix-1\n"),
        (check_alias, "Camera1\n"),
        (check_par_key, "gain\n"),
        (check_ref, "HEAD\n"),
        (check_ref, "remotes/origin\n"),
    ],
)
def test_trailing_newline_is_not_a_name(check: Any, name: str) -> None:
    """Regression: ``$`` matches before a trailing newline, so "pedestals\\n" passed."""
    assert check(name.rstrip("\n"))
    with pytest.raises(InvalidName):
        check(name)
