"""The rollback journal under h5py: commit, rollback, crash recovery at every stage, torn journals,
the pre-commit overlay for readers, and the O(new data) cost of an append.

Crashes are real: ``tests/helpers/journal_crash.py`` runs a transaction in a child process that
SIGKILLs itself at a chosen stage; the parent then inspects and recovers the file.
"""

from __future__ import annotations

import gc
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcsync.errors import RepositoryError
from dcsync.store.journal import AtomicGroup, JournaledFile
from dcsync.store.recovery import (
    PAGE_SIZE,
    OverlayReader,
    has_hot_journal,
    journal_path,
    read_journal,
    recover,
)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
REPO_ROOT = HELPERS.parents[1]
LIBVER = ("latest", "latest")
A = np.arange(20_000, dtype=np.int64)  # 160 KB: negating it in place dirties ~40 pages


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def overlay_bytes(path: Path) -> bytes:
    reader = OverlayReader(path)
    try:
        reader.seek(0, os.SEEK_END)
        size = reader.tell()
        reader.seek(0)
        out = bytearray(size)
        view = memoryview(out)
        got = 0
        while got < size:
            n = reader.readinto(view[got:])
            assert n > 0
            got += n
        return bytes(out)
    finally:
        reader.close()


def make_file(path: Path) -> Path:
    with h5py.File(path, "w", libver=LIBVER) as f:
        f["a"] = A
        f.attrs["x"] = "old"
        g = f.create_group("g")
        for i in range(20):
            g[f"d{i}"] = np.full(100, i, dtype=np.float32)
    return path


def assert_original(f: h5py.File) -> None:
    np.testing.assert_array_equal(f["a"][...], A)
    assert f.attrs["x"] == "old"
    assert "b" not in f
    assert sorted(f["g"]) == sorted(f"d{i}" for i in range(20))


def assert_changed(f: h5py.File) -> None:
    np.testing.assert_array_equal(f["a"][...], -A)
    assert f.attrs["x"] == "new"
    np.testing.assert_array_equal(f["b"][...], np.arange(200_000))


def change(jf: JournaledFile) -> None:
    with h5py.File(jf, "r+", libver=LIBVER) as f:
        f["a"][...] = -f["a"][...]
        f.attrs["x"] = "new"
        f.create_dataset("b", data=np.arange(200_000, dtype=np.int64))


def crash_at(path: Path, stage: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, str(HELPERS / "journal_crash.py"), str(path), stage],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def h5file(tmp_path: Path) -> Path:
    return make_file(tmp_path / "data.h5")


# -- commit and rollback -------------------------------------------------------------------------


def test_commit_makes_changes_durable(h5file: Path) -> None:
    jf = JournaledFile(h5file)
    assert has_hot_journal(h5file)  # the header goes down before the first write
    change(jf)
    assert jf.dirty_pages() > 1
    jf.commit()
    assert not has_hot_journal(h5file)
    with h5py.File(h5file, "r") as f:
        assert_changed(f)
        assert sorted(f["g"]) == sorted(f"d{i}" for i in range(20))
    assert not recover(h5file)  # nothing to recover after a commit
    jf.commit()  # idempotent once done
    jf.rollback()  # and a rollback after the commit point changes nothing
    with h5py.File(h5file, "r") as f:
        assert_changed(f)


def test_uncommitted_overwrites_stay_in_memory(h5file: Path) -> None:
    before = h5file.read_bytes()
    jf = JournaledFile(h5file)
    change(jf)
    # Appends went to disk past the original end; the original region is untouched until commit.
    assert h5file.read_bytes()[: len(before)] == before
    assert h5file.stat().st_size > len(before)
    jf.rollback()


def test_rollback_restores_byte_identical_file(h5file: Path) -> None:
    before = sha(h5file)
    jf = JournaledFile(h5file)
    with h5py.File(jf, "r+", libver=LIBVER) as f:
        f["a"][...] = 7
        del f["g/d3"]
        f.attrs["x"] = "changed"
        f.attrs["y"] = np.arange(50)
        f.create_dataset("big", data=np.ones(300_000))
        f.create_group("new").attrs["z"] = 1
    jf.rollback()
    assert sha(h5file) == before
    assert not has_hot_journal(h5file)
    with h5py.File(h5file, "r") as f:
        assert_original(f)


