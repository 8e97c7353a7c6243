"""Both stores against the shared contract (``dcsync.testing.store.StoreContract``), then what only the HDF5
file can get wrong: foreign and too-new files, damaged bytes on disk, a truncated file, a full disk
(a file-size limit in a child process, and a real 2 MB tmpfs when running as root), a killed writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcsync.errors import (
    AlreadyExists,
    CorruptObject,
    FormatTooNew,
    LockTimeout,
    NotARepository,
    RepositoryError,
    StorageFull,
)
from dcsync.repo.repository import Repository
from dcsync.repo.verify import verify_file
from dcsync.store.base import ObjectStore
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.locking import FileLock
from dcsync.store.memory import MemoryStore
from dcsync.store.recovery import has_hot_journal
from dcsync.testing.store import StoreContract

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
REPO_ROOT = HELPERS.parents[1]
T0 = 10**18


class TestMemoryStore(StoreContract):
    def open_store(self, tmp_path: Path) -> ObjectStore:
        return MemoryStore()


class TestHDF5Store(StoreContract):
    def open_store(self, tmp_path: Path) -> ObjectStore:
        return HDF5Store.create(tmp_path / "epix-1.h5")

    def reopen_store(self, store: ObjectStore) -> ObjectStore:
        assert isinstance(store, HDF5Store)
        return HDF5Store(store.path)


# -- helpers -------------------------------------------------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_helper(script: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, str(HELPERS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def small_repo(path: Path) -> Repository:
    repo = Repository.create(path, "epix-1")
    with repo.transaction("first") as tx:
        tx.add("pedestals", np.arange(1000, dtype=np.float32), begin_ns=T0, end_ns=None)
        tx.add("geometry", "geometry text é", begin_ns=T0, end_ns=None)
    with repo.transaction("second") as tx:
        tx.add("pixel_status", np.arange(2000, dtype=np.int16).reshape(40, 50), begin_ns=T0, end_ns=None)
    return repo


def state(repo: Repository) -> tuple[object, ...]:
    """Everything a commit could change, read through the public API."""
    return (
        repo.head(),
        [r.to_json() for r in repo.log()],
        sorted(repo.store.object_ids()),
        {c: [(k, sorted(t.versions)) for k, t in repo.ranges(c)] for c in repo.ctypes()},
    )


def object_offset(path: Path, oid: str) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        ds = f[f"/.dcsync/objects/{oid[:2]}/{oid[2:]}"]
        offset = ds.id.get_offset()
        assert offset is not None
        return int(offset), int(ds.id.get_storage_size())


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


# -- opening foreign files -----------------------------------------------------------------------


def newer_file(tmp_path: Path, attr: str, value: object) -> Path:
    """A repository as another (newer) dcsync would have written it: a file this process never saw."""
    made = tmp_path / "made-here.h5"
    small_repo(made).close()
    path = tmp_path / "epix-1.h5"
    shutil.copyfile(made, path)
    with h5py.File(path, "r+") as f:
        f[".dcsync"].attrs[attr] = value
    return path


def test_file_from_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = newer_file(tmp_path, "format", 2)
    with pytest.raises(FormatTooNew, match="upgrade"):
        HDF5Store(path)
    with pytest.raises(FormatTooNew):
        Repository.open(path)


def test_unknown_hash_algorithm_is_refused(tmp_path: Path) -> None:
    path = newer_file(tmp_path, "hash", "sha3-256")
    with pytest.raises(FormatTooNew, match="sha3-256"):
        HDF5Store(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not hdf5\n" * 100, b"\x89HDF\r\n\x1a\n" + b"\0" * 100, os.urandom(10_000)],
    ids=["empty", "text", "bare-signature", "random"],
)
def test_non_hdf5_file_is_not_a_repository(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "epix-1.h5"
    path.write_bytes(content)
    with pytest.raises(NotARepository):
        HDF5Store(path)
    report = verify_file(path)
    assert not report.ok


def test_missing_file_and_directory_are_not_repositories(tmp_path: Path) -> None:
    with pytest.raises(NotARepository):
        HDF5Store(tmp_path / "missing.h5")
    with pytest.raises(NotARepository):
        Repository.open(tmp_path)


@pytest.mark.parametrize("layout", ["empty", "data", "meta-group-without-attrs"])
def test_hdf5_file_that_is_not_a_repository(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "epix-1.h5"
    with h5py.File(path, "w") as f:
        if layout == "data":
            f["pedestals"] = np.zeros(10)
        elif layout == "meta-group-without-attrs":
            f.create_group(".dcsync")
    with pytest.raises(NotARepository, match="not a dcsync repository"):
        HDF5Store(path)
    assert not verify_file(path).ok


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    small_repo(path).close()
    before = sha(path)
    with pytest.raises(AlreadyExists):
        HDF5Store.create(path)
    with pytest.raises(FileExistsError):  # the builtin it subclasses
        Repository.create(path, "epix-1")
    other = tmp_path / "other.h5"
    other.write_bytes(b"precious")
    with pytest.raises(AlreadyExists):
        HDF5Store.create(other)
    assert sha(path) == before
    assert other.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epix-1.h5", "other.h5"]  # no temp files left


def test_writes_need_a_transaction(tmp_path: Path) -> None:
    store = HDF5Store.create(tmp_path / "epix-1.h5")
    with pytest.raises(RepositoryError, match="transaction"):
        store.put_payload(np.zeros(3))
    with store.writing(), pytest.raises(RepositoryError, match="already open"), store.writing():
        pass
    store.close()


def test_a_held_lock_times_out(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    small_repo(path).close()
    other = FileLock(path)
    other.acquire()
    try:
        store = HDF5Store(path, lock_timeout=0.3)
        with pytest.raises(LockTimeout, match="could not lock"), store.writing():
            pass
        store.close()
    finally:
        other.release()


# -- damage on disk ------------------------------------------------------------------------------


def test_flipped_payload_byte_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    repo = small_repo(path)
    bad = repo.get("pedestals").obj
    good_status = repo.get("pixel_status").value
    repo.close()
    offset, size = object_offset(path, bad)
    assert size == 4000
    flip_byte(path, offset + 1234)

    store = HDF5Store(path)
    with pytest.raises(CorruptObject, match=bad):
        store.read_payload(bad)
    store.close()
    with Repository.open(path) as repo:
        with pytest.raises(CorruptObject):
            repo.get("pedestals")
        np.testing.assert_array_equal(repo.get("pixel_status").value, good_status)  # others still fine
        assert repo.get("geometry").value == "geometry text é"
    report = verify_file(path)
    assert not report.ok
    assert any(bad in p for p in report.problems)
    with Repository.open(path) as repo:
        assert report.objects == len(list(repo.store.object_ids()))


def test_a_damaged_object_header_is_corrupt_not_missing_nor_a_usage_error(tmp_path: Path) -> None:
    """h5py reports an unreadable object header as a KeyError: still damage, said as such."""
    path = tmp_path / "epix-1.h5"
    repo = small_repo(path)
    bad = repo.get("pedestals").obj
    repo.close()
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f[f"/.dcsync/objects/{bad[:2]}/{bad[2:]}"].id).addr
    flip_byte(path, header + 16)  # inside the header: its checksum no longer matches

    with Repository.open(path) as repo:
        with pytest.raises(CorruptObject, match=f"{bad} in .* is damaged") as err:
            repo.get("pedestals", at="2026-01-01")
        assert err.value.exit_code == 5
        assert repo.get("geometry", at="2026-01-01").value == "geometry text é"  # the rest reads
    store = HDF5Store(path)
    with pytest.raises(CorruptObject, match=bad):
        store.read_payload(bad)
    store.close()


def test_flipped_tree_byte_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    repo = small_repo(path)
    tree = repo.commit().tree
    repo.close()
    offset, _ = object_offset(path, tree)
    flip_byte(path, offset + 5)
    store = HDF5Store(path)
    with pytest.raises(CorruptObject, match=tree):
        store.read_object(tree, fresh=True)
    store.close()
    report = verify_file(path)
    assert any(tree in p for p in report.problems)


def test_truncated_file_keeps_intact_objects_readable(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    repo = small_repo(path)
    with repo.transaction("big") as tx:
        tx.add("pixel_gain", np.arange(250_000, dtype=np.float64), begin_ns=T0, end_ns=None)
    expected = {c: repo.get(c).value for c in ("pedestals", "geometry", "pixel_status")}
    ids = sorted(repo.store.object_ids())
    repo.close()
    os.truncate(path, path.stat().st_size - 1000)  # cut the last part (metadata flushed last)

    report = verify_file(path)
    assert not report.ok
    assert any("truncated" in p for p in report.problems)
    store = HDF5Store(path)
    assert store.truncated
    readable = 0
    for oid in ids:
        with contextlib.suppress(CorruptObject):
            if store.kind_of(oid) in ("array", "text"):
                store.read_payload(oid)
            else:
                store.read_object(oid, fresh=True)
            readable += 1
    assert readable >= len(ids) - 2
    with Repository(store) as repo:
        for ctype, value in expected.items():
            got = repo.get(ctype).value
            if isinstance(value, str):
                assert got == value
            else:
                np.testing.assert_array_equal(got, value)


# -- a full disk ---------------------------------------------------------------------------------


def test_file_size_limit_during_commit_is_storage_full(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    with small_repo(path) as repo:
        before_state = state(repo)
    before = sha(path)
    result = run_helper("fsize_commit.py", path, path.stat().st_size + 64 * 1024, 4 * 2**20)
    assert result.returncode == StorageFull.exit_code == 8, result.stderr
    assert result.stderr.startswith("StorageFull:"), result.stderr
    assert "nothing was committed" in result.stderr
    assert sha(path) == before  # exactly the previous state, byte for byte
    assert not has_hot_journal(path)
    assert not Path(f"{path}.lock").exists()
    assert verify_file(path).ok
    with Repository.open(path) as repo:
        assert state(repo) == before_state
        with repo.transaction("fits") as tx:  # and it takes the next commit
            tx.add("pixel_gain", np.ones(10), begin_ns=T0, end_ns=None)
    assert verify_file(path).ok


def test_file_size_limit_allows_a_commit_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    small_repo(path).close()
    result = run_helper("fsize_commit.py", path, path.stat().st_size + 4 * 2**20, 1024)
    assert result.returncode == 0, result.stderr
    assert verify_file(path).ok


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_enospc_on_a_small_tmpfs(small_tmpfs: Path) -> None:
    path = small_tmpfs / "epix-1.h5"
    repo = small_repo(path)
    before_state = state(repo)
    before = sha(path)
    with pytest.raises(StorageFull) as info, repo.transaction("does not fit") as tx:
        tx.add("pixel_gain", np.ones(3 * 2**20 // 8), begin_ns=T0, end_ns=None)
    assert info.value.exit_code == 8
    assert isinstance(info.value, OSError)
    assert sha(path) == before
    assert not has_hot_journal(path)
    assert state(repo) == before_state
    assert verify_file(path).ok
    with repo.transaction("fits") as tx:
        tx.add("pixel_gain", np.ones(1000), begin_ns=T0, end_ns=None)
    assert verify_file(path).ok
    repo.close()


# -- a killed writer -----------------------------------------------------------------------------


def test_writer_killed_before_the_commit_point(tmp_path: Path) -> None:
    path = tmp_path / "epix-1.h5"
    with small_repo(path) as repo:
        before_state = state(repo)
        before_value = repo.get("pedestals").value
    result = run_helper("repo_crash.py", path)
    assert result.returncode == -9, result.stderr
    assert has_hot_journal(path)
    assert Path(f"{path}.lock").exists()  # the dead writer's lock, stale at once (its pid is gone)
    # Readers take no lock and see the state before the interrupted commit.
    with Repository.open(path) as repo:
        assert state(repo) == before_state
        np.testing.assert_array_equal(repo.get("pedestals").value, before_value)
    report = verify_file(path)
    assert [p for p in report.problems if "interrupted commit" not in p] == []
    # The next writer recovers and commits.
    with Repository.open(path) as repo:
        with repo.transaction("after the crash") as tx:
            tx.add("pedestals", np.full(1000, 7.0), begin_ns=T0, end_ns=None)
        np.testing.assert_array_equal(repo.get("pedestals").value, np.full(1000, 7.0))
        assert len(list(repo.commits())) == 4
    assert not has_hot_journal(path)
    assert verify_file(path).ok
