"""``--since T`` fetches exactly what lookups at or after T can return, checked against the lookup.

For random ranges, versions (production times with ties), pinned and unpinned defaults and a random
T, the payloads :func:`dcsync.repo.reach.objects_for` sends under ``{"since": T}`` must be the payloads
``Repository.locate`` (the rule behind ``get``) answers at some time >= T. The answer only changes
where a range begins or ends, so asking at T, at every begin and end after T, and just before each
of them is exhaustive.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings

from dcsync.errors import NoValidConstant
from dcsync.model.hashing import ObjectId
from dcsync.model.times import NS
from dcsync.repo.reach import objects_for
from dcsync.repo.repository import Repository

CTYPES = ("pedestals", "pixel_status")


@dataclass(frozen=True)
class Version:
    ctype: str
    range: int  # index into the ranges
    tsprod: int
    pin: bool  # make_default


ranges_st = st.lists(
    st.tuples(st.integers(0, 12), st.one_of(st.none(), st.integers(1, 6))),  # begin, length or open
    min_size=1,
    max_size=6,
    unique=True,
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[int, int | None]], list[Version], set[int], int]:
    ranges = [(b * NS, None if n is None else (b + n) * NS) for b, n in draw(ranges_st)]
    versions = draw(
        st.lists(
            st.builds(
                Version,
                st.sampled_from(CTYPES),
                st.integers(0, len(ranges) - 1),
                st.integers(0, 3),  # few production times: ties happen
                st.booleans(),
            ),
            min_size=1,
            max_size=10,
        )
    )
    unpinned = draw(st.sets(st.integers(0, len(ranges) - 1)))
    since = draw(st.integers(-1, 20)) * NS + draw(st.sampled_from([0, 1, NS // 2]))
    return ranges, versions, unpinned, since


def build(ranges: list[tuple[int, int | None]], versions: list[Version], unpinned: set[int]) -> Repository:
    repo = Repository.create(None, "epix100a-0001")
    with repo.transaction("history") as tx:
        for i, v in enumerate(versions):
            begin, end = ranges[v.range]
            tx.add(
                v.ctype,
                np.array([i], np.int32),
                begin_ns=begin,
                end_ns=end,
                tsprod_ns=v.tsprod,
                make_default=v.pin,
            )
    unpin = [
        (ctype, key)
        for ctype in repo.ctypes()
        for key, tree in repo.ranges(ctype)
        if (tree.begin, tree.end) in [ranges[i] for i in unpinned]
    ]
    if unpin:
        with repo.transaction("unpin") as tx:
            for ctype, key in unpin:
                tx.set_default(ctype, None, range=key)
    return repo


def answers(repo: Repository, since: int) -> set[ObjectId]:
    """Every payload ``get`` returns at some time >= since, asked where the answer can change."""
    times = {since}
    for ctype in repo.ctypes():
        for _, tree in repo.ranges(ctype):
            for edge in (tree.begin, tree.end):
                if edge is not None and edge > since:
                    times |= {edge, edge - 1}
    out = set()
    for ctype in repo.ctypes():
        for t in sorted(times):
            with contextlib.suppress(NoValidConstant):  # no range holds t
                out.add(repo.locate(ctype, at_ns=t).entry.obj)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_since_fetches_exactly_what_lookups_at_or_after_it_return(
    case: tuple[list[tuple[int, int | None]], list[Version], set[int], int],
) -> None:
    ranges, versions, unpinned, since = case
    repo = build(ranges, versions, unpinned)
    head = repo.head()
    assert head is not None
    sent = {oid for oid, kind, _ in objects_for(repo.store, head, [], {"since": since}) if kind == "array"}
    assert sent == answers(repo, since)
    everything = {oid for oid, kind, _ in objects_for(repo.store, head, [], {}) if kind == "array"}
    assert len(everything) == len(versions)  # without the filter: every version, in history or not