def test_rollback_after_h5py_error(h5file: Path) -> None:
    before = sha(h5file)
    jf = JournaledFile(h5file)
    with pytest.raises(ValueError), h5py.File(jf, "r+", libver=LIBVER) as f:
        f.create_dataset("b", data=np.arange(10))
        f.create_dataset("b", data=np.arange(10))  # exists: h5py raises
    jf.rollback()
    assert sha(h5file) == before


def test_a_second_transaction_needs_recovery_first(h5file: Path) -> None:
    jf = JournaledFile(h5file)
    with pytest.raises(RepositoryError, match="appeared after recovery ran"):
        JournaledFile(h5file)
    jf.rollback()
    JournaledFile(h5file).rollback()  # fine once the journal is gone


def test_many_transactions_in_a_row(h5file: Path) -> None:
    for i in range(5):
        jf = JournaledFile(h5file)
        with h5py.File(jf, "r+", libver=LIBVER) as f:
            f[f"n{i}"] = np.full(1000, i)
            f.attrs["last"] = i
        if i % 2:
            jf.rollback()
        else:
            jf.commit()
    with h5py.File(h5file, "r") as f:
        assert sorted(n for n in f if n.startswith("n")) == ["n0", "n2", "n4"]
        assert f.attrs["last"] == 4
        np.testing.assert_array_equal(f["a"][...], A)


# -- crash recovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["written", "journaled", "half-applied", "applied"])
def test_crash_before_the_commit_point_rolls_back(h5file: Path, stage: str) -> None:
    original = h5file.read_bytes()
    result = crash_at(h5file, stage)
    assert result.returncode == -9, result.stderr
    assert has_hot_journal(h5file)
    if stage in ("half-applied", "applied"):
        assert h5file.read_bytes()[: len(original)] != original  # pages really were overwritten
    # Readers see the pre-commit state through the journal, byte for byte, without a lock.
    assert overlay_bytes(h5file) == original
    reader = OverlayReader(h5file)
    with h5py.File(reader, "r") as f:
        assert_original(f)
    reader.close()
    # The next writer recovers: the file is byte-identical to before the transaction.
    assert recover(h5file)
    assert not has_hot_journal(h5file)
    assert h5file.read_bytes() == original
    assert not recover(h5file)
    with h5py.File(h5file, "r") as f:
        assert_original(f)


def test_crash_after_the_commit_point_keeps_the_commit(h5file: Path) -> None:
    result = crash_at(h5file, "committed")
    assert result.returncode == -9, result.stderr
    assert not has_hot_journal(h5file)
    assert not recover(h5file)
    with h5py.File(h5file, "r") as f:
        assert_changed(f)


def test_helper_without_crash_commits(h5file: Path) -> None:
    result = crash_at(h5file, "none")
    assert result.returncode == 0, result.stderr
    assert 1 < int(result.stdout) < 64
    with h5py.File(h5file, "r") as f:
        assert_changed(f)


def test_crash_during_recovery_is_recovered_again(h5file: Path) -> None:
    original = h5file.read_bytes()
    assert crash_at(h5file, "applied").returncode == -9
    saved = journal_path(h5file).read_bytes()
    # First recovery restores everything; a crash just before its unlink leaves the journal behind.
    assert recover(h5file)
    journal_path(h5file).write_bytes(saved)
    assert recover(h5file)
    assert h5file.read_bytes() == original


