"""One rule for times at every API entry point: the command line's forms (ISO 8601 text, "now", a
datetime, unix seconds), nanoseconds only through parameters named for them, and a bad time a
usage error naming the value. Also: a caller's mistake never reads as file corruption.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dcsync
from dcsync import sync
from dcsync.errors import CorruptObject, InvalidTime, UsageError
from dcsync.facade import DCStore
from dcsync.model.times import NS, format_time, now_ns
from dcsync.repo.repository import Repository
from dcsync.sync.promote import promote
from dcsync.workspace import config
from dcsync.workspace.workspace import Workspace

DET = "epix100a-1"
JAN_1 = 1_704_067_200  # 2024-01-01T00:00:00Z in unix seconds
JAN_1_NS = JAN_1 * NS
JUN_1_NS = 1_717_200_000 * NS  # 2024-06-01T00:00:00Z
VALUE = np.arange(6, dtype=np.float32).reshape(2, 3)

# Every form a user may write 2024-01-01T00:00:00Z in.
JAN_1_FORMS: list[Any] = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T01:00:00+01:00",
    "2024-01-01",
    " 1704067200 ",
    dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1),  # naive: UTC
    dt.datetime(2023, 12, 31, 19, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    dt.date(2024, 1, 1),
    JAN_1,
    float(JAN_1),
    np.int64(JAN_1),
]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "calib", "local")
    ws.new_detector(DET).close()
    return ws


@pytest.fixture
def repo(ws: Workspace) -> Repository:
    with ws.repository(DET) as repo:
        yield repo  # type: ignore[misc]


def test_unix_seconds_to_add_mean_seconds_not_a_range_in_1970(repo: Repository) -> None:
    with repo.transaction("dark run") as tx:
        loc = tx.add("pedestals", VALUE, begin=JAN_1)
    assert loc.tree.begin == JAN_1_NS
    assert loc.range == "1704067200-end"
    got = repo.get("pedestals", at="2024-06-01")
    assert format_time(got.begin) == "2024-01-01T00:00:00Z"
    with pytest.raises(dcsync.DcsyncError):  # nothing was made valid in 1970
        repo.get("pedestals", at=10)


@pytest.mark.parametrize("form", JAN_1_FORMS, ids=repr)
def test_every_form_means_the_same_time_everywhere(repo: Repository, form: Any) -> None:
    with repo.transaction("t") as tx:
        loc = tx.add("pedestals", VALUE, begin=form, end="2024-02-01", tsprod=form)
    assert (loc.tree.begin, loc.tree.end, loc.entry.tsprod) == (JAN_1_NS, 1_706_745_600 * NS, JAN_1_NS)
    assert repo.get("pedestals", at=form).version == loc.version
    assert repo.locate("pedestals", form).version == loc.version
    cs = DCStore(repo.store.where)
    try:
        np.testing.assert_array_equal(cs.get("pedestals", form), VALUE)
    finally:
        cs.close()


def test_fractions_and_now(repo: Repository) -> None:
    with repo.transaction("t") as tx:
        half = tx.add("pedestals", VALUE, begin=JAN_1 + 0.5, end="2024-01-01T00:00:01.000000001Z")
        before = now_ns()
        recent = tx.add("pixel_status", VALUE, begin="now")
    assert (half.tree.begin, half.tree.end) == (JAN_1_NS + NS // 2, JAN_1_NS + NS + 1)
    assert before <= recent.tree.begin <= now_ns()
    assert repo.get("pixel_status", at="now").version == recent.version


def test_nanoseconds_only_through_named_parameters(repo: Repository) -> None:
    with repo.transaction("t") as tx:
        loc = tx.add("pedestals", VALUE, begin_ns=JAN_1_NS + 1, end_ns=JUN_1_NS, tsprod_ns=JAN_1_NS + 7)
    assert (loc.tree.begin, loc.tree.end, loc.entry.tsprod) == (JAN_1_NS + 1, JUN_1_NS, JAN_1_NS + 7)
    assert repo.get("pedestals", at_ns=JAN_1_NS + 1).version == loc.version
    with pytest.raises(dcsync.DcsyncError):
        repo.get("pedestals", at_ns=JAN_1_NS)  # one nanosecond before the range
    assert repo.locate("pedestals", at_ns=JUN_1_NS - 1).version == loc.version


def test_nanoseconds_given_as_seconds_are_refused_with_the_way_out(repo: Repository) -> None:
    head = repo.head()
    with (
        pytest.raises(InvalidTime, match=r"begin=1704067200000000000.*begin_ns=") as err,
        repo.transaction("t") as tx,
    ):
        tx.add("pedestals", VALUE, begin=JAN_1_NS)
    assert err.value.exit_code == 2
    with pytest.raises(InvalidTime, match=r"at=1704067200000000000.*at_ns="):
        repo.get("pedestals", at=JAN_1_NS)
    assert repo.head() == head  # nothing was committed


@pytest.mark.parametrize(
    "bad", ["yesterday", "2024-13-01", "", [JAN_1], True, float("nan"), float("inf"), b"2024-01-01"], ids=repr
)
def test_a_bad_time_is_a_usage_error_naming_it(repo: Repository, bad: Any) -> None:
    with pytest.raises(InvalidTime) as err, repo.transaction("t") as tx:
        tx.add("pedestals", VALUE, begin=bad)
    assert repr(bad) in str(err.value) and "begin" in str(err.value)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    with pytest.raises(InvalidTime, match="at="):
        repo.get("pedestals", at=bad)


def test_both_forms_or_neither(repo: Repository) -> None:
    with pytest.raises(UsageError, match="begin= or begin_ns=, not both"), repo.transaction("t") as tx:
        tx.add("pedestals", VALUE, begin=JAN_1, begin_ns=JAN_1_NS)
    with pytest.raises(UsageError, match="needs a begin"), repo.transaction("t") as tx:
        tx.add("pedestals", VALUE)
    with pytest.raises(InvalidTime, match=r"begin_ns=1704067200\.5"), repo.transaction("t") as tx:
        tx.add("pedestals", VALUE, begin_ns=1704067200.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTime, match="at_ns='2024-01-01'"):
        repo.get("pedestals", at_ns="2024-01-01")  # type: ignore[arg-type]


def test_a_callers_mistake_is_not_file_corruption(repo: Repository) -> None:
    with repo.transaction("t") as tx:
        tx.add("pedestals", VALUE, begin="2024-01-01")
    assert repo.get("pedestals", at="2024-06-01").range == "1704067200-end"  # a string just works
    with pytest.raises(UsageError, match="version must be"):
        repo.get("pedestals", version=5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"ctype must be a name \(text\), not \['pedestals'\]"):
        repo.get(["pedestals"])  # type: ignore[arg-type]
    store = repo.store
    assert hasattr(store, "consistent")
    # A read that fails on its own terms, on a healthy file: the error passes through as it is.
    with pytest.raises(TypeError, match="unsupported operand") as err:
        store.consistent(lambda: repo.root().created + "x")
    assert not isinstance(err.value, CorruptObject)
    with pytest.raises(ValueError, match="invalid literal") as verr:
        store.consistent(lambda: int(repo.detname))
    assert not isinstance(verr.value, CorruptObject)


def test_clone_since_and_promote_at_take_the_same_forms(ws: Workspace, tmp_path: Path) -> None:
    with ws.repository(DET) as repo, repo.transaction("t") as tx:
        tx.add("pedestals", VALUE, begin="2024-01-01", end="2024-02-01")
        tx.add("pedestals", VALUE + 1, begin="2024-02-01")
    clone, _ = sync.clone(str(ws.root), tmp_path / "partial", since=dt.datetime(2024, 3, 1))
    assert config.remotes(clone)["origin"].since_ns == 1_709_251_200 * NS
    with pytest.raises(InvalidTime, match=r"since=1709251200000000000.*since_ns="):
        sync.clone(str(ws.root), tmp_path / "other", since=1_709_251_200 * NS)
    assert not (tmp_path / "other").exists()
    central = Workspace.init(tmp_path / "central", "repository")
    report = promote([DET], str(ws.root), str(central.root), at="2024-01-15")
    assert [p.range for p in report.picks] == ["1704067200-1706745600"]
    with pytest.raises(InvalidTime, match=r"at='mid-January'"):
        promote([DET], str(ws.root), str(central.root), at="mid-January")
