"""Psana geometry text: a realistic CSPAD hierarchy parses; every malformed file is refused by line."""

from __future__ import annotations

import dataclasses

import pytest

from dcsync.errors import InputError
from dcsync.legacy.geometry import Geometry, GeometryLine, check_geometry_text, parse_geometry

HEADER = """\
# TITLE      Geometry parameters of CSPAD
# DATE_TIME  2014-10-16 10:32:26 PDT
# METROLOGY  2013-10-09-CSPAD-XPP-Metrology.txt
# AUTHOR     someone
# EXPERIMENT xpptut15
# DETECTOR   XppGon.0:Cspad.0
# CALIB_TYPE geometry
# COMMENT:01 Table contains the list of geometry parameters for alignment of 2x1 sensors, quads, CSPAD
# PARAM:01 PARENT     - name and version of the parent object
# HDR PARENT IND   OBJECT IND   X0[um]   Y0[um]   Z0[um]   ROT-Z ROT-Y ROT-X     TILT-Z   TILT-Y   TILT-X
"""


def cspad_text() -> str:
    """IP -> CSPAD:V2 -> QUAD:V2 x4 -> SENS2X1:V1 x8 each (sensors numbered 0..7 inside each quad)."""
    lines = [HEADER]
    for quad in range(4):
        for sensor in range(8):
            x, y = 21136 - 2300 * sensor, -21106 + 1100 * quad
            lines.append(
                f"QUAD:V2       {quad} SENS2X1:V1    {sensor}  {x:8d} {y:8d}        0    90.0    0.0    0.0"
                f"   0.{quad}{sensor}292  0.00000 -0.00263\n"
            )
    lines.append("\n")
    for quad in range(4):
        lines.append(
            f"CSPAD:V2      0 QUAD:V2       {quad}    {-4500 + 9000 * (quad % 2):6d}    -4500        0"
            f"   {90 * quad:5.1f}    0.0    0.0   0.00000  0.00000  0.00000\n"
        )
    lines.append(
        "IP            0 CSPAD:V2      0         0        0  1000000     0.0    0.0    0.0  10.0 0 0\n"
    )
    return "".join(lines)


def expect_error(text: str, *fragments: str) -> str:
    with pytest.raises(InputError) as info:
        parse_geometry(text, "geo/0-end.data")
    message = str(info.value)
    assert message.startswith("geo/0-end.data: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_realistic_cspad_hierarchy() -> None:
    geometry = parse_geometry(cspad_text(), "cspad.data")
    assert isinstance(geometry, Geometry)
    assert len(geometry.segments) == 4 * 8 + 4 + 1
    assert geometry.header[0] == "# TITLE      Geometry parameters of CSPAD"
    assert len(geometry.header) == HEADER.count("\n")
    assert geometry.tops() == (("IP", 0),)
    quads = geometry.children("CSPAD:V2", 0)
    assert [q.object_index for q in quads] == [0, 1, 2, 3]
    assert len(geometry.children("QUAD:V2", 3)) == 8
    first = geometry.segments[0]
    assert first == GeometryLine(
        "QUAD:V2", 0, "SENS2X1:V1", 0, 21136.0, -21106.0, 0.0, 90.0, 0.0, 0.0, 0.00292, 0.0, -0.00263
    )
    top = geometry.segments[-1]
    assert (top.parent, top.object, top.z0, top.tilt_z) == ("IP", "CSPAD:V2", 1000000.0, 10.0)
    assert check_geometry_text(cspad_text(), "cspad.data") is None


def test_value_objects_are_frozen() -> None:
    geometry = parse_geometry(cspad_text(), "cspad.data")
    with pytest.raises(dataclasses.FrozenInstanceError):
        geometry.segments[0].x0 = 1.0  # type: ignore[misc]


def test_new_style_flat_file_without_ip_and_with_crlf() -> None:
    text = "# CALIB_TYPE geometry\r\n\r\n"
    text += "      CAMERA  0  EPIX10KA:V1  0  20248 -20908 -60  0 0 0  -0.26 -0.26 0.06\r\n"
    text += "      CAMERA  0  EPIX10KA:V1  1 -20144 -20823  10  0 0 0  -0.002 -0.003 0.25\r\n"
    geometry = parse_geometry(text, "epix.data")
    assert geometry.tops() == (("CAMERA", 0),)
    assert len(geometry.segments) == 2


def test_numbers_in_all_spellings() -> None:
    text = "IP 0 D:V1 0  +1.5 -.5 1e6  90. 0 0  1E-3 -0 0\n"
    seg = parse_geometry(text, "g").segments[0]
    assert (seg.x0, seg.y0, seg.z0, seg.rot_z, seg.tilt_z) == (1.5, -0.5, 1e6, 90.0, 0.001)


def test_wrong_field_count() -> None:
    expect_error(HEADER + "IP 0 CSPAD:V2 0 0 0 0 0 0 0 0 0\n", "line 11", "12 fields, expected 13")
    expect_error(HEADER + "IP 0 CSPAD:V2 0 0 0 0 0 0 0 0 0 0 0\n", "line 11", "14 fields")
    expect_error("IP 0 D 0 0 0 0 0 0 0 0 0 0 # where D sits\n", "line 1", "'#' comments are allowed only")


def test_indented_comment_is_refused() -> None:
    expect_error("IP 0 D 0 0 0 0 0 0 0 0 0 0\n   # indented\n", "line 2", "column 0")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("IP x D 0 0 0 0 0 0 0 0 0 0", "parent_index 'x' is not a non-negative integer"),
        ("IP 0 D -1 0 0 0 0 0 0 0 0 0", "object_index '-1' is not a non-negative integer"),
        ("IP 0 D 1.0 0 0 0 0 0 0 0 0 0", "object_index '1.0'"),
        ("IP 0 D 0 0 abc 0 0 0 0 0 0 0", "y0 'abc' is not a finite number"),
        ("IP 0 D 0 0 0 0 0 0 0 nan 0 0", "tilt_z 'nan' is not a finite number"),
        ("IP 0 D 0 0 0 0 inf 0 0 0 0 0", "rot_z 'inf'"),
        ("IP 0 D 0 0 0 1_000 0 0 0 0 0 0", "z0 '1_000'"),
        ("IP 0 D 0 0 0 0 0 0 0 0 0 1e999", "tilt_x '1e999'"),
    ],
)
def test_non_numeric_fields(line: str, fragment: str) -> None:
    expect_error(f"# header\n{line}\n", "line 2", fragment)