def test_partial_restore_then_recover(h5file: Path) -> None:
    original = h5file.read_bytes()
    assert crash_at(h5file, "applied").returncode == -9
    parsed = read_journal(journal_path(h5file))
    assert parsed is not None
    original_size, records = parsed.original_size, parsed.records
    assert original_size == len(original)
    assert len(records) > 2
    fd = os.open(h5file, os.O_RDWR)
    try:
        for offset, data in records[: len(records) // 2]:  # recovery killed half-way
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
    assert recover(h5file)
    assert h5file.read_bytes() == original


# -- torn journals -------------------------------------------------------------------------------


def test_torn_journal_tail_is_ignored(h5file: Path) -> None:
    """A crash while the journal was written (before its fsync): no page was overwritten yet."""
    original = h5file.read_bytes()
    assert crash_at(h5file, "journaled").returncode == -9
    jpath = journal_path(h5file)
    full = read_journal(jpath)
    assert full is not None and len(full.records) > 2
    raw = jpath.read_bytes()
    jpath.write_bytes(raw[: len(raw) - PAGE_SIZE // 2])  # cut into the last record
    torn = read_journal(jpath)
    assert torn is not None
    assert len(torn.records) == len(full.records) - 1
    assert overlay_bytes(h5file) == original
    assert recover(h5file)
    assert h5file.read_bytes() == original


def test_garbage_after_the_last_record_is_ignored(h5file: Path) -> None:
    original = h5file.read_bytes()
    assert crash_at(h5file, "applied").returncode == -9
    jpath = journal_path(h5file)
    n = len(read_journal(jpath).records)  # type: ignore[union-attr]
    with open(jpath, "ab") as fh:
        fh.write(os.urandom(5000))
    assert len(read_journal(jpath).records) == n  # type: ignore[union-attr]
    assert recover(h5file)
    assert h5file.read_bytes() == original


@pytest.mark.parametrize("damage", ["empty", "short", "bad-checksum", "bad-magic"])
def test_torn_header_means_nothing_was_overwritten(h5file: Path, damage: str) -> None:
    """The header precedes every write: torn, it can only guard appends HDF5 never references."""
    original = h5file.read_bytes()
    assert crash_at(h5file, "written").returncode == -9
    jpath = journal_path(h5file)
    raw = bytearray(jpath.read_bytes())
    if damage == "empty":
        raw = bytearray()
    elif damage == "short":
        raw = raw[:13]
    elif damage == "bad-checksum":
        raw[-1] ^= 0xFF
    else:
        raw[0:8] = b"NOTAJRNL"
    jpath.write_bytes(bytes(raw))
    assert read_journal(jpath) is None
    assert h5file.stat().st_size > len(original)  # the appended, unreferenced bytes are still there
    # Readers see the live file, whose original region is intact.
    assert overlay_bytes(h5file)[: len(original)] == original
    assert recover(h5file)
    assert not jpath.exists()
    assert h5file.read_bytes()[: len(original)] == original
    with h5py.File(h5file, "r") as f:
        assert_original(f)
    # and the file takes new transactions normally
    jf = JournaledFile(h5file)
    change(jf)
    jf.commit()
    with h5py.File(h5file, "r") as f:
        assert_changed(f)


# -- readers during a transaction ----------------------------------------------------------------


def test_overlay_shows_pre_commit_state_while_journal_exists(h5file: Path) -> None:
    original = h5file.read_bytes()
    assert crash_at(h5file, "applied").returncode == -9
    with h5py.File(h5file, "r", locking=False) as f:  # the live bytes: the new state, not yet committed
        assert_changed(f)
    for _ in range(2):  # any number of readers, no lock
        reader = OverlayReader(h5file)
        with h5py.File(reader, "r") as f:
            assert_original(f)
        reader.close()
    assert overlay_bytes(h5file) == original


def test_overlay_without_journal_is_the_file(h5file: Path) -> None:
    assert overlay_bytes(h5file) == h5file.read_bytes()


def test_overlay_during_an_open_transaction(h5file: Path) -> None:
    original = h5file.read_bytes()
    jf = JournaledFile(h5file)
    change(jf)
    assert overlay_bytes(h5file) == original
    jf.commit()
    assert overlay_bytes(h5file) == h5file.read_bytes()


# -- cost ----------------------------------------------------------------------------------------


def test_appending_to_a_big_file_journals_few_pages(tmp_path: Path) -> None:
    path = tmp_path / "big.h5"
    with h5py.File(path, "w", libver=LIBVER) as f:
        objects = f.create_group("objects")
        for i in range(50):
            objects.create_dataset(f"p{i:03d}", data=np.full(131_072, i, dtype=np.float64))  # 1 MiB each
    size = path.stat().st_size
    assert size > 50 * 2**20
    jf = JournaledFile(path)
    with h5py.File(jf, "r+", libver=LIBVER) as f:
        f["objects"].create_dataset("new", data=np.arange(131_072, dtype=np.float64))
        f["objects"]["new"].attrs["k"] = "array"
    dirty = jf.dirty_pages()
    jf.commit()
    assert 0 < dirty < 32, dirty
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["objects/new"][...], np.arange(131_072))
        np.testing.assert_array_equal(f["objects/p049"][:5], np.full(5, 49.0))


# -- several files, one commit point ---------------------------------------------------------------


def prepared_group(tmp_path: Path) -> tuple[list[Path], list[bytes], AtomicGroup]:
    """Two files, each prepared (journal fsynced, pages written) as members of one group."""
    paths = [make_file(tmp_path / f"member{i}.h5") for i in range(2)]
    originals = [p.read_bytes() for p in paths]
    group = AtomicGroup(tmp_path / "groups")
    for p in paths:
        jf = JournaledFile(p, group_marker=group.marker)
        change(jf)
        jf.prepare()  # a crash after this leaves journal + new pages, as a killed process would
    return paths, originals, group


def test_group_crash_before_the_marker_goes_rolls_every_member_back(tmp_path: Path) -> None:
    paths, originals, group = prepared_group(tmp_path)
    assert group.marker.exists()
    for p, original in zip(paths, originals, strict=True):
        assert has_hot_journal(p)
        assert overlay_bytes(p) == original  # readers see the old state of every member
    for p, original in zip(paths, originals, strict=True):
        assert recover(p)
        assert p.read_bytes() == original


def test_group_crash_after_the_marker_went_keeps_every_member(tmp_path: Path) -> None:
    paths, _, group = prepared_group(tmp_path)
    group.marker.unlink()  # the one commit point passed; the crash came before the journals went
    for p in paths:
        assert has_hot_journal(p)
        reader = OverlayReader(p)
        with h5py.File(reader, "r") as f:  # readers see the new state already
            assert_changed(f)
        reader.close()
        assert recover(p)
        assert not has_hot_journal(p)
        with h5py.File(p, "r") as f:
            assert_changed(f)


def test_group_commit_and_abort(tmp_path: Path) -> None:
    paths = [make_file(tmp_path / f"m{i}.h5") for i in range(2)]
    originals = [p.read_bytes() for p in paths]
    released: list[Path] = []
    with pytest.raises(RuntimeError), AtomicGroup(tmp_path / "groups") as group:
        for p in paths:
            jf = JournaledFile(p, group_marker=group.marker)
            change(jf)
            jf.prepare()
            group.add(jf, lambda p=p: released.append(p))
        raise RuntimeError("abort")
    assert [p.read_bytes() for p in paths] == originals
    assert released == paths
    assert not group.marker.exists()
    with AtomicGroup(tmp_path / "groups") as group:
        for p in paths:
            jf = JournaledFile(p, group_marker=group.marker)
            change(jf)
            jf.prepare()
            group.add(jf, lambda: None)
    for p in paths:
        assert not has_hot_journal(p)
        with h5py.File(p, "r") as f:
            assert_changed(f)


def test_a_refused_open_leaves_nothing_for_the_finalizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``__del__`` runs on a half-made object too (open refused, or Ctrl-C inside ``__init__``): it
    must not fail there and print "Exception ignored" on the way out."""
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(FileNotFoundError):
        JournaledFile(tmp_path / "missing.h5")
    gc.collect()
    assert unraisable == []
