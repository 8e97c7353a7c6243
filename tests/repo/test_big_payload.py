"""A constant over 2 GiB, end to end: add, get, verify, and clone both ways (issue 8).

Linux moves at most 0x7ffff000 bytes per read or write call, and h5py hands such an array to the
store's file object in one call. Before dcsync.rawio, every byte past that point was committed as
zero (the write's count was ignored), and a read of it came back with zeros there too (a short
read was taken for the end of the file), so ``get`` raised CorruptObject. The source is an
``np.memmap`` over a sparse file, so it costs neither disk nor memory to make; data sits in every
plane, across the 0x7ffff000 boundary and at the very end. Memory stays at one array in this
process (what ``get`` returns, compared with the source plane by plane), and the files go when the
test ends. Slow: about two minutes here, and ~9 GB of writes.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dcsync import sync
from dcsync.rawio import MAX_IO
from dcsync.repo.repository import Repository
from dcsync.repo.verify import verify_file
from dcsync.sync.client import Connection
from dcsync.sync.wholefile import ENV_SWITCH
from dcsync.transport.connect import open_channel
from dcsync.transport.local import SubprocessChannel
from dcsync.workspace.workspace import Workspace

pytestmark = pytest.mark.slow

DET = "jungfrau-big"
T0 = 1_700_000_000 * 10**9
SHAPE = (518, 1024, 1024)  # int32: 2072 MiB, 24 MiB past what one write call moves
DTYPE = np.dtype("<i4")
PLANE = SHAPE[1] * SHAPE[2]


@pytest.fixture
def big_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for the gigabytes, removed at the end even when the test fails (pytest would keep
    the last runs' folders)."""
    path = tmp_path / "big"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sparse_source(path: Path) -> np.memmap:
    """The array, in a sparse file: a stripe of random values in every plane, a few whole random
    planes, and random values around byte 0x7ffff000; zeros (holes) elsewhere."""
    rng = np.random.default_rng(20)
    out = np.memmap(path, dtype=DTYPE, mode="w+", shape=SHAPE)
    out[:, 0, :64] = rng.integers(1, 2**31 - 1, size=(SHAPE[0], 64), dtype=DTYPE)
    for plane in (0, SHAPE[0] // 2, SHAPE[0] - 1):
        out[plane] = rng.integers(-(2**31), 2**31 - 1, size=SHAPE[1:], dtype=DTYPE)
    flat = out.reshape(-1)
    boundary = MAX_IO // DTYPE.itemsize
    flat[boundary - 4096 : boundary + 4096] = rng.integers(1, 2**31 - 1, size=8192, dtype=DTYPE)
    out.flush()
    del flat, out
    return np.memmap(path, dtype=DTYPE, mode="r", shape=SHAPE)


def assert_same_array(got: np.ndarray, source: np.ndarray) -> None:
    """Plane by plane: no second full copy, and a difference is named by where it is."""
    assert got.shape == source.shape and got.dtype == source.dtype
    for plane in range(SHAPE[0]):
        if not np.array_equal(got[plane], source[plane]):
            bad = int(np.flatnonzero(got[plane] != source[plane])[0])
            offset = (plane * PLANE + bad) * DTYPE.itemsize
            pytest.fail(f"byte {offset:#x} differs (0x7ffff000 is where one write call stops)")


def check_detector(path: Path, source: np.ndarray) -> None:
    report = verify_file(path)
    assert report.ok, report.problems
    with Repository.open(path) as repo:
        constant = repo.get("pedestals", at_ns=T0 + 1)
        assert_same_array(np.asarray(constant.value), source)
        del constant


def clone(source: Path, dest: Path) -> tuple[Workspace, sync.PullReport, int]:
    """A clone of a local path over the channel such a URL opens (a ``dcsync serve`` process),
    and the peak resident memory of that process, in KiB."""
    channel = open_channel(str(source))
    assert isinstance(channel, SubprocessChannel)
    with Connection(channel) as conn:
        ws, report = sync.clone(str(source), dest, conn=conn)
        status = Path(f"/proc/{channel.pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return ws, report, int(hwm.split()[1])


def test_a_constant_over_2_gib_survives_add_get_verify_and_both_kinds_of_clone(
    big_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timings: list[tuple[str, float]] = []
    started = time.monotonic()

    def lap(name: str) -> None:
        nonlocal started
        timings.append((name, time.monotonic() - started))
        started = time.monotonic()

    source = sparse_source(big_dir / "source.i4")
    assert source.nbytes > MAX_IO + 16 * 2**20
    central = Workspace.init(big_dir / "central", kind="repository")
    with central.new_detector(DET) as repo, repo.transaction("a Jungfrau-sized pedestal set") as tx:
        tx.add("pedestals", source, begin_ns=T0)
    lap("add")
    check_detector(central.detector_path(DET), source)
    lap("verify and get")

    laptop, report, server_hwm = clone(central.root, big_dir / "whole")
    assert report.fetch.files == 1, "the detector should have come as a whole file"
    lap("clone (whole file)")
    check_detector(laptop.detector_path(DET), source)
    shutil.rmtree(laptop.root)
    lap("its verify and get")

    monkeypatch.setenv(ENV_SWITCH, "0")
    laptop, report, server_hwm2 = clone(central.root, big_dir / "objects")
    assert report.fetch.files == 0 and report.fetch.objects > 0
    lap("clone (objects)")
    check_detector(laptop.detector_path(DET), source)
    lap("its verify and get")

    self_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    server_gib = max(server_hwm, server_hwm2) / 2**20
    total = sum(seconds for _, seconds in timings)
    print(
        "\nbig payload: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings)
        + f"; total {total:.1f} s; peak RSS {self_gib:.2f} GiB here, {server_gib:.2f} GiB in dcsync serve",
        file=sys.stderr,
    )
