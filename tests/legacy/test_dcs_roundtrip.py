"""read_dcs(write_dcs(x)) == x for generated DCS descriptions, and psana's lookup answers the same
before and after (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dcsync.legacy.dcs import (
    PSANA_DCS_CTYPES,
    DcsCtype,
    DcsDetector,
    DcsMeta,
    DcsRange,
    DcsRecord,
    DcsStore,
    DcsVersion,
    find_range,
    pick_version,
    range_group_name,
    seconds_to_ns,
)
from dcsync.legacy.dcsread import read_dcs
from dcsync.legacy.dcswrite import write_dcs

T0 = 1_600_000_000
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
times = st.floats(T0 - 10**6, T0 + 10**6, allow_nan=False).filter(lambda t: t != 0)
pars = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,10}", fullmatch=True),
        st.one_of(text, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)),
    ),
    max_size=3,
    unique_by=lambda kv: kv[0],
).map(lambda kv: tuple(sorted(kv)))
history = st.lists(st.integers(0, 2 * 10**15), max_size=3, unique=True).flatmap(
    lambda us: st.tuples(
        *[text.map(lambda s, u=u: DcsRecord(u / 1e6, s)) for u in sorted(us, key=lambda u: f"{u / 1e6:.6f}")]
    )
)
metas = st.builds(DcsMeta, pars, history)
dtypes = st.sampled_from(["<f4", "<f8", "<u2", "<u8", "<i4", "|u1", ">f4", "<c8", "|b1"])
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
)
geometry = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


@st.composite
def ranges(draw: st.DrawFn, data: st.SearchStrategy[np.ndarray | str | None]) -> tuple[DcsRange, ...]:
    out: dict[str, DcsRange] = {}
    for _ in range(draw(st.integers(0, 4))):
        begin = draw(times)
        end = draw(st.one_of(st.none(), st.floats(begin, begin + 10**5, allow_nan=False)))
        numbers = draw(st.lists(st.integers(1, 9999), max_size=3, unique=True).map(sorted))
        versions = tuple(
            DcsVersion(n, draw(st.one_of(st.none(), times)), draw(data), draw(metas)) for n in numbers
        )
        versdef = draw(st.sampled_from([0, *numbers]))
        rng = DcsRange(begin, end, versdef, versions, draw(metas))
        out.setdefault(rng.key, rng)  # psana merges ranges of one key: at most one per key
    return tuple(sorted(out.values(), key=lambda r: r.name))


@st.composite
def stores(draw: st.DrawFn) -> DcsStore:
    names = draw(st.lists(st.sampled_from(PSANA_DCS_CTYPES), max_size=3, unique=True).map(sorted))
    ctypes = []
    for name in names:
        data = st.one_of(geometry, st.none()) if name == "geometry" else st.one_of(arrays, st.none())
        ctypes.append(
            DcsCtype(name, draw(ranges(data)), draw(metas), draw(st.one_of(st.none(), st.just(name))))
        )
    opt = st.one_of(st.none(), text)
    detector = DcsDetector(
        draw(text), draw(opt), draw(opt), draw(st.one_of(st.none(), times)), draw(opt), draw(opt)
    )
    return DcsStore(detector, tuple(ctypes), draw(metas))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(store=stores())
def test_read_of_write_is_the_same(tmp_path: Path, store: DcsStore) -> None:
    path = tmp_path / "det-1.h5"
    write_dcs(path, store)
    again = read_dcs(path)
    assert again.skipped == ()
    assert again.store == store
    for ctype in store.ctypes:
        other = again.store.ctype(ctype.name)
        assert other is not None
        for rng in ctype.ranges:
            for t in (rng.begin, rng.end):
                if t is None:
                    continue
                a, b = find_range(ctype, seconds_to_ns(t)), find_range(other, seconds_to_ns(t))
                assert a is not None and b is not None and a.key == b.key
                assert (pick_version(a) or None) == (pick_version(b) or None)
                assert range_group_name(a.begin, a.end) == a.key
