"""psana's run finder: hand-checked folders, names psana skips, a brute-force property test, and
psana's own answers recorded from its code (tests/legacy/make_psana_finder_cases.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcsync.errors import UsageError
from dcsync.legacy.finder import (
    RUN_MAX,
    RunRange,
    Skipped,
    data_name,
    parse_data_name,
    select_calib_file,
    select_run_range,
)

FOLDER = [
    "0-end.data",
    "10-20.data",
    "15-end.data",
    "15-17.data",
    "12345-end.data",  # begin above 9999: psana cannot use it
    "a-b.data",
    "15-17.data-2020-01-01T00:00:00",  # a backup
    "16-16.txt",
    "HISTORY",
]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (0, "0-end.data"),
        (9, "0-end.data"),
        (10, "10-20.data"),
        (14, "10-20.data"),
        (15, "15-17.data"),  # equal begins: the smaller end
        (16, "15-17.data"),  # not the .txt, not the backup
        (17, "15-17.data"),
        (18, "15-end.data"),  # 10-20 still contains 18, but 15 is the larger begin
        (20, "15-end.data"),
        (9999, "15-end.data"),
        (12345, "15-end.data"),  # looked up as 9999; 12345-end.data is no file to psana
    ],
)
def test_hand_checked_folder(run: int, expected: str) -> None:
    assert select_calib_file(FOLDER, run) == expected


def test_overlaps_and_gaps() -> None:
    names = ["5-10.data", "8-12.data", "20-30.data"]
    picks = {run: select_calib_file(names, run) for run in range(0, 35)}
    gaps = set(range(0, 5)) | set(range(13, 20)) | set(range(31, 35))
    assert {r for r, p in picks.items() if p is None} == gaps
    assert [picks[r] for r in (5, 7, 8, 10, 12, 20, 30)] == [
        "5-10.data", "5-10.data", "8-12.data", "8-12.data", "8-12.data", "20-30.data", "20-30.data",
    ]  # fmt: skip


def test_run_above_9999_is_looked_up_as_9999_only_in_the_folder() -> None:
    assert select_calib_file(["20-9999.data"], 10_000) == "20-9999.data"
    assert select_calib_file(["20-9998.data"], 10_000) is None
    # The rule over ranges has no limit: dcsync's own run ranges may go past 9999.
    assert select_run_range([(20, 9999)], 10_000) is None
    assert select_run_range([(20, 9999), (10_000, None)], 10_000) == 1
    assert select_run_range([(20, None), (20, 50_000)], 40_000) == 1  # open end is wider than any


def test_end_counts_as_9999_so_a_tie_goes_by_order_as_in_psana() -> None:
    # psana sorts stably and searches backwards: of two names of one range, the later one wins.
    assert select_calib_file(["5-9999.data", "5-end.data"], 7) == "5-end.data"
    assert select_calib_file(["5-end.data", "5-9999.data"], 7) == "5-9999.data"
    assert select_calib_file(["05-10.data", "5-10.data"], 7) == "5-10.data"
    assert select_run_range([(5, 10), (5, 10)], 7) == 1


@pytest.mark.parametrize(
    ("name", "breaks_psana"),
    [
        ("5-10.data-2020-01-01T00:00:00", False),  # a backup
        ("a-b.data", False),
        ("12345-end.data", True),  # psana's Python finder raises on these three
        ("5-12345.data", True),
        ("5-x.data", True),
        ("5-10.txt", False),
        ("5-10.DATA", False),
        ("5-10-20.data", False),
        ("12.data", False),
        (".data", False),
        ("-5.data", False),
        ("10-5.data", False),  # a valid name to psana, but no run is in it
        ("\u00b2-5.data", False),  # not ASCII digits
        ("HISTORY", False),
    ],
)
def test_names_psana_skips(name: str, breaks_psana: bool) -> None:
    parsed = parse_data_name(name)
    assert isinstance(parsed, Skipped), parsed
    assert parsed.reason
    assert parsed.breaks_psana is breaks_psana
    assert select_calib_file([name], 7) is None


def test_names_psana_reads() -> None:
    assert parse_data_name("0005-end.data") == RunRange(5, None)
    assert parse_data_name("9999-9999.data") == RunRange(9999, 9999)
    assert parse_data_name("137-end.data") == RunRange(137, None)
    assert data_name(RunRange(137, None)) == "137-end.data"
    assert data_name(RunRange(3, 8)) == "3-8.data"
    with pytest.raises(UsageError, match="9999"):
        data_name(RunRange(10_000, None))


@pytest.mark.parametrize("run", [-1, True, 1.5, "3"])
def test_a_bad_run_is_the_callers_mistake(run: object) -> None:
    with pytest.raises(UsageError, match="run"):
        select_calib_file(["0-end.data"], run)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="run"):
        select_run_range([(0, None)], run)  # type: ignore[arg-type]


def test_a_bad_range_is_refused() -> None:
    with pytest.raises(UsageError):
        RunRange(5, 4)
    with pytest.raises(UsageError):
        RunRange(-1, None)


# --- the rule, stated again by brute force --------------------------------------------------------

_VALID = re.compile(r"([0-9]+)-([0-9]+|end)\.data")


def brute_force(names: list[str], run: int) -> str | None:
    """The documented rule, independently: parse by regex, keep what contains min(run, 9999), take
    the largest begin, then the smallest end, then the last given."""
    lookup = min(run, 9999)
    found = []
    for index, name in enumerate(names):
        m = _VALID.fullmatch(name)
        if not m:
            continue
        begin = int(m[1])
        end = 9999 if m[2] == "end" else int(m[2])
        if begin <= 9999 and end <= 9999 and begin <= lookup <= end:
            found.append((begin, -end, index, name))
    return max(found)[3] if found else None


_number = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["9999", "10000", "007", "", "x"]))
_name = st.one_of(
    st.builds(lambda b, e: f"{b}-{e}.data", _number, st.one_of(_number, st.just("end"))),
    st.builds(lambda b, e: f"{b}-{e}.data-2021-02-03T04:05:06", _number, _number),
    st.sampled_from(["HISTORY", "1-5.txt", "1-2-3.data", "7.data", "5-end.dat"]),
)


@settings(max_examples=400, deadline=None)
@given(names=st.lists(_name, max_size=10), run=st.one_of(st.integers(0, 45), st.integers(9990, 20_000)))
def test_finder_matches_the_brute_force_rule(names: list[str], run: int) -> None:
    assert select_calib_file(names, run) == brute_force(names, run)


# --- psana's own answers ------------------------------------------------------------------------

CASES = json.loads((Path(__file__).parent / "data" / "psana_finder_cases.json").read_text())


def test_recorded_cases_are_there() -> None:
    cases = CASES["cases"]
    assert len(cases) >= 100
    assert sum("picks" in c for c in cases) >= 50
    assert any("raises" in c for c in cases)


@pytest.mark.parametrize("index", range(len(CASES["cases"])))
def test_finder_matches_psana(index: int) -> None:
    case = CASES["cases"][index]
    names = case["names"]
    breaking = [n for n in names if isinstance(p := parse_data_name(n), Skipped) and p.breaks_psana]
    if "raises" in case:  # psana fails on this folder; dcsync must know which names do that
        assert breaking, (names, case["raises"])
        return
    assert not breaking, names
    for run, pick in case["picks"]:
        assert select_calib_file(names, run) == pick, (names, run)
    assert RUN_MAX == 9999
