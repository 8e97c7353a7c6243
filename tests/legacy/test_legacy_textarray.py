"""Psana text n-d arrays: real headers, old C type names, savetxt files, every error, round-trips."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dcsync.errors import InputError
from dcsync.legacy.textarray import format_text_array, read_text_array, text_dtype, write_text_array

STATUS_HEADER = "# SHAPE (704,768)\n# DATATYPE uint64\n# DTYPE uint64\n# NDIM 2\n# DIM:0 704\n# DIM:1 768\n"


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(InputError) as info:
        read_text_array(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- files users have ---------------------------------------------------------------------------


def test_real_status_file_header_704x768_uint64(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    status = rng.integers(0, 2**64 - 1, size=(704, 768), dtype=np.uint64, endpoint=True)
    status[0, 0], status[0, 1], status[703, 767] = 2**64 - 1, 0, 2**63 + 1  # exact, never via float
    body = "\n".join(" ".join(map(str, row)) for row in status.tolist())
    path = write(tmp_path / "0-end.data", STATUS_HEADER + body + "\n")
    start = time.perf_counter()
    arr = read_text_array(path)
    elapsed = time.perf_counter() - start
    assert arr.dtype == np.uint64 and arr.shape == (704, 768)
    assert np.array_equal(arr, status)
    assert int(arr[0, 0]) == 2**64 - 1 and int(arr[703, 767]) == 2**63 + 1
    assert elapsed < 2.0, f"parsing took {elapsed:.2f} s"


def test_3d_float32_dim_without_shape_is_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    peds = (rng.random((32, 185, 388)) * 1000).astype(np.float32)
    header = "# TITLE pedestals\n# DTYPE float\n# NDIM 3\n# DIM:0 32\n# DIM:1 185\n# DIM:2 388\n"
    body = "\n".join(" ".join(f"{v:.3f}" for v in row) for row in peds.reshape(-1, 388).tolist())
    path = write(tmp_path / "peds.data", header + body + "\n")
    start = time.perf_counter()
    arr = read_text_array(path)
    elapsed = time.perf_counter() - start
    assert arr.dtype == np.float32 and arr.shape == (32, 185, 388)
    assert np.allclose(arr, peds, atol=1e-3)
    assert elapsed < 2.0, f"parsing took {elapsed:.2f} s"


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("float", np.float32),
        ("double", np.float64),
        ("short", np.int16),
        ("unsigned", np.uint32),
        ("int", np.int32),
        ("int16_t", np.int16),
        ("int32_t", np.int32),
        ("uint", np.uint32),
        ("uint8_t", np.uint8),
        ("uint16_t", np.uint16),
        ("uint32_t", np.uint32),
        ("int8_t", np.int8),
        ("int64_t", np.int64),
        ("uint64_t", np.uint64),
        ("long", np.int64),
        ("unsigned short", np.uint16),
        ("uint16", np.uint16),
        ("float64", np.float64),
        ("bool", np.bool_),
    ],
)
def test_old_c_type_names(tmp_path: Path, name: str, dtype: type[Any]) -> None:
    path = write(tmp_path / "old.data", f"# DTYPE {name}\n# NDIM 2\n# DIM:0 2\n# DIM:1 3\n1 0 1\n0 1 1\n")
    arr = read_text_array(path)
    assert arr.dtype == np.dtype(dtype)
    assert arr.shape == (2, 3)
    assert arr.tolist() == np.array([[1, 0, 1], [0, 1, 1]]).astype(dtype).tolist()


def test_dim_without_shape_and_dims_counted_from_one(tmp_path: Path) -> None:
    three = write(tmp_path / "a.data", "# DIM:0 2\n# DIM:1 2\n# DIM:2 2\n1 2\n3 4\n5 6\n7 8\n")
    assert read_text_array(three).shape == (2, 2, 2)
    older = write(tmp_path / "b.data", "# NDIM 2\n# DIM:1 2\n# DIM:2 3\n1 2 3\n4 5 6\n")
    assert read_text_array(older).shape == (2, 3)


def test_shape_and_datatype_take_precedence(tmp_path: Path) -> None:
    text = "# SHAPE (3,2)\n# DATATYPE int16\n# DTYPE float\n# NDIM 2\n# DIM:0 2\n# DIM:1 3\n1 2\n3 4\n5 6\n"
    arr = read_text_array(write(tmp_path / "new.data", text))
    assert arr.dtype == np.int16 and arr.shape == (3, 2)
    assert arr.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_shape_spellings(tmp_path: Path) -> None:
    assert read_text_array(write(tmp_path / "a.txt", "# SHAPE (2, 3)\n1 2 3\n4 5 6\n")).shape == (2, 3)
    assert read_text_array(write(tmp_path / "b.txt", "# SHAPE (6,)\n1 2 3 4 5 6\n")).shape == (6,)
    scalar = read_text_array(write(tmp_path / "c.txt", "# SHAPE ()\n# DTYPE int32\n7\n"))
    assert scalar.shape == () and scalar.dtype == np.int32 and int(scalar) == 7
    empty = read_text_array(write(tmp_path / "d.txt", "# SHAPE (0,3)\n# DTYPE uint8\n"))
    assert empty.shape == (0, 3) and empty.dtype == np.uint8


def test_no_metadata_is_float32_as_laid_out(tmp_path: Path) -> None:
    one = read_text_array(write(tmp_path / "a.txt", "1 2 3\n"))
    assert one.dtype == np.float32 and one.shape == (3,)
    two = read_text_array(write(tmp_path / "b.txt", "1 2 3\n4 5 6\n"))
    assert two.dtype == np.float32 and two.shape == (2, 3)


def test_ndim_without_sizes(tmp_path: Path) -> None:
    assert read_text_array(write(tmp_path / "a.txt", "# NDIM 2\n1 2 3\n")).shape == (1, 3)
    assert read_text_array(write(tmp_path / "b.txt", "# NDIM 1\n1 2 3\n")).shape == (3,)
    assert read_text_array(write(tmp_path / "c.txt", "# NDIM 0\n5\n")).shape == ()


def test_savetxt_files(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    plain = tmp_path / "plain.txt"
    np.savetxt(plain, data)
    arr = read_text_array(plain)
    assert arr.dtype == np.float32 and np.array_equal(arr, data.astype(np.float32))
    with_header = tmp_path / "header.txt"
    np.savetxt(with_header, data, header="pedestals for run 12\nmade by me")
    assert np.array_equal(read_text_array(with_header), data.astype(np.float32))
    typed = tmp_path / "typed.txt"
    np.savetxt(typed, np.arange(6).reshape(2, 3), fmt="%d", header="DTYPE uint16")
    arr = read_text_array(typed)
    assert arr.dtype == np.uint16 and arr.tolist() == [[0, 1, 2], [3, 4, 5]]
    column = tmp_path / "column.txt"
    np.savetxt(column, np.arange(4.0))  # savetxt writes a 1-D array as a column: read as laid out
    assert read_text_array(column).shape == (4, 1)


def test_comments_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    text = "\ufeff# DTYPE uint8\r\n\r\n1 2\r\n# DTYPE float64 (after data: a comment)\r\n\r\n3 4\r\n"
    arr = read_text_array(write(tmp_path / "win.txt", text))
    assert arr.dtype == np.uint8 and arr.tolist() == [[1, 2], [3, 4]]


def test_special_float_values(tmp_path: Path) -> None:
    arr = read_text_array(write(tmp_path / "f.txt", "# DTYPE float64\nnan inf -inf -0.0 1e-300\n"))
    assert np.isnan(arr[0]) and arr[1] == np.inf and arr[2] == -np.inf and np.signbit(arr[3])


# --- errors --------------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.data", "no such file")
    expect_error(tmp_path, "is a directory")


def test_not_text(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.data"
    bad.write_bytes(b"1 2\n# TITLE caf\xe9\n")
    expect_error(bad, "not UTF-8", "line 2, offset 15")
    binary = tmp_path / "binary.data"
    binary.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}\x00\x00")
    expect_error(binary, "NUL")


def test_unequal_rows(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "r.txt", "# x\n1 2 3\n4 5 6\n7 8\n"), "line 4", "2 values", "line 2) has 3")


def test_non_numeric_token(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "n.txt", "1 2\n3 four\n"), "line 2, column 2", "'four' is not a number")
    expect_error(write(tmp_path / "u.txt", "1 1_000\n"), "'1_000' is not a number")
    expect_error(write(tmp_path / "i.txt", "1 2 # inline comment\n"), "'#' is not a number")


def test_count_does_not_match_header(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "c.txt", "# SHAPE (2,3)\n1 2 3\n4 5\n"), "line 3")
    expect_error(write(tmp_path / "d.txt", "# SHAPE (2,3)\n1 2 3\n"), "shape (2, 3)", "6 values", "has 3")
    expect_error(write(tmp_path / "e.txt", "# DIM:0 4\n1 2 3\n"), "shape (4,)", "has 3")
    expect_error(write(tmp_path / "f.txt", "# NDIM 0\n1 2\n"), "shape ()", "has 2")


def test_ndim_disagrees(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "a.txt", "# NDIM 3\n# DIM:0 2\n# DIM:1 2\n1 2\n3 4\n"), "NDIM 3", "2 DIM:i")
    expect_error(write(tmp_path / "b.txt", "# NDIM 1\n# SHAPE (2,2)\n1 2\n3 4\n"), "NDIM 1", "SHAPE (2,2)")
    expect_error(write(tmp_path / "c.txt", "# NDIM 3\n1 2\n"), "NDIM 3 but no DIM:i or SHAPE")


def test_bad_header_values(tmp_path: Path) -> None:
    expect_error(
        write(tmp_path / "a.txt", "# DTYPE quaternion\n1\n"), "unknown or unsupported dtype 'quaternion'"
    )
    expect_error(write(tmp_path / "b.txt", "# DATATYPE object\n1\n"), "unsupported dtype 'object'")
    expect_error(write(tmp_path / "c.txt", "# DTYPE complex64\n1\n"), "unsupported dtype")
    expect_error(write(tmp_path / "d.txt", "# SHAPE (2,x)\n1 2\n"), "line 1", "SHAPE size 'x'")
    expect_error(write(tmp_path / "e.txt", "# DIM:0 2\n# DIM:2 1\n1 2\n"), "not numbered consecutively")
    expect_error(
        write(tmp_path / "f.txt", "# DTYPE uint8\n# DTYPE float\n1\n"), "line 2", "contradicts line 1"
    )
    expect_error(write(tmp_path / "g.txt", "# only a comment\n\n"), "no data lines")


@pytest.mark.parametrize(
    ("dtype", "token", "fragment"),
    [
        ("uint8", "300", "300 does not fit uint8 (0..255)"),
        ("uint16", "-1", "-1 does not fit uint16"),
        ("int8", "-129", "does not fit int8"),
        ("int32", "1.5", "'1.5' is not an integer, but the dtype is int32"),
        ("uint64", "18446744073709551616", "does not fit uint64"),
        ("int64", "9223372036854775808", "does not fit int64"),
        ("uint32", "1e3", "not an integer"),
        ("bool", "2", "2 does not fit bool (0..1)"),
        ("float32", "1e40", "out of range for float32"),
        ("float16", "70000", "out of range for float16"),
    ],
)
def test_value_does_not_fit_dtype(tmp_path: Path, dtype: str, token: str, fragment: str) -> None:
    path = write(tmp_path / "v.txt", f"# DTYPE {dtype}\n0 1\n1 {token}\n")
    expect_error(path, "line 3, column 2", fragment)


def test_largest_integers_are_exact(tmp_path: Path) -> None:
    text = "# DTYPE int64\n9223372036854775807 -9223372036854775808 +5\n"
    assert read_text_array(write(tmp_path / "a.txt", text)).tolist() == [2**63 - 1, -(2**63), 5]


# --- writing ---------------------------------------------------------------------------------------


def test_write_header_layout(tmp_path: Path) -> None:
    path = tmp_path / "out.data"
    write_text_array(path, np.arange(6, dtype=np.uint16).reshape(2, 3), {"TITLE": "status", "AUTHOR": "me"})
    assert path.read_text() == (
        "# SHAPE (2,3)\n# DATATYPE uint16\n# DTYPE uint16\n# NDIM 2\n# DIM:0 2\n# DIM:1 3\n"
        "# TITLE status\n# AUTHOR me\n0 1 2\n3 4 5\n"
    )


def test_write_one_and_zero_dimensions() -> None:
    assert format_text_array(np.array([1.5, 2.0])).endswith("# DIM:0 2\n1.5 2.0\n")
    assert (
        format_text_array(np.array(7, dtype=np.int8))
        == "# SHAPE ()\n# DATATYPE int8\n# DTYPE int8\n# NDIM 0\n7\n"
    )
    assert format_text_array(np.array([True, False])).endswith("1 0\n")


def test_write_refuses(tmp_path: Path) -> None:
    path = tmp_path / "x.data"
    with pytest.raises(InputError, match="complex"):
        write_text_array(path, np.zeros(2, np.complex64))
    with pytest.raises(InputError, match="reserved"):
        write_text_array(path, np.zeros(2), {"DTYPE": "uint8"})
    with pytest.raises(InputError, match="one line"):
        write_text_array(path, np.zeros(2), {"TITLE": "a\nb"})
    with pytest.raises(InputError, match="no such file"):
        write_text_array(tmp_path / "missing-dir" / "x.data", np.zeros(2))


def test_c_names_resolve_to_c_types() -> None:
    assert text_dtype("float", "f") == np.float32  # numpy would say float64
    assert text_dtype("int", "f") == np.int32  # numpy would say int64
    assert text_dtype("<u8", "f") == np.uint64


DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
DTYPES += [np.float16, np.float32, np.float64]


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
    return draw(hnp.arrays(dtype, shape))


@settings(max_examples=300, deadline=None)
@given(arr=arrays())
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, arr: np.ndarray[Any, Any]) -> None:
    path = tmp_path_factory.getbasetemp() / "round-trip.data"
    write_text_array(path, arr, {"TITLE": "hypothesis"})
    back = read_text_array(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    if arr.dtype.kind == "f":
        assert np.array_equal(back, arr, equal_nan=True)
        same = ~np.isnan(arr)
        assert np.array_equal(np.signbit(back[same]), np.signbit(arr[same]))  # -0.0 stays -0.0
    else:
        assert back.tobytes() == arr.tobytes()
