"""DCS files: the description, the reader, psana's lookup rule and the writer, checked against a
file psana's own code wrote and against what psana's own lookup picked in it (psana_dcs/)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcsync.legacy.dcs import (
    DcsCtype,
    DcsDetector,
    DcsMeta,
    DcsRange,
    DcsRecord,
    DcsStore,
    DcsVersion,
    find_range,
    pick_range,
    pick_version,
    range_group_name,
    seconds_to_ns,
)
from dcsync.legacy.dcsread import Skipped, read_dcs
from dcsync.legacy.dcswrite import write_dcs
from dcsync.model.times import parse_time

FIXTURES = Path(__file__).parent / "psana_dcs"
T0 = 1_600_000_000.0


@pytest.fixture
def psana_file(tmp_path: Path) -> Path:
    path = tmp_path / "cspad-654321.h5"
    shutil.copyfile(FIXTURES / "cspad-654321.h5", path)
    return path


def psana_lookup() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "psana-lookup.json").read_text()))


# -- reading what psana wrote ---------------------------------------------------------------------


def test_reads_the_file_psana_wrote(psana_file: Path) -> None:
    result = read_dcs(psana_file)
    assert result.skipped == ()
    store = result.store
    assert store.detector == DcsDetector("cspad", "654321", "cspad-654321", T0 - 100.5, "cspad-654320", None)
    assert dict(store.meta.pars) == {"str_par": "some text", "int_par": 42, "float_par": 2.5}
    assert store.meta.history == (
        DcsRecord(T0 - 100.25, "store created"),
        DcsRecord(T0 - 50.0, "second record"),
    )
    assert [c.name for c in store.ctypes] == ["geometry", "pedestals", "pixel_status"]
    ped = store.ctype("pedestals")
    assert ped is not None and ped.stored_name == "pedestals" and dict(ped.meta.pars) == {"units": "ADU"}
    spans = {(r.begin, r.end): r for r in ped.ranges}
    assert set(spans) == {(T0 + 0.25, None), (T0 + 100.5, T0 + 200.75), (T0 + 100.5, T0 + 150.0),
                          (T0 + 180.125, T0 + 300.0)}  # fmt: skip
    inner = spans[(T0 + 100.5, T0 + 200.75)]
    assert inner.name == "1600000100-1600000201" and inner.versdef == 2
    assert [v.number for v in inner.versions] == [1, 2, 5]
    v5 = inner.versions[2]
    assert v5.tsprod == T0 + 1005 and dict(v5.meta.pars) == {"gain": 7.5}
    assert isinstance(v5.data, np.ndarray) and v5.data.dtype == np.float32 and v5.data.shape == (2, 3)
    assert (v5.data == 15).all()
    status = store.ctype("pixel_status")
    assert status is not None
    data = status.ranges[0].versions[1].data
    assert isinstance(data, np.ndarray) and data.dtype == np.uint16
    geo = store.ctype("geometry")
    assert geo is not None
    assert geo.ranges[0].versions[0].data == "# TITLE test\nIP 0 CSPAD:V1 0 0 0 1000000 0 0 0 0 0 0\n"


def test_lookup_matches_psana_on_its_own_file(psana_file: Path) -> None:
    """Every probe time psana's DCType.range_for_tsec and DCRange.version() answered: the same
    range (by psana's key) and version, with times converted to ns as ``--at`` does."""
    store = read_dcs(psana_file).store
    expected = psana_lookup()
    assert sorted(expected) == [c.name for c in store.ctypes]
    checked = 0
    for ctype in store.ctypes:
        for t_text, key, vnum in expected[ctype.name]["picks"]:
            assert seconds_to_ns(float(t_text)) == parse_time(t_text)  # what `--at T` gives
            rng = find_range(ctype, parse_time(t_text))
            assert (None if rng is None else rng.key) == key, (ctype.name, t_text)
            version = None if rng is None else pick_version(rng)
            assert (None if version is None else version.number) == vnum, (ctype.name, t_text)
            checked += 1
        for where, value in expected[ctype.name]["versions"].items():
            key, number = where.rsplit("/", 1)
            rng = next(r for r in ctype.ranges if r.key == key)
            version = next(v for v in rng.versions if v.number == int(number))
            assert (
                version.data if isinstance(version.data, str) else np.asarray(version.data).tolist()
            ) == value
    assert checked == sum(len(e["picks"]) for e in expected.values()) >= 40


def test_a_query_at_a_stored_end_finds_its_range(psana_file: Path) -> None:
    ped = read_dcs(psana_file).store.ctype("pedestals")
    assert ped is not None
    narrow = next(r for r in ped.ranges if r.end == T0 + 150.0)
    assert find_range(ped, parse_time(repr(T0 + 150.0))) is narrow
    assert find_range(ped, parse_time(repr(T0 + 100.5))) is narrow  # equal begins: the narrower


def test_write_of_read_reads_back_equal(psana_file: Path, tmp_path: Path) -> None:
    first = read_dcs(psana_file).store
    out = tmp_path / "again.h5"
    write_dcs(out, first)
    assert read_dcs(out).store == first
    assert set(tmp_path.iterdir()) == {psana_file, out}  # no temporary file left behind


# -- psana's lookup rule, against a second reading of it ---------------------------------------------


def psana_scan(spans: list[tuple[float, float | None]], t: float) -> int | None:
    """DCType.range_for_tsec as written: sort by begin, on equal begins the open end, then the
    larger end, first; scan from the back for the first range with begin <= t <= end."""
    big = float("inf")
    order = sorted(
        range(len(spans)), key=lambda i: (spans[i][0], -(big if spans[i][1] is None else spans[i][1]))
    )
    for i in reversed(order):
        begin, end = spans[i]
        if begin <= t and (end is None or t <= end):
            return i
    return None


def test_pick_range_is_psanas_scan() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        spans: list[tuple[float, float | None]] = []
        keys = set()
        for _ in range(int(rng.integers(1, 8))):
            begin = float(rng.integers(0, 20))
            end = None if rng.random() < 0.3 else begin + float(rng.integers(0, 10))
            if range_group_name(begin, end) not in keys:  # psana merges ranges of one key
                keys.add(range_group_name(begin, end))
                spans.append((begin, end))
        for t in np.arange(-1, 32, 0.5):
            assert pick_range(spans, float(t)) == psana_scan(spans, float(t)), (spans, t)


def test_pick_version_pinned_missing_and_newest() -> None:
    def version(n: int) -> DcsVersion:
        return DcsVersion(n, None, np.zeros(1))

    def rng(versdef: int, numbers: tuple[int, ...]) -> DcsRange:
        return DcsRange(0.0, None, versdef, tuple(version(n) for n in numbers))

    assert pick_version(rng(0, (5, 1, 2))) == version(5)  # newest: the largest, not the last listed
    assert pick_version(rng(2, (1, 2, 5))) == version(2)
    assert pick_version(rng(3, (1, 2, 5))) == version(5)  # psana ignores a pin to nothing
    assert pick_version(rng(0, ())) is None


def test_seconds_to_ns_is_what_at_gives() -> None:
    for seconds in (T0 + 0.1, T0 + 1e-6, 1.25, 0.1, T0 + 200.75, -3.5):
        assert seconds_to_ns(seconds) == parse_time(repr(seconds))
    assert seconds_to_ns(0.1) == 100_000_000


# -- refusals -------------------------------------------------------------------------------------


def expect_refusal(path: Path, *fragments: str) -> str:
    from dcsync.errors import InputError

    with pytest.raises(InputError) as info:
        read_dcs(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def edit(path: Path, change: Any) -> Path:
    import h5py

    with h5py.File(path, "r+") as f:
        change(f)
    return path


def test_truncated_file_is_refused(psana_file: Path) -> None:
    data = psana_file.read_bytes()
    psana_file.write_bytes(data[: len(data) // 2])
    expect_refusal(psana_file)


def test_not_hdf5_and_missing_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "cspad-1.h5"
    text.write_text("hello\n")
    expect_refusal(text, "not a readable HDF5 file")
    expect_refusal(tmp_path / "absent.h5", "no such file")
    expect_refusal(tmp_path, "directory")


def test_root_without_dettype_is_not_dcs(psana_file: Path) -> None:
    edit(psana_file, lambda f: f.__delitem__("dettype"))
    expect_refusal(psana_file, "not a DCS file", "dettype")


def test_range_without_begin_is_refused(psana_file: Path) -> None:
    edit(psana_file, lambda f: f.__delitem__("pedestals/1600000100-1600000150/begin"))
    from dcsync.errors import InputError

    expect_refusal(psana_file, "/pedestals/1600000100-1600000150", "without its begin")
    with pytest.raises(InputError) as info:
        read_dcs(psana_file)
    assert info.value.details["hdf5_path"] == "/pedestals/1600000100-1600000150"


def test_text_where_a_number_belongs_is_refused(psana_file: Path) -> None:
    def change(f: Any) -> None:
        del f["pixel_status/1599999994-1600000051/versdef"]
        f["pixel_status/1599999994-1600000051"].create_dataset("versdef", data=np.array([b"two"]))

    edit(psana_file, change)
    expect_refusal(
        psana_file, "/pixel_status/1599999994-1600000051/versdef", "expected an integer, found text"
    )


def test_text_begin_is_refused(psana_file: Path) -> None:
    def change(f: Any) -> None:
        del f["geometry/1600000000-end/begin"]
        f["geometry/1600000000-end"].create_dataset("begin", data=np.array([b"1600000000"]))

    edit(psana_file, change)
    expect_refusal(psana_file, "/geometry/1600000000-end/begin", "float64")


def test_version_without_version_is_skipped_and_reported(psana_file: Path) -> None:
    where = "/pedestals/1600000100-1600000201/v0005"
    edit(psana_file, lambda f: f.__delitem__(where + "/version"))
    result = read_dcs(psana_file)
    assert result.skipped == (
        Skipped(where, "a version group without its version dataset (psana skips it too)"),
    )
    ped = result.store.ctype("pedestals")
    assert ped is not None
    inner = next(r for r in ped.ranges if r.name == "1600000100-1600000201")
    assert [v.number for v in inner.versions] == [1, 2]


def test_a_version_named_for_another_number_is_refused(psana_file: Path) -> None:
    edit(psana_file, lambda f: f.move("pedestals/1600000000-end/v0002", "pedestals/1600000000-end/v0009"))
    expect_refusal(psana_file, "/pedestals/1600000000-end/v0009", "holds version 2")


def test_ranges_psana_would_merge_are_refused(psana_file: Path) -> None:
    def change(f: Any) -> None:
        f.copy("pedestals/1600000100-1600000150", "pedestals/another")
        f["pedestals/another/begin"][0] = T0 + 100.75  # rounds to the same key

    edit(psana_file, change)
    expect_refusal(psana_file, "/pedestals/", "merge")


def test_external_links_are_not_followed(psana_file: Path, tmp_path: Path) -> None:
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.array([1.0]))
    edit(psana_file, lambda f: f.__setitem__("pedestals/linked", h5py.ExternalLink(str(other), "/x")))
    result = read_dcs(psana_file)
    assert [s.path for s in result.skipped] == ["/pedestals/linked"]
    assert "not followed" in result.skipped[0].reason


def test_random_bytes_raise_only_input_error(psana_file: Path) -> None:
    from dcsync.errors import InputError

    data = bytearray(psana_file.read_bytes())
    rng = np.random.default_rng(3)
    for trial in range(40):
        mangled = bytearray(data)
        for pos in rng.integers(0, len(data), 20):
            mangled[int(pos)] = int(rng.integers(0, 256))
        psana_file.write_bytes(bytes(mangled))
        try:
            read_dcs(psana_file)
        except InputError as exc:
            assert str(psana_file) in str(exc), trial


def store_of(*ctypes: DcsCtype) -> DcsStore:
    return DcsStore(DcsDetector("cspad", "1", "cspad-1"), ctypes)


def test_writer_refuses_what_psana_cannot_read_back(tmp_path: Path) -> None:
    from dcsync.errors import UsageError

    out = tmp_path / "x.h5"
    v1 = DcsVersion(1, None, np.zeros(2))
    v0 = DcsVersion(0, None, np.zeros(1))
    twins = (DcsRange(1.2, 5.0, 0, (v1,)), DcsRange(1.7, 5.0, 0, (v1,), name="b"))
    cases = [
        (store_of(DcsCtype("my_ctype", ())), "knows only the ctypes"),
        (store_of(DcsCtype("pedestals", twins)), "merge"),
        (store_of(DcsCtype("pedestals", (DcsRange(1.0, None, 0, (v0,)),))), "1 to 9999"),
        (store_of(DcsCtype("geometry", (DcsRange(1.0, None, 0, (DcsVersion(1, None, ""),)),))), "empty text"),
    ]  # fmt: skip
    for store, fragment in cases:
        with pytest.raises(UsageError, match=fragment):
            write_dcs(out, store)
        assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match="finite"):
        DcsRange(float("nan"), None, 0, ())


def test_meta_with_every_kind_round_trips(tmp_path: Path) -> None:
    meta = DcsMeta((("a", "text µ"), ("b", -(2**63)), ("c", 1e-300), ("d", "")), (DcsRecord(1.5, "x"),))
    store = DcsStore(DcsDetector("epix10ka", "0001-0002", None), (), meta)
    write_dcs(tmp_path / "e.h5", store)
    assert read_dcs(tmp_path / "e.h5").store == store


def test_data_larger_than_the_file_is_refused_before_allocation(psana_file: Path) -> None:
    import h5py

    def change(f: Any) -> None:
        group = f["pedestals/1600000000-end/v0001"]
        del group["data"]
        group.create_dataset("data", shape=(2**40,), dtype="f8")  # 8 TiB, never written

    edit(psana_file, change)
    with h5py.File(psana_file, "r") as f:
        assert f["pedestals/1600000000-end/v0001/data"].id.get_create_plist().get_nfilters() == 0
    expect_refusal(psana_file, "/pedestals/1600000000-end/v0001/data", "declares")


def test_reading_holds_each_array_once(tmp_path: Path) -> None:
    """Reading a file of 4 arrays of 64 MiB costs the data once (read_direct into its own buffer),
    not twice, over the floor of importing the reader and reading an empty file."""
    import sys

    from helpers.peakrss import run_measured

    mib = 1 << 20
    arrays = tuple(DcsVersion(n, None, np.full(64 * mib // 4, n, dtype=np.float32)) for n in range(1, 5))
    big, empty = tmp_path / "det-big.h5", tmp_path / "det-empty.h5"
    write_dcs(big, store_of(DcsCtype("pedestals", (DcsRange(1.0, None, 0, arrays),))))
    write_dcs(empty, store_of())
    script = "import sys; from dcsync.legacy.dcsread import read_dcs; read_dcs(sys.argv[1])"
    floor = run_measured([sys.executable, "-c", script, str(empty)])
    peak = run_measured([sys.executable, "-c", script, str(big)])
    assert floor.returncode == 0 and peak.returncode == 0, peak.stderr
    grew = peak.peak_rss - floor.peak_rss
    assert 256 * mib * 0.95 <= grew < 256 * mib * 1.25, (
        grew / mib,
        floor.peak_rss / mib,
        peak.peak_rss / mib,
    )
