"""Psana geometry text (ctype ``geometry``): validate it before it is stored, byte for byte, as text.

Layout::

    # TITLE      Geometry parameters of CSPAD          <- comment lines: '#' first (after blanks)
    # HDR PARENT IND  OBJECT IND  X0 Y0 Z0  ROT-Z ROT-Y ROT-X  TILT-Z TILT-Y TILT-X
    CSPAD:V2  0  QUAD:V2  0  -4500 -4500 0  90 0 0  0.1 0 0
    IP        0  CSPAD:V2 0  0 0 1000000  0 0 0  0 0 0

Each data line has exactly 13 whitespace-separated fields: parent name and index, object name and
index (non-negative integers), the object's origin X0 Y0 Z0 in µm in the parent frame, rotations
about Z, Y, X and tilts about Z, Y, X in degrees (finite numbers). Lines link (parent, index) to
(object, index); an object may be defined once, the links may not form a cycle, and a parent that is
not itself defined (usually ``IP``) is a top of the hierarchy. Blank lines are ignored.

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
    lineno: dict[tuple[str, int], int] = {}
    for n, raw in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            header.append(line)
            continue
        seg = _parse_line(stripped, f"{source}: line {n}")
        if seg.key in lineno:
            raise InputError(
                f"{source}: line {n}: {seg.object} {seg.object_index} is already defined on line "
                f"{lineno[seg.key]}: each (object, index) may be placed only once"
            )
        lineno[seg.key] = n
        segments.append(seg)
    if not segments:
        raise InputError(f"{source}: no geometry lines (only comments or blank lines)")
    geometry = Geometry(tuple(header), tuple(segments))
    _check_acyclic(geometry, lineno, source)
    return geometry


def check_geometry_text(text: str, source: str) -> None:
    """Raise :class:`InputError` if ``text`` is not sound geometry; for callers that keep the text."""
    parse_geometry(text, source)


def _parse_line(line: str, where: str) -> GeometryLine:
    fields = line.split()
    if len(fields) != NFIELDS:
        raise InputError(
            f"{where}: {len(fields)} fields, expected {NFIELDS} "
            "(parent index object index x0 y0 z0 rot_z rot_y rot_x tilt_z tilt_y tilt_x)"
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


def _check_acyclic(geometry: Geometry, lineno: dict[tuple[str, int], int], source: str) -> None:
    """Follow each placement up to a top; meeting a placement twice on one walk is a cycle."""
    parent_of = {seg.key: seg.parent_key for seg in geometry.segments}
    done: set[tuple[str, int]] = set()  # placements already known to reach a top
    for seg in geometry.segments:
        path: list[tuple[str, int]] = []
        node = seg.key
        while node in parent_of and node not in done:
            if node in path:
                cycle = [*path[path.index(node) :], node]
                names = " -> ".join(f"{name} {index}" for name, index in cycle)
                raise InputError(
                    f"{source}: line {lineno[node]}: the hierarchy has a cycle ({names}); "
                    "every object must lead up to a top such as IP"
                )
            path.append(node)
            node = parent_of[node]
        done.update(path)