def test_duplicate_link() -> None:
    text = "QUAD:V2 0 SENS2X1:V1 3 0 0 0 0 0 0 0 0 0\nIP 0 QUAD:V2 0 0 0 0 0 0 0 0 0 0\n"
    text += "QUAD:V2 0 SENS2X1:V1 3 5 5 0 0 0 0 0 0 0\n"
    expect_error(text, "line 3", "SENS2X1:V1 3 in QUAD:V2 0 is already placed on line 1")


def test_parent_placed_twice_is_ambiguous() -> None:
    text = "IP 0 CSPAD:V2 0 0 0 0 0 0 0 0 0 0\nCSPAD:V2 0 QUAD:V2 1 0 0 0 0 0 0 0 0 0\n"
    text += "QUAD:V2 1 SENS2X1:V1 0 0 0 0 0 0 0 0 0 0\nIP 0 QUAD:V2 1 7 7 0 0 0 0 0 0 0\n"
    expect_error(text, "line 4", "QUAD:V2 1 is placed again (first on line 2)", "ambiguous")


def test_cycle() -> None:
    text = "IP 0 A 0 0 0 0 0 0 0 0 0 0\nA 0 S 0 0 0 0 0 0 0 0 0 0\nC 0 B 0 0 0 0 0 0 0 0 0 0\n"
    text += "B 0 C 0 0 0 0 0 0 0 0 0 0\n"
    message = expect_error(text, "cycle", "every object must lead up to a top")
    assert "B 0 -> C 0 -> B 0" in message or "C 0 -> B 0 -> C 0" in message


def test_self_parent_is_a_cycle() -> None:
    expect_error("IP 0 X 0 0 0 0 0 0 0 0 0 0\nA 0 A 0 0 0 0 0 0 0 0 0 0\n", "line 2", "cycle (A 0 -> A 0)")


def test_two_tops_mean_a_typo() -> None:
    text = cspad_text().replace("QUAD:V2       2 SENS2X1:V1    5", "QUAD:V2       5 SENS2X1:V1    5")
    expect_error(text, "2 separate tops", "QUAD:V2 5 (line 32)", "IP 0 (line 48)", "mistyped")


def test_no_data() -> None:
    expect_error(HEADER + "\n\n", "no geometry lines")
    expect_error("", "no geometry lines")
