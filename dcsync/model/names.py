"""Names users type: detector names, ctypes, range keys and version keys, and their validation.

A detector name is ``<dettype>-<detid>``, lower case: the dettype is a word of letters and digits
(words joined by single ``_``) starting with a letter, the detid words of letters and digits joined
by single ``.``, ``_`` or ``-``; so no part starts or ends with a separator or holds two in a row, and
no name ends in ``.h5`` (every command reads that as a path to a file). A ctype is
``[a-z][a-z0-9_]*``. A range key is ``<begin>-<end|end>`` in exact
unix seconds (the legacy calib directory's convention, kept exact for sub-second times). A version
key is 12 hex digits, random enough that two sites never pick the same one, so merging histories
never renumbers anything.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from typing import NewType

import xxhash

from dcsync.errors import AmbiguousName, InvalidName, UsageError
from dcsync.model.times import NS, format_seconds

VersionKey = NewType("VersionKey", str)
RangeKey = NewType("RangeKey", str)

_DETNAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*-[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
FILE_SUFFIX = ".h5"
_CTYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}\Z")
_PAR_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}\Z")
VERSION_KEY_LEN = 12
_VERSION_KEY = re.compile(rf"^[0-9a-f]{{{VERSION_KEY_LEN}}}\Z")

# The calibration types psana knows: adding one of these never needs --new-ctype (docs/cli.md, add).
PSANA_CTYPES = (
    "pedestals",
    "pixel_status",
    "pixel_rms",
    "pixel_gain",
    "pixel_mask",
    "pixel_bkgd",
    "common_mode",
    "geometry",
    "pixel_offset",
    "status_data",
    "status_extra",
)


def check_detname(name: str) -> str:
    """Validate a detector name; path separators, ``..`` and other characters are refused, and so
    are empty parts and stray separators (``a.-b``), which psana never writes and which make file
    names no one can tell apart by eye."""
    if not isinstance(name, str) or len(name) > 200 or not _DETNAME.match(name):
        raise InvalidName(
            f"invalid detector name {name!r}: use <dettype>-<detid>, lower case; the dettype is "
            "letters and digits (and single '_') starting with a letter, the detid letters and digits "
            "joined by single '.', '_' or '-' (e.g. epix100a-3925868555, cspad-cxids2.0-cspad.0)"
        )
    if name.endswith(FILE_SUFFIX):
        raise InvalidName(
            f"invalid detector name {name!r}: a name ending in {FILE_SUFFIX} reads as a file path; "
            f"the detector {name.removesuffix(FILE_SUFFIX)!r} has the file {name!r}"
        )
    return name


def detname_to_create(text: str) -> str:
    """The detector ``dcsync new TEXT`` creates: ``TEXT`` itself, or, for its file name
    ``<detname>.h5`` (what a user sees in the workspace and every other command accepts), the
    detector that file belongs to. A path is refused: ``new`` always creates the file at its
    place in the workspace, ``<dettype>/<detname>.h5``."""
    if not isinstance(text, str) or not text.endswith(FILE_SUFFIX):
        return check_detname(text)
    if "/" in text:
        raise InvalidName(
            f"invalid detector name {text!r}: give the detector's name (or its file name), not a path; "
            "its file is always made at <workspace>/<dettype>/<dettype>-<detid>.h5"
        )
    try:
        return check_detname(text.removesuffix(FILE_SUFFIX))
    except InvalidName as exc:
        raise InvalidName(f"invalid detector file name {text!r}: {exc.message}") from exc


def split_detname(name: str) -> tuple[str, str]:
    check_detname(name)
    dettype, detid = name.split("-", 1)
    return dettype, detid


def check_ctype(ctype: str) -> str:
    if not isinstance(ctype, str) or not _CTYPE.match(ctype):
        raise InvalidName(
            f"invalid ctype {ctype!r}: use lower-case letters, digits and '_', starting with a letter"
        )
    return ctype


def check_known_ctype(ctype: str, existing: Iterable[str], where: str, *, new_ctype: bool) -> str:
    """A ctype an addition may use: one psana knows, one ``where`` already has, or one the caller
    declares new. A misspelling (``pedestal``) would otherwise start a ctype of its own that no
    lookup of the real one ever sees, and nobody would notice; the error names the close matches.
    """
    check_ctype(ctype)
    have = set(existing)
    if new_ctype or ctype in PSANA_CTYPES or ctype in have:
        return ctype
    close = difflib.get_close_matches(ctype, sorted(have | set(PSANA_CTYPES)), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise UsageError(
        f"{where} has no ctype {ctype!r} and psana knows none of that name: {hint}"
        "To start a new ctype, say so with --new-ctype (new_ctype=True in Python)."
    )


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.match(alias) or ".." in alias:
        raise InvalidName(
            f"invalid alias {alias!r}: letters, digits and '._:+-', no spaces or path separators"
        )
    return alias


def check_par_key(key: str) -> str:
    if not isinstance(key, str) or not _PAR_KEY.match(key):
        raise InvalidName(f"invalid parameter name {key!r}")
    return key


def range_key(begin: int, end: int | None) -> RangeKey:
    return RangeKey(f"{format_seconds(begin)}-{'end' if end is None else format_seconds(end)}")


def resolve_range(name: str, keys: list[str], where: str) -> str:
    """A range by its exact key, or by its begin alone when one range begins there.

    Range keys are not prefix-free ("1-2" and "1-20"), so arbitrary prefixes would silently pick
    the wrong range; '' means no match, several raise :class:`~dcsync.errors.AmbiguousName`.
    """
    if name in keys:
        return name
    hits = [k for k in keys if k.startswith(name + "-")]
    if len(hits) > 1:
        raise AmbiguousName(f"{where} has several ranges beginning at {name}: {', '.join(sorted(hits)[:6])}")
    return hits[0] if hits else ""


def check_version_key(key: str) -> VersionKey:
    """A version key given whole (kept from elsewhere, as a promotion keeps the source's)."""
    if not isinstance(key, str) or not _VERSION_KEY.match(key):
        raise InvalidName(f"invalid version key {key!r}: {VERSION_KEY_LEN} lower-case hex digits")
    return VersionKey(key)


def new_version_key(salt: str) -> VersionKey:
    """A fresh version key: a hash of the caller's salt (payload id, time) and 16 random bytes."""
    digest = xxhash.xxh3_64_hexdigest(salt.encode() + os.urandom(16))
    return VersionKey(digest[:VERSION_KEY_LEN])


def resolve_prefix(prefix: str, candidates: list[str], what: str, where: str) -> str:
    """Resolve a unique prefix among candidates, as git does with commit ids.

    An exact match always wins. Returns '' for no match (the caller raises its own NotFound, which
    names what was looked for) and raises :class:`~dcsync.errors.AmbiguousName` for several.
    """
    if prefix in candidates:
        return prefix
    hits = [c for c in candidates if c.startswith(prefix)] if prefix else []
    if len(hits) > 1:
        shown = ", ".join(sorted(hits)[:6])
        raise AmbiguousName(f"{what} prefix {prefix!r} is ambiguous in {where}: matches {shown}")
    return hits[0] if hits else ""


__all__ = ["NS", "RangeKey", "VersionKey"]
