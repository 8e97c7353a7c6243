"""The repository's rules: lookup by time, defaults, version prefixes, removal with history kept,
parameters and links, input validation, and transactions (replay over another writer's commit,
nothing-changed commits). Most tests run on both backends: in memory and in an HDF5 file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dcsync.errors import (
    AmbiguousName,
    CtypeNotFound,
    InputError,
    InvalidName,
    InvalidTime,
    NoValidConstant,
    RangeNotFound,
    UsageError,
    VersionNotFound,
)
from dcsync.model.names import PSANA_CTYPES, range_key
from dcsync.repo.repository import Repository
from dcsync.repo.verify import verify_file

S = 10**9
T0 = 1_700_000_000 * S


def t(seconds: float) -> int:
    """A time ``seconds`` after T0."""
    return T0 + int(seconds * S)


def arr(marker: float, n: int = 4) -> np.ndarray:
    return np.full(n, marker, dtype=np.float64)


@pytest.fixture(params=["memory", "hdf5"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    path = None if request.param == "memory" else tmp_path / "epix-1.h5"
    r = Repository.create(path, "epix-1")
    yield r
    r.close()
    if path is not None:
        report = verify_file(path)
        assert report.ok, report.problems


def marker(repo: Repository, ctype: str, at: int) -> float:
    value = repo.get(ctype, at_ns=at).value
    assert isinstance(value, np.ndarray)
    return float(value[0])


# -- the lookup rule -----------------------------------------------------------------------------


def test_lookup_rule(repo: Repository) -> None:
    """Latest begin wins; on equal begins the narrower range; ends are exclusive; open end is widest."""
    with repo.transaction("ranges") as tx:
        tx.add("pedestals", arr(1), begin_ns=t(10), end_ns=None)  # A  [10, end)
        tx.add("pedestals", arr(2), begin_ns=t(20), end_ns=t(50))  # B  [20, 50)
        tx.add("pedestals", arr(3), begin_ns=t(20), end_ns=t(30))  # C  [20, 30)
        tx.add("pedestals", arr(4), begin_ns=t(40), end_ns=t(45))  # D  [40, 45)
        tx.add("pedestals", arr(5), begin_ns=t(60), end_ns=None)  # E  [60, end)
        tx.add("pedestals", arr(6), begin_ns=t(60), end_ns=t(70))  # F  [60, 70)
    expected = {
        10: 1,
        19.999: 1,
        20: 3,  # equal begin: C is narrower than B
        29.999999999: 3,
        30: 2,  # t == end of C is outside C
        39: 2,
        40: 4,  # latest begin
        44: 4,
        45: 2,
        49: 2,
        50: 1,
        59: 1,
        60: 6,  # equal begin: F is narrower than the open E
        69: 6,
        70: 5,
        10**6: 5,  # open end
    }
    for at, want in expected.items():
        assert marker(repo, "pedestals", t(at)) == want, at
    for before in (0, 9.999999999, -(10**6)):
        with pytest.raises(NoValidConstant):
            repo.get("pedestals", at_ns=t(before))


def test_end_is_exclusive_to_the_nanosecond(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=t(1))
    assert marker(repo, "pedestals", t(1) - 1) == 1
    with pytest.raises(NoValidConstant):
        repo.get("pedestals", at_ns=t(1))
    with pytest.raises(NoValidConstant):
        repo.get("pedestals", at_ns=t(0) - 1)


def test_get_returns_where_it_came_from(repo: Repository) -> None:
    with repo.transaction() as tx:
        loc = tx.add("pedestals", arr(7), begin_ns=t(0), end_ns=t(100), pars={"run": 3})
    c = repo.get("pedestals", at_ns=t(5))
    assert c.version == loc.version
    assert c.range == range_key(t(0), t(100)) == loc.range
    assert (c.begin, c.end) == (t(0), t(100))
    assert c.entry.pars == {"run": 3}
    assert c.entry.dtype == "<f8" and c.entry.shape == (4,)
    assert c.detname == "epix-1"
    assert c.pinned  # a fresh add pins itself by default
    assert repo.locate("pedestals", at_ns=t(5)).version == loc.version


def test_unknown_ctype_and_no_constant(repo: Repository) -> None:
    with pytest.raises(CtypeNotFound):
        repo.get("pedestals", at_ns=t(0))
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(10), end_ns=t(20))
    with pytest.raises(NoValidConstant):
        repo.get("pedestals", at_ns=t(25))
    with pytest.raises(CtypeNotFound):
        repo.get("pixel_gain", at_ns=t(15))
    with pytest.raises(KeyError):  # NotFound subclasses the builtin
        repo.get("pixel_gain", at_ns=t(15))


# -- defaults ------------------------------------------------------------------------------------


def test_default_pin_and_unpin(repo: Repository) -> None:
    with repo.transaction() as tx:
        v1 = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, tsprod_ns=t(1)).version
    with repo.transaction() as tx:
        v2 = tx.add("pedestals", arr(2), begin_ns=t(0), end_ns=None, tsprod_ns=t(2)).version
    rk = range_key(t(0), None)
    assert repo.get("pedestals", at_ns=t(5)).version == v2
    with repo.transaction("roll back to v1") as tx:
        tx.set_default("pedestals", v1)
    c = repo.get("pedestals", at_ns=t(5))
    assert (c.version, c.pinned) == (v1, True)
    # a version produced *earlier* than the newest, added unpinned, does not change the answer
    with repo.transaction() as tx:
        tx.add("pedestals", arr(0), begin_ns=t(0), end_ns=None, tsprod_ns=t(0.5), make_default=False)
    assert repo.get("pedestals", at_ns=t(5)).version == v1
    with repo.transaction("unpin") as tx:
        tx.set_default("pedestals", None, range=rk)
    c = repo.get("pedestals", at_ns=t(5))
    assert (c.version, c.pinned) == (v2, False)  # the most recently produced counts again
    assert dict(repo.ranges("pedestals"))[rk].default is None
    with pytest.raises(RangeNotFound), repo.transaction() as tx:
        tx.set_default("pedestals", None)  # unpinning needs the range


def test_make_default_false_keeps_the_old_effective_version(repo: Repository) -> None:
    with repo.transaction() as tx:
        v1 = tx.add(
            "pedestals", arr(1), begin_ns=t(0), end_ns=None, tsprod_ns=t(1), make_default=False
        ).version
    assert repo.get("pedestals", at_ns=t(5)).version == v1  # the only version counts
    with repo.transaction() as tx:
        v2 = tx.add(
            "pedestals", arr(2), begin_ns=t(0), end_ns=None, tsprod_ns=t(2), make_default=False
        ).version
    assert repo.get("pedestals", at_ns=t(5)).version == v1
    assert repo.get("pedestals", at_ns=t(5), version=v2).version == v2  # but it is there
    with repo.transaction() as tx:
        tx.set_default("pedestals", v2)
    with repo.transaction() as tx:
        tx.add("pedestals", arr(3), begin_ns=t(0), end_ns=None, tsprod_ns=t(3), make_default=False)
    assert repo.get("pedestals", at_ns=t(5)).version == v2  # a pinned default stays pinned


def test_set_default_of_unknown_version(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
    with pytest.raises(VersionNotFound), repo.transaction() as tx:
        tx.set_default("pedestals", "fffffffffffff")


# -- version prefixes ----------------------------------------------------------------------------


def test_version_prefix_resolution(repo: Repository) -> None:
    with repo.transaction("many") as tx:
        # 17 keys over 16 first hex digits: at least two share a first digit
        keys = [
            tx.add("pedestals", arr(i), begin_ns=t(0), end_ns=None, tsprod_ns=t(i)).version for i in range(17)
        ]
    by_first = {d: [k for k in keys if k[0] == d] for d in "0123456789abcdef"}
    shared = next(d for d, ks in by_first.items() if len(ks) > 1)
    with pytest.raises(AmbiguousName, match="ambiguous"):
        repo.find_version("pedestals", shared)
    with pytest.raises(AmbiguousName):
        repo.get("pedestals", version=shared)
    for i, key in enumerate(keys):
        unique = next(
            key[:n] for n in range(1, len(key) + 1) if sum(k.startswith(key[:n]) for k in keys) == 1
        )
        assert repo.find_version("pedestals", unique).version == key
        got = repo.get("pedestals", version=unique)
        assert got.version == key
        assert float(got.value[0]) == i  # type: ignore[index]
        assert repo.find_version("pedestals", key).version == key  # the full key, of course
    absent = next(
        "".join(p)
        for p in itertools.product("0123456789abcdef", repeat=3)
        if not any(k.startswith("".join(p)) for k in keys)
    )
    with pytest.raises(VersionNotFound):
        repo.find_version("pedestals", absent)
    with pytest.raises(VersionNotFound):
        repo.get("pedestals", version="not-hex")
    with pytest.raises(KeyError):
        repo.find_version("pedestals", absent)
    # the same rules inside a transaction
    with pytest.raises(AmbiguousName), repo.transaction() as tx:
        tx.set_default("pedestals", shared)
    with pytest.raises(VersionNotFound), repo.transaction() as tx:
        tx.remove("pedestals", version=absent)


def test_version_lookup_in_a_range(repo: Repository) -> None:
    with repo.transaction() as tx:
        a = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=t(10)).version
        b = tx.add("pedestals", arr(2), begin_ns=t(10), end_ns=t(20)).version
    assert repo.find_version("pedestals", a).range == range_key(t(0), t(10))
    assert repo.find_version("pedestals", b, range=range_key(t(10), t(20))).version == b
    with pytest.raises(VersionNotFound):
        repo.find_version("pedestals", a, range=range_key(t(10), t(20)))
    with pytest.raises(RangeNotFound):
        repo.find_range("pedestals", "999")
    # get(at, version): the version must be in the range valid at that time
    assert repo.get("pedestals", at_ns=t(5), version=a).version == a
    with pytest.raises(VersionNotFound):
        repo.get("pedestals", at_ns=t(15), version=a)


# -- removal -------------------------------------------------------------------------------------


def test_remove_version_range_and_ctype_keeps_history(repo: Repository) -> None:
    with repo.transaction("add") as tx:
        v1 = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, tsprod_ns=t(1)).version
        v2 = tx.add("pedestals", arr(2), begin_ns=t(0), end_ns=None, tsprod_ns=t(2)).version
        r2 = tx.add("pedestals", arr(3), begin_ns=t(100), end_ns=t(200)).version
        tx.add("geometry", "geo", begin_ns=t(0), end_ns=None)
    added = repo.head()
    assert added is not None
    assert repo.get("pedestals", at_ns=t(5)).version == v2

    with repo.transaction("rm v2") as tx:
        assert tx.remove("pedestals", version=v2) == [f"pedestals {range_key(t(0), None)} {v2}"]
    assert repo.get("pedestals", at_ns=t(5)).version == v1  # the pinned default went with it
    with pytest.raises(VersionNotFound):
        repo.get("pedestals", version=v2)

    with repo.transaction("rm range") as tx:
        tx.remove("pedestals", range=range_key(t(100), t(200)))
    assert marker(repo, "pedestals", t(150)) == 1  # the open range shows through again
    assert [k for k, _ in repo.ranges("pedestals")] == [range_key(t(0), None)]

    with repo.transaction("rm ctype") as tx:
        tx.remove("geometry")
    assert repo.ctypes() == ["pedestals"]
    with pytest.raises(CtypeNotFound):
        repo.get("geometry", at_ns=t(5))

    with repo.transaction("rm last version") as tx:
        tx.remove("pedestals", version=v1)
    assert repo.ctypes() == []  # an empty range is pruned, and so is an empty ctype

    # Nothing is lost: the commit that added them still resolves, payloads included.
    old_root = repo.root(added)
    assert set(old_root.ctypes) == {"pedestals", "geometry"}
    ct = repo.ctype_tree("pedestals", old_root)
    for rkey, ref in ct.ranges.items():
        tree = repo.range_tree(ref)
        for vkey, entry in tree.versions.items():
            value = repo.store.read_payload(entry.obj)
            assert isinstance(value, np.ndarray)
            assert float(value[0]) == {v1: 1, v2: 2, r2: 3}[vkey], rkey
    geo = repo.range_tree(next(iter(repo.ctype_tree("geometry", old_root).ranges.values())))
    assert repo.store.read_payload(next(iter(geo.versions.values())).obj) == "geo"
    messages = [c.message for _, c in repo.commits()]
    assert messages[:5] == ["rm last version", "rm ctype", "rm range", "rm v2", "add"]


def test_remove_what_does_not_exist(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
    with pytest.raises(CtypeNotFound), repo.transaction() as tx:
        tx.remove("pixel_gain")
    with pytest.raises(RangeNotFound), repo.transaction() as tx:
        tx.remove("pedestals", range="12345")
    with pytest.raises(VersionNotFound), repo.transaction() as tx:
        tx.remove("pedestals", version="ffffffffffff")
    assert len(list(repo.commits())) == 2


def test_failed_operation_commits_nothing(repo: Repository) -> None:
    head = repo.head()
    with pytest.raises(VersionNotFound), repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
        tx.remove("pedestals", version="000000000000")
    assert repo.head() == head
    assert repo.ctypes() == []


def test_error_inside_the_with_block_commits_nothing(repo: Repository) -> None:
    head = repo.head()
    with pytest.raises(ZeroDivisionError), repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
        _ = 1 / 0
    assert repo.head() == head
    assert len(repo.log()) == 1


# -- parameters and links ------------------------------------------------------------------------


def test_parameters_on_every_level(repo: Repository) -> None:
    rk = range_key(t(0), None)
    with repo.transaction() as tx:
        v = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, pars={"run": 12, "gain": 1.5}).version
    with repo.transaction("pars") as tx:
        tx.set_pars({"site": "xpp", "n": 3})
        tx.set_pars({"units": "adu", "ok": True}, ctype="pedestals")
        tx.set_pars({"quality": "good"}, ctype="pedestals", range=rk)
        tx.set_pars({"run": 13, "comment": "re-run"}, ctype="pedestals", version=v)
    assert repo.root().pars == {"site": "xpp", "n": 3}
    assert repo.ctype_tree("pedestals").pars == {"units": "adu", "ok": True}
    assert dict(repo.ranges("pedestals"))[rk].pars == {"quality": "good"}
    assert repo.get("pedestals", at_ns=t(1)).entry.pars == {"run": 13, "gain": 1.5, "comment": "re-run"}
    with repo.transaction("delete some") as tx:
        tx.set_pars({"n": None})
        tx.set_pars({"gain": None}, ctype="pedestals", version=v)
    assert repo.root().pars == {"site": "xpp"}
    assert repo.get("pedestals", at_ns=t(1)).entry.pars == {"run": 13, "comment": "re-run"}
    # a ctype may carry parameters before it has constants
    with repo.transaction() as tx:
        tx.set_pars({"note": "coming soon"}, ctype="pixel_gain")
    assert repo.ctype_tree("pixel_gain").pars == {"note": "coming soon"}


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, None, b"bytes", np.float64(1.0).tobytes()])
def test_bad_parameter_values(repo: Repository, bad: object) -> None:
    with pytest.raises((InputError, TypeError)), repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, pars={"x": bad})  # type: ignore[dict-item]


@pytest.mark.parametrize("key", ["", "a b", "a/b", "1abc", "x\n"])
def test_bad_parameter_names(repo: Repository, key: str) -> None:
    with pytest.raises(InvalidName), repo.transaction() as tx:
        tx.set_pars({key: 1})


def test_predecessor_and_successor(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "epix-2.h5", "epix-2", predecessor="epix-1")
    assert (repo.root().predecessor, repo.root().successor) == ("epix-1", "")
    with repo.transaction("hardware swap") as tx:
        tx.set_links(successor="epix-3")
    assert (repo.root().predecessor, repo.root().successor) == ("epix-1", "epix-3")
    with repo.transaction() as tx:
        tx.set_links(predecessor="")
    assert (repo.root().predecessor, repo.root().successor) == ("", "epix-3")
    with pytest.raises(InvalidName), repo.transaction() as tx:
        tx.set_links(successor="../epix-4")
    with pytest.raises(InvalidName):
        Repository.create(None, "epix-5", predecessor="EPIX-4")
    repo.close()


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    ["Pedestals", "PEDESTALS", "a/b", "../pedestals", "..", "ped.stals", "", "1abc", "ped stals", "a\n"],
)
def test_invalid_ctype_names(repo: Repository, ctype: str) -> None:
    with pytest.raises(InvalidName), repo.transaction() as tx:
        tx.add(ctype, arr(1), begin_ns=t(0), end_ns=None)
    with pytest.raises(InvalidName), repo.transaction() as tx:
        tx.set_pars({"a": 1}, ctype=ctype)
    assert repo.ctypes() == []


@pytest.mark.parametrize(
    "detname",
    ["EPIX-1", "epix", "epix/1", "epix-1/..", "../epix-1", "epix-..", "epix-1\n", "", "-1", "epix_1"],
)
def test_invalid_detector_names(tmp_path: Path, detname: str) -> None:
    with pytest.raises(InvalidName):
        Repository.create(tmp_path / "x.h5", detname)
    with pytest.raises(InvalidName):
        Repository.create(None, detname)
    assert list(tmp_path.iterdir()) == []


def test_a_misspelled_ctype_is_refused_with_the_close_match(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
    for mistake, meant in (
        ("pedestal", "pedestals"),
        ("pixel_stauts", "pixel_status"),
        ("geomtry", "geometry"),
    ):
        with pytest.raises(UsageError) as info, repo.transaction() as tx:
            tx.add(mistake, arr(2), begin_ns=t(1), end_ns=None)
        assert type(info.value) is UsageError  # not an InvalidName: the name is well formed
        text = str(info.value)
        assert f"{mistake!r}" in text and f"did you mean {meant!r}" in text and "new_ctype=True" in text
        assert "epix-1" in text
    with pytest.raises(UsageError, match="did you mean"), repo.transaction() as tx:
        tx.set_pars({"a": 1}, ctype="pedestal")  # parameters on a ctype create it too
    with pytest.raises(UsageError) as far, repo.transaction() as tx:
        tx.add("zzzz", arr(2), begin_ns=t(1), end_ns=None)
    assert "did you mean" not in str(far.value)  # nothing close: no guess
    assert repo.ctypes() == ["pedestals"]
    assert marker(repo, "pedestals", t(1)) == 1


def test_new_ctype_is_explicit_and_then_known(repo: Repository) -> None:
    for ctype in PSANA_CTYPES:  # every ctype psana knows needs no flag
        with repo.transaction() as tx:
            tx.add(
                ctype,
                "IP 0 CAMERA 0 0 0 0 0 0 0 0 0 0\n" if ctype == "geometry" else arr(1),
                begin_ns=t(0),
                end_ns=None,
            )
    with repo.transaction() as tx:
        tx.add("dark_current", arr(3), begin_ns=t(0), end_ns=None, new_ctype=True)
        tx.add(
            "dark_current", arr(4), begin_ns=t(5), end_ns=None
        )  # created earlier in this transaction: known
    with repo.transaction() as tx:
        tx.add("dark_current", arr(5), begin_ns=t(9), end_ns=None)  # in the detector now: known
        tx.set_pars({"mode": "fast"}, ctype="dark_current")
    with repo.transaction() as tx:
        tx.set_pars({"units": "adu"}, ctype="dark_rms", new_ctype=True)
    assert {"dark_current", "dark_rms"} <= set(repo.ctypes())
    assert marker(repo, "dark_current", t(10)) == 5
    # removed in this transaction: adding it again is starting it anew
    with pytest.raises(UsageError, match="'dark_current'"), repo.transaction() as tx:
        tx.remove("dark_current")
        tx.add("dark_current", arr(6), begin_ns=t(0), end_ns=None)
    assert marker(repo, "dark_current", t(10)) == 5


def test_end_not_after_begin_is_invalid_time(repo: Repository) -> None:
    for end in (t(0), t(-1)):
        with pytest.raises(InvalidTime), repo.transaction() as tx:
            tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=end)
    assert repo.ctypes() == []


def test_bad_payloads(repo: Repository) -> None:
    with pytest.raises(InputError), repo.transaction() as tx:
        tx.add("pedestals", np.array(["a", "b"]), begin_ns=t(0), end_ns=None)
    with pytest.raises(InputError), repo.transaction() as tx:
        tx.add("pedestals", np.array([object()]), begin_ns=t(0), end_ns=None)
    with pytest.raises(InputError), repo.transaction() as tx:
        tx.add("geometry", "nul\0inside", begin_ns=t(0), end_ns=None)
    with pytest.raises(InputError, match="valid Unicode"), repo.transaction() as tx:
        tx.add("geometry", "lone \ud800 surrogate", begin_ns=t(0), end_ns=None)
    assert repo.ctypes() == []


def test_an_author_with_a_nul_is_refused_before_anything_is_written(repo: Repository) -> None:
    # each version keeps its author as an HDF5 attribute, which cannot hold NUL: this once reached
    # the view writer as h5py's ValueError
    with pytest.raises(InputError, match="author"):
        repo.transaction(author="a\0b")
    assert repo.ctypes() == []


# -- transactions --------------------------------------------------------------------------------


def test_nothing_changed_returns_none(repo: Repository) -> None:
    head = repo.head()
    log = len(repo.log())
    with repo.transaction("empty") as tx:
        pass
    assert tx.commit_id is None
    assert repo.transaction("empty").commit() is None
    with repo.transaction() as tx:
        v = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, pars={"a": 1}).version
    head = repo.head()
    log = len(repo.log())
    for change in (
        lambda tx: tx.set_default("pedestals", v),  # already the pinned default
        lambda tx: tx.set_pars({"a": 1}, ctype="pedestals", version=v),  # same value
        lambda tx: tx.set_pars({"missing": None}),  # deleting a key that is not there
        lambda tx: tx.set_links(predecessor=""),
    ):
        tx = repo.transaction("no-op")
        change(tx)
        assert tx.commit() is None
    assert repo.head() == head
    assert len(repo.log()) == log


def test_a_transaction_is_one_commit(repo: Repository) -> None:
    before = len(list(repo.commits()))
    with repo.transaction("three things", author="alice") as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
        tx.add("pixel_gain", arr(2), begin_ns=t(0), end_ns=None)
        tx.set_pars({"x": 1})
    cid = tx.commit_id
    assert cid is not None and repo.head() == cid
    commits = list(repo.commits())
    assert len(commits) == before + 1
    commit = repo.commit()
    assert commit.message == "three things"
    assert commit.author == "alice"
    record = repo.log()[-1]
    assert (record.new, record.command, record.message) == (cid, "commit", "three things")


def test_default_message_summarises(repo: Repository) -> None:
    with repo.transaction() as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
    assert repo.commit().message.startswith("add pedestals")


def test_replay_over_another_writers_commit(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    Repository.create(path, "epix-1").close()
    one, two = Repository.open(path), Repository.open(path)
    with one.transaction("base") as tx:
        base_v = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None, tsprod_ns=t(1)).version

    slow = two.transaction("slow writer")  # started on the base commit
    slow_v = slow.add("pixel_gain", arr(10), begin_ns=t(0), end_ns=None).version
    slow.set_default("pedestals", base_v)
    slow.set_pars({"from": "slow"}, ctype="pedestals")

    with one.transaction("fast writer") as tx:  # commits in between
        fast_v = tx.add("pedestals", arr(2), begin_ns=t(0), end_ns=None, tsprod_ns=t(2)).version
        tx.add("geometry", "fast geometry", begin_ns=t(0), end_ns=None)
    fast_head = one.head()

    cid = slow.commit()
    assert cid is not None
    for repo in (one, two):
        assert repo.head() == cid
        assert repo.commit().parents == (fast_head,)  # replayed on top, nothing lost
        assert set(repo.ctypes()) == {"pedestals", "pixel_gain", "geometry"}
        assert repo.get("pixel_gain", at_ns=t(1)).version == slow_v
        assert repo.get("geometry", at_ns=t(1)).value == "fast geometry"
        # both versions exist; the slow writer's explicit pin (replayed last) wins
        assert set(dict(repo.ranges("pedestals"))[range_key(t(0), None)].versions) == {base_v, fast_v}
        assert repo.get("pedestals", at_ns=t(1)).version == base_v
        assert repo.ctype_tree("pedestals").pars == {"from": "slow"}
    messages = [c.message for _, c in one.commits()]
    assert messages[:3] == ["slow writer", "fast writer", "base"]
    one.close()
    two.close()
    assert verify_file(path).ok


def test_replay_that_no_longer_applies_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    with Repository.create(path, "epix-1") as repo, repo.transaction() as tx:
        v = tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None).version
        tx.add("pedestals", arr(2), begin_ns=t(0), end_ns=None)
    one, two = Repository.open(path), Repository.open(path)
    slow = two.transaction("pin v")
    slow.set_default("pedestals", v)
    with one.transaction("remove v") as tx:
        tx.remove("pedestals", version=v)
    head = one.head()
    with pytest.raises(VersionNotFound):
        slow.commit()
    assert two.head() == head
    one.close()
    two.close()
    assert verify_file(path).ok


def test_two_handles_see_each_others_commits(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    Repository.create(path, "epix-1").close()
    one, two = Repository.open(path), Repository.open(path)
    for i in range(5):
        writer, reader = (one, two) if i % 2 else (two, one)
        with writer.transaction(f"commit {i}") as tx:
            tx.add("pedestals", arr(i), begin_ns=t(i), end_ns=None)
        assert reader.head() == writer.head()
        assert marker(reader, "pedestals", t(i)) == i
        assert reader.store.has(writer.get("pedestals", at_ns=t(i)).obj)
    one.close()
    two.close()


def test_log_records_every_move(repo: Repository) -> None:
    with repo.transaction("a") as tx:
        tx.add("pedestals", arr(1), begin_ns=t(0), end_ns=None)
    with repo.transaction("b") as tx:
        tx.add("pedestals", arr(2), begin_ns=t(0), end_ns=None)
    log = repo.log()
    assert [r.command for r in log] == ["create", "commit", "commit"]
    assert [r.message for r in log[1:]] == ["a", "b"]
    assert log[0].old is None
    assert all(later.old == earlier.new for earlier, later in itertools.pairwise(log))
    assert log[-1].new == repo.head()
    assert repo.log(last=1) == log[-1:]


def test_verify_file_takes_a_path_as_text(tmp_path: Path) -> None:
    repo = Repository.create(tmp_path / "epix100a-0001.h5", "epix100a-0001")
    with repo.transaction("first") as tx:
        tx.add("pedestals", np.zeros((2, 2), np.float32), begin_ns=t(0))
    repo.close()
    assert verify_file(str(tmp_path / "epix100a-0001.h5")).ok  # it raised AttributeError
