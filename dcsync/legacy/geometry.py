"""Psana geometry text (ctype ``geometry``): validate it before it is stored, byte for byte, as text.

Layout::

    # TITLE      Geometry parameters of CSPAD          <- comments: '#' in column 0
    # HDR PARENT IND  OBJECT IND  X0 Y0 Z0  ROT-Z ROT-Y ROT-X  TILT-Z TILT-Y TILT-X
    QUAD:V2   0  SENS2X1:V1 0  21136 -21106 0  90 0 0  0.1 0 0
    CSPAD:V2  0  QUAD:V2    0  -4500 -4500 0  90 0 0  0 0 0
    IP        0  CSPAD:V2   0  0 0 1000000    0 0 0  0 0 0

Each data line has exactly 13 whitespace-separated fields: parent name and index, object name and
index (non-negative integers), the object's origin X0 Y0 Z0 in µm in the parent frame, rotations
about Z, Y, X and tilts about Z, Y, X in degrees (finite numbers). Lines link (parent, index) to
(object, index). Rules, as psana's reader needs them: a link appears once; an object that holds
others is placed once (leaves may reuse an index under another parent, as old CSPAD files number
sensors 0..7 in each quad); links form no cycle; and everything leads up to one top, a parent that
is not itself placed (usually ``IP``). Blank lines are ignored.

Parsing never rewrites the text: dcsync stores what the user gave, and this module only says whether
psana would read it as a sound hierarchy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dcsync.errors import InputError

NFIELDS = 13
_INDEX = re.compile(r"^[0-9]+$")
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
FIELD_NAMES = (
    "parent", "parent_index", "object", "object_index", "x0", "y0", "z0",
    "rot_z", "rot_y", "rot_x", "tilt_z", "tilt_y", "tilt_x",
)  # fmt: skip


@dataclass(frozen=True)
class GeometryLine:
    """One placement: ``object[object_index]`` sits in ``parent[parent_index]`` at (x0, y0, z0)."""

    parent: str
    parent_index: int
    object: str
    object_index: int
    x0: float
    y0: float
    z0: float
    rot_z: float
    rot_y: float
    rot_x: float
    tilt_z: float
    tilt_y: float
    tilt_x: float

    @property
    def key(self) -> tuple[str, int]:
        return (self.object, self.object_index)

    @property
    def parent_key(self) -> tuple[str, int]:
        return (self.parent, self.parent_index)


@dataclass(frozen=True)
class Geometry:
    """A parsed geometry file: its comment lines (as written, ``#`` included) and placements in order."""

    header: tuple[str, ...]
    segments: tuple[GeometryLine, ...]

    def tops(self) -> tuple[tuple[str, int], ...]:
        """The parents that are not themselves placed (usually just ``("IP", 0)``), in file order."""
        placed = {seg.key for seg in self.segments}
        out: dict[tuple[str, int], None] = {}
        for seg in self.segments:
            if seg.parent_key not in placed:
                out.setdefault(seg.parent_key)
        return tuple(out)

    def children(self, parent: str, index: int) -> tuple[GeometryLine, ...]:
        return tuple(seg for seg in self.segments if seg.parent_key == (parent, index))


def parse_geometry(text: str, source: str) -> Geometry:
    """Parse and check geometry text; raise :class:`InputError` naming ``source`` and the line."""
    header: list[str] = []
    segments: list[GeometryLine] = []
    linenos: list[int] = []
    links: dict[tuple[str, int, str, int], int] = {}
    for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.rstrip("\r")
        if line.startswith("#"):
            header.append(line)
            continue
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            raise InputError(
                f"{source}: line {n}: a comment must start with '#' in column 0 (psana reads it as data)"
            )
        seg = _parse_line(line, f"{source}: line {n}")
        link = (seg.parent, seg.parent_index, seg.object, seg.object_index)
        if link in links:
            raise InputError(
                f"{source}: line {n}: {seg.object} {seg.object_index} in {seg.parent} {seg.parent_index} "
                f"is already placed on line {links[link]}"
            )
        links[link] = n
        segments.append(seg)
        linenos.append(n)
    if not segments:
        raise InputError(f"{source}: no geometry lines (only comments or blank lines)")
    geometry = Geometry(tuple(header), tuple(segments))
    _check_hierarchy(geometry, linenos, source)
    return geometry


def check_geometry_text(text: str, source: str) -> None:
    """Raise :class:`InputError` if ``text`` is not sound geometry; for callers that keep the text."""
    parse_geometry(text, source)


def _parse_line(line: str, where: str) -> GeometryLine:
    fields = line.split()
    if len(fields) != NFIELDS:
        hint = "; '#' comments are allowed only on their own line" if "#" in line else ""
        raise InputError(
            f"{where}: {len(fields)} fields, expected {NFIELDS} "
            f"(parent index object index x0 y0 z0 rot_z rot_y rot_x tilt_z tilt_y tilt_x){hint}"
        )
    for i in (1, 3):
        if not _INDEX.match(fields[i]):
            raise InputError(f"{where}: {FIELD_NAMES[i]} {fields[i]!r} is not a non-negative integer")
    numbers: list[float] = []
    for i in range(4, NFIELDS):
        value = float(fields[i]) if _NUMBER.match(fields[i]) else math.nan
        if not math.isfinite(value):
            raise InputError(f"{where}: {FIELD_NAMES[i]} {fields[i]!r} is not a finite number")
        numbers.append(value)
    return GeometryLine(fields[0], int(fields[1]), fields[2], int(fields[3]), *numbers)


def _check_hierarchy(geometry: Geometry, linenos: list[int], source: str) -> None:
    """Parents must be placed at most once, links may not loop, and everything must meet at one top.

    Leaves may repeat an (object, index) under different parents: old CSPAD files number the eight
    SENS2X1 sensors 0..7 inside each QUAD. A parent placed twice would make its children's
    position ambiguous (psana silently takes the first), so that is refused.
    """
    parents = {seg.parent_key for seg in geometry.segments}
    parent_of: dict[tuple[str, int], tuple[str, int]] = {}
    first_line: dict[tuple[str, int], int] = {}
    for seg, n in zip(geometry.segments, linenos, strict=True):
        if seg.key in parents and seg.key in parent_of:
            raise InputError(
                f"{source}: line {n}: {seg.object} {seg.object_index} is placed again (first on line "
                f"{first_line[seg.key]}); it holds other objects, so their position would be ambiguous"
            )
        if seg.key in parents:
            parent_of[seg.key] = seg.parent_key
            first_line[seg.key] = n
    done: set[tuple[str, int]] = set()  # parents already known to lead up to a top
    for start in parent_of:
        path: list[tuple[str, int]] = []
        node = start
        while node in parent_of and node not in done:
            if node in path:
                names = " -> ".join(f"{name} {index}" for name, index in [*path[path.index(node) :], node])
                raise InputError(
                    f"{source}: line {first_line[node]}: the hierarchy has a cycle ({names}); "
                    "every object must lead up to a top such as IP"
                )
            path.append(node)
            node = parent_of[node]
        done.update(path)
    tops = geometry.tops()
    if len(tops) > 1:
        where = {seg.parent_key: n for seg, n in reversed(list(zip(geometry.segments, linenos, strict=True)))}
        names = ", ".join(f"{name} {index} (line {where[name, index]})" for name, index in tops)
        raise InputError(
            f"{source}: the hierarchy has {len(tops)} separate tops: {names}; psana uses only one, so "
            "every object must lead up to the same top (a mistyped parent name or index?)"
        )
