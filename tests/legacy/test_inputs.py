"""The one door for users' files: geometry byte for byte, .npy without pickles, .npz, text arrays."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcsync.errors import InputError, UsageError
from dcsync.legacy.inputs import load_constant, save_constant

GEOMETRY = (
    "# TITLE      Geometry parameters of CSPAD\r\n"
    "# AUTHOR     caf\u00e9 \u00b5m\n"
    "# HDR PARENT IND  OBJECT IND  X0 Y0 Z0  ROT-Z ROT-Y ROT-X  TILT-Z TILT-Y TILT-X\n"
    "\n"
    + "".join(
        f"QUAD:V2   {q}  SENS2X1:V1 {s}   {21136 - 2300 * s} {-21106 + 50 * q} 0  90 0 0  0.0029 0 -0.0026 \n"
        for q in range(4)
        for s in range(8)
    )
    + "".join(f"CSPAD:V2  0  QUAD:V2    {q}   -4500 -4500 0   {90 * q} 0 0   0 0 0\n" for q in range(4))
    + "\tIP        0  CSPAD:V2   0   0 0 1000000   0 0 0   0 0 0"  # no final newline, a leading tab
)


class _SideEffect:
    """Unpickling this creates a directory: proof that a file was (or was not) unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def expect_error(path: Path, ctype: str, *fragments: str) -> str:
    with pytest.raises(InputError) as info:
        load_constant(path, ctype)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- geometry ----------------------------------------------------------------------------------------


def test_geometry_round_trips_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "0-end.data"
    src.write_bytes(GEOMETRY.encode("utf-8"))
    value = load_constant(src, "geometry")
    assert isinstance(value, str)
    assert value == GEOMETRY  # "\r\n" kept, no newline added, non-ASCII kept
    out = tmp_path / "export.data"
    save_constant(out, value)
    assert out.read_bytes() == src.read_bytes()
    assert load_constant(out, "geometry") == value


def test_geometry_is_validated_with_the_file_named(tmp_path: Path) -> None:
    bad = tmp_path / "geo.data"
    bad.write_text(GEOMETRY.replace("CSPAD:V2  0  QUAD:V2    2   -4500", "CSPAD:V2  0  QUAD:V2    2   x"))
    expect_error(bad, "geometry", "line 39", "x0 'x' is not a finite number")


def test_geometry_refuses_nul_and_bad_utf8(tmp_path: Path) -> None:
    nul = tmp_path / "nul.data"
    nul.write_bytes(GEOMETRY.encode() + b"\0")
    expect_error(nul, "geometry", "NUL")
    latin = tmp_path / "latin.data"
    latin.write_bytes(GEOMETRY.replace("\u00e9", "").encode().replace(b"caf", b"caf\xe9"))
    expect_error(latin, "geometry", "not UTF-8", "line 2")


def test_geometry_ignores_suffix(tmp_path: Path) -> None:
    path = tmp_path / "geometry.npy"  # a misnamed text file is still read as text for ctype geometry
    path.write_text(GEOMETRY)
    assert load_constant(path, "geometry") == GEOMETRY


# --- missing, directory, permission ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.data", "x.txt", "x.dat", "x"])
@pytest.mark.parametrize("ctype", ["pedestals", "geometry"])
def test_missing_and_directory(tmp_path: Path, name: str, ctype: str) -> None:
    expect_error(tmp_path / name, ctype, "no such file")
    (tmp_path / "dir").mkdir()
    directory = tmp_path / "dir" / name
    directory.mkdir()
    expect_error(directory, ctype, "is a directory")


def _load_as_unprivileged(path: Path, ctype: str) -> str:
    """Load in a child process that cannot read ``path``: as ``nobody`` when we are root (root
    reads any file), else after chmod 0. Returns the child's error message."""
    # The child imports everything first, then (as root) drops to nobody: the interpreter itself
    # may live where nobody cannot read.
    code = (
        "import os, sys; from pathlib import Path; from dcsync.legacy.inputs import load_constant\n"
        "from dcsync.errors import InputError\n"
        "if os.geteuid() == 0:\n    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n    load_constant(Path(sys.argv[1]), sys.argv[2])\n"
        "except InputError as exc:\n    print(exc); sys.exit(4)\n"
    )
    if os.geteuid() != 0:
        path.chmod(0)
    result = subprocess.run(
        [sys.executable, "-c", code, str(path), ctype], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 4, result.stdout + result.stderr
    return result.stdout


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(
    ("name", "ctype"), [("peds.npy", "pedestals"), ("peds.data", "pedestals"), ("geo.data", "geometry")]
)
def test_permission_denied_for_real(tmp_path: Path, name: str, ctype: str) -> None:
    folder = tmp_path / "private"
    folder.mkdir()
    path = folder / name
    if name.endswith(".npy"):
        np.save(path, np.zeros(3, np.float32))
    else:
        path.write_text("1 2 3\n")
    message = _load_as_unprivileged(path, ctype)
    assert str(path) in message and "permission denied" in message, message


# --- .npy ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["bool", "int8", "uint16", "int32", "uint64", "float32", "float64", "complex64"]
)
def test_npy_numeric_dtypes(tmp_path: Path, dtype: str) -> None:
    arr = (np.arange(24) % 2).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / "c.npy"
    np.save(path, arr)
    back = load_constant(path, "pixel_status")
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_npy_zero_d_big_endian_and_fortran(tmp_path: Path) -> None:
    path = tmp_path / "scalar.NPY"
    with open(path, "wb") as f:  # np.save(path) would append ".npy"
        np.save(f, np.array(2.5))
    scalar = load_constant(path, "common_mode")
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and float(scalar) == 2.5
    big = tmp_path / "big.npy"
    np.save(big, np.arange(6, dtype=">u2").reshape(2, 3))
    arr = load_constant(big, "pixel_status")
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint16 and arr.dtype.isnative and arr.tolist() == [[0, 1, 2], [3, 4, 5]]
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    arr = load_constant(fortran, "pedestals")
    assert isinstance(arr, np.ndarray) and arr.flags.c_contiguous and arr[1, 2] == 5.0


def test_pickled_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_SideEffect(marker), 1], dtype=object), allow_pickle=True)
    assert b"mkdir" in path.read_bytes()  # the payload really is there
    expect_error(path, "pedestals", "object dtype", "never unpickles")
    assert not marker.exists()


def test_raw_pickle_named_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(_SideEffect(marker)))
    expect_error(path, "pedestals", "not a .npy file")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.array(["a", "b"]), "string dtype"),
        (np.array([b"a"]), "bytes dtype"),
        (np.array(["2024-01-01"], dtype="datetime64[s]"), "datetime dtype"),
        (np.array([1], dtype="timedelta64[s]"), "timedelta dtype"),
        (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "structured/void dtype"),
        (np.zeros(2, dtype="V4"), "structured/void dtype"),
    ],
)
def test_npy_non_numeric_dtypes_are_refused(
    tmp_path: Path, value: np.ndarray[Any, Any], fragment: str
) -> None:
    path = tmp_path / "x.npy"
    np.save(path, value)
    expect_error(path, "pedestals", fragment, "numeric or bool")


def test_truncated_and_corrupt_npy(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    np.save(path, np.zeros((100, 100), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    expect_error(path, "pedestals", "truncated", "40000 data bytes", "39000")
    path.write_bytes(data[:5])
    expect_error(path, "pedestals", "not a .npy file")
    path.write_bytes(data[:10] + b"{'descr': garbage" + data[27:])
    expect_error(path, "pedestals", "corrupt .npy header")
    path.write_bytes(b"")
    expect_error(path, "pedestals", "not a .npy file")
    header = data[: data.index(b"\n") + 1]
    path.write_bytes(header.replace(b"(100, 100)", b"(100,-100)") + data[len(header) :])
    expect_error(path, "pedestals", "negative size in shape (100, -100)")
    path.write_bytes(data[:6] + b"\x09\x00" + data[8:])
    expect_error(path, "pedestals", "format version (9, 0) is not supported")


# --- .npz ------------------------------------------------------------------------------------------------


def test_npz_with_one_array_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez_compressed(path, peds=np.arange(4, dtype=np.float32))
    arr = load_constant(path, "pedestals")
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.tolist() == [0, 1, 2, 3]


def test_npz_with_several_arrays_is_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "two.npz"
    np.savez(path, peds=np.zeros(2), rms=np.ones(2))
    expect_error(path, "pedestals", "exactly one array", "holds 2 (peds, rms)", ".npy")
    empty = tmp_path / "none.npz"
    np.savez(empty)
    expect_error(empty, "pedestals", "holds 0 (none)")


def test_npz_object_array_and_corrupt_zip(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([_SideEffect(marker)], dtype=object))
    expect_error(path, "pedestals", "array 'x'", "object dtype")
    assert not marker.exists()
    path.write_bytes(b"PK\x03\x04 not really a zip")
    expect_error(path, "pedestals", "not a readable .npz")


# --- text arrays by suffix ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["0-end.data", "peds.txt", "peds.dat", "peds"])
def test_other_suffixes_are_text_arrays(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("# DTYPE uint16\n1 2\n3 4\n")
    arr = load_constant(path, "pixel_status")
    assert isinstance(arr, np.ndarray) and arr.dtype == np.uint16 and arr.shape == (2, 2)
    path.write_text("# DTYPE uint16\n1 2\n3 -4\n")
    expect_error(path, "pixel_status", "line 3, column 2", "-4 does not fit uint16")


# --- save_constant -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["c.npy", "c.txt", "c.data", "c.dat"])
@pytest.mark.parametrize("dtype", ["uint8", "int64", "uint64", "float32", "float64", "bool"])
def test_save_then_load(tmp_path: Path, name: str, dtype: str) -> None:
    arr = (np.arange(24, dtype=np.uint64) * (2**61 + 3) % 251).astype(dtype).reshape(2, 3, 4)
    if dtype.startswith("float"):
        arr = arr / np.array(7, dtype=dtype)
    path = tmp_path / name
    save_constant(path, arr)
    back = load_constant(path, "pedestals")
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and back.shape == arr.shape and back.tobytes() == arr.tobytes()


def test_save_refuses(tmp_path: Path) -> None:
    # an output name is the caller's choice: a format dcsync does not write is a usage error
    for name, what in (
        ("x.npz", "a .npz file"),
        ("out.xyz", "a .xyz file"),
        ("out", "a file without a suffix"),
    ):
        with pytest.raises(UsageError) as info:
            save_constant(tmp_path / name, np.zeros(2))
        assert f"{name}: dcsync does not write {what}" in str(info.value)
        assert all(s in str(info.value) for s in (".npy", ".data", ".txt", ".dat"))
        assert not (tmp_path / name).exists()
    with pytest.raises(UsageError, match=r"x\.npy: a text constant"):
        save_constant(tmp_path / "x.npy", GEOMETRY)
    with pytest.raises(InputError, match="object dtype"):
        save_constant(tmp_path / "x.npy", np.array([None], dtype=object))
    with pytest.raises(InputError, match="no such file"):
        save_constant(tmp_path / "missing" / "x.npy", np.zeros(2))
    (tmp_path / "d.data").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        save_constant(tmp_path / "d.data", "text")
