"""A psana calib directory, read into a neutral description that an importer can act on.

Layout (LEGACY-FORMATS.md, "Legacy calib directory")::

    <exp>/calib/                                   <- the experiment is the folder above calib/
      <Group>::CalibV1/                            <- e.g. Epix100a::CalibV1
        <src>/                                     <- e.g. XppGon.0:Epix100a.1
          <ctype>/                                 <- e.g. pedestals
            <first>-<last|end>.data                <- a current constant (dcsync.legacy.finder)
            <first>-<last|end>.data-<timestamp>    <- a backup psana's deploy made before overwriting
            HISTORY                                <- lines of key:value tokens, one per deployment

Every entry is classified, nothing is dropped silently: a :class:`Constant`, a :class:`Backup` (of
which file, when) or an :class:`Ignored` with the reason psana would not read it. HISTORY lines are
parsed into :class:`HistoryEntry` (all keys kept, known ones typed); a line that is not ``key:value``
tokens is a :class:`HistoryProblem`, reported rather than fatal, because HISTORY is provenance and
never decides which file wins. Reading the constants' contents is :mod:`dcsync.legacy.inputs`' job
(:func:`load_file`); this module only lists and names. A folder that cannot be listed, or a HISTORY
that cannot be read, raises :class:`InputError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from dcsync.errors import InputError, InvalidName
from dcsync.legacy.finder import DATA_SUFFIX, RunRange, parse_data_name, select_calib_file
from dcsync.legacy.inputs import load_constant
from dcsync.legacy.textarray import file_error
from dcsync.model.names import check_detname

GROUP_SUFFIX = "::CalibV1"
HISTORY = "HISTORY"
BACKUP_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"  # what psana's deploy_calib_* append after "<name>.data-"
_HISTORY_KEYS = ("file", "copy_of", "exp", "run", "comment", "user", "host", "cptime", "zone", "cmd")


@dataclass(frozen=True)
class Constant:
    """A current file: psana's finder considers it for the runs of ``runs``."""

    name: str
    path: Path
    runs: RunRange


@dataclass(frozen=True)
class Backup:
    """``<of>-<timestamp>``: the content ``of`` had before a deploy overwrote it at ``saved`` (local
    time of the machine that deployed, as psana writes it, without a zone)."""

    name: str
    path: Path
    of: str
    runs: RunRange
    saved: datetime


@dataclass(frozen=True)
class Ignored:
    """An entry psana never reads, and why; ``breaks_psana`` when psana's finder fails on it."""

    name: str
    path: Path
    reason: str
    breaks_psana: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    """One HISTORY line: its ``key:value`` tokens in order (unknown keys kept, values as written)."""

    line: int
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        """The first value of ``key`` on the line (psana writes each key once), or None."""
        return next((v for k, v in self.fields if k == key), None)

    @property
    def file(self) -> str | None:
        return self.get("file")

    @property
    def copy_of(self) -> str | None:
        return self.get("copy_of")

    @property
    def run(self) -> int | None:
        """The ``run`` token as a number (psana writes ``0137``); None when absent or not a number."""
        value = self.get("run")
        return int(value) if value is not None and value.isascii() and value.isdigit() else None

    @property
    def removed(self) -> bool:
        """Whether the line records a deletion (``cmd:rm``) rather than a deployment."""
        return self.get("cmd") == "rm"

    def known(self) -> dict[str, str]:
        """The keys LEGACY-FORMATS.md names (file, copy_of, exp, run, comment, user, host, cptime,
        zone, cmd), those present, for an importer's commit metadata."""
        return {k: v for k in _HISTORY_KEYS if (v := self.get(k)) is not None}


@dataclass(frozen=True)
class HistoryProblem:
    """A HISTORY line that is not ``key:value`` tokens: reported, the other lines still count."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True)
class CtypeFolder:
    """``<Group>::CalibV1/<source>/<ctype>/``, every entry classified."""

    path: Path
    group: str
    source: str
    ctype: str
    constants: tuple[Constant, ...]  # ordered by run range, then name
    backups: tuple[Backup, ...]  # ordered by the file they back up, then by time saved
    ignored: tuple[Ignored, ...]  # ordered by name
    history: tuple[HistoryEntry, ...]  # in file order
    history_problems: tuple[HistoryProblem, ...]

    def select(self, run: int) -> Constant | None:
        """The constant psana's finder picks for ``run`` (ties between names of one range go to the
        name sorted last, since psana's own choice there depends on the directory listing order)."""
        name = select_calib_file([c.name for c in self.constants], run)
        return next((c for c in self.constants if c.name == name), None)

    def backups_of(self, name: str) -> tuple[Backup, ...]:
        """The backups of one current file name, oldest first."""
        return tuple(b for b in self.backups if b.of == name)

    def same_range(self) -> tuple[tuple[Constant, ...], ...]:
        """Constants whose names give the same run range (``5-10.data``, ``05-10.data``): psana picks
        between them by listing order, so an importer must choose and say so."""
        by_range: dict[RunRange, list[Constant]] = {}
        for c in self.constants:
            by_range.setdefault(c.runs, []).append(c)
        return tuple(tuple(group) for group in by_range.values() if len(group) > 1)


@dataclass(frozen=True)
class CalibDir:
    """A whole calib directory: its ctype folders and whatever psana would not look at."""

    path: Path
    experiment: str | None
    folders: tuple[CtypeFolder, ...]  # ordered by group, source, ctype
    ignored: tuple[Ignored, ...]  # entries above the ctype folders that psana never reads


def experiment_of(path: Path) -> str | None:
    """The experiment a calib path implies: the folder above ``calib/`` (``/reg/d/psdm/XPP/xpp12345/
    calib`` -> ``xpp12345``), or None when the path does not end in ``calib`` under a named folder."""
    parts = Path(os.path.abspath(path)).parts
    if len(parts) < 3 or parts[-1] != "calib":
        return None
    return parts[-2]


def psana_detname(group: str, source: str) -> str:
    """The detector name psana's ``DCFileName`` builds for a source without a detector id:
    ``<dettype>-<source with ':' as '-'>``, the dettype being the group lower-cased
    (``CsPad::CalibV1`` + ``CxiDs2.0:Cspad.0`` -> ``cspad-CxiDs2.0-Cspad.0``, mixed case kept)."""
    dettype = group.removesuffix(GROUP_SUFFIX)
    if dettype == group or not dettype or not source:
        raise InputError(f"{group}/{source}: not a <Group>{GROUP_SUFFIX}/<source> pair of a calib directory")
    return f"{dettype.lower()}-{source.replace(':', '-')}"


def detector_name(folder: CtypeFolder) -> str:
    """:func:`psana_detname` for a folder, if dcsync's detector-name rules accept it; otherwise an
    :class:`InputError` naming the folder and the rule, so an importer can ask for a mapping."""
    name = psana_detname(folder.group, folder.source)
    try:
        return check_detname(name)
    except InvalidName as exc:
        raise InputError(
            f"{folder.path.parent}: psana's name for this source, {name!r}, is not a dcsync detector "
            f"name ({exc.message}); map the source {folder.source!r} to a detector name"
        ) from exc


def load_file(folder: CtypeFolder, item: Constant | Backup) -> NDArray[Any] | str:
    """The value of one classified file, read by :func:`dcsync.legacy.inputs.load_constant` in the
    folder's ctype: geometry as text, byte for byte; anything else as a text array with its dtype
    and shape (a backup's suffix is its timestamp, which that reader also takes as a text array)."""
    return load_constant(item.path, folder.ctype)


def read_calib_dir(path: Path) -> CalibDir:
    """Read and classify a whole calib directory (the contents of its files are not read)."""
    path = Path(path)
    folders: list[CtypeFolder] = []
    ignored: list[Ignored] = []
    for group in _entries(path):
        if not group.name.endswith(GROUP_SUFFIX) or group.name == GROUP_SUFFIX:
            ignored.append(Ignored(group.name, group, f"not a <Group>{GROUP_SUFFIX} folder"))
        elif not group.is_dir():
            ignored.append(Ignored(group.name, group, "not a folder"))
        else:
            for source in _entries(group):
                if not source.is_dir():
                    ignored.append(Ignored(source.name, source, "not a source folder"))
                    continue
                for ctype in _entries(source):
                    if ctype.is_dir():
                        folders.append(read_ctype_folder(ctype))
                    else:
                        ignored.append(Ignored(ctype.name, ctype, "not a ctype folder"))
    return CalibDir(path, experiment_of(path), tuple(folders), tuple(ignored))


def read_ctype_folder(path: Path) -> CtypeFolder:
    """Classify one ``<Group>::CalibV1/<source>/<ctype>/`` folder's entries and parse its HISTORY."""
    path = Path(path)
    constants: list[Constant] = []
    backups: list[Backup] = []
    ignored: list[Ignored] = []
    history: tuple[HistoryEntry, ...] = ()
    problems: tuple[HistoryProblem, ...] = ()
    for entry in _entries(path):
        name = entry.name
        if name == HISTORY and entry.is_file():
            history, problems = parse_history(_read_bytes(entry))
            continue
        if not entry.is_file():
            ignored.append(Ignored(name, entry, "not a regular file"))
            continue
        parsed = parse_data_name(name)
        backup = _backup(name, entry)
        if isinstance(parsed, RunRange):
            constants.append(Constant(name, entry, parsed))
        elif isinstance(backup, Backup):
            backups.append(backup)
        else:
            ignored.append(backup or Ignored(name, entry, parsed.reason, parsed.breaks_psana))
    constants.sort(key=lambda c: (c.runs.first, c.runs.last is None, c.runs.last or 0, c.name))
    backups.sort(key=lambda b: (b.of, b.saved, b.name))
    return CtypeFolder(
        path,
        path.parent.parent.name,
        path.parent.name,
        path.name,
        tuple(constants),
        tuple(backups),
        tuple(ignored),
        history,
        problems,
    )


def _backup(name: str, path: Path) -> Backup | Ignored | None:
    """``<name>.data-<timestamp>``: a backup of a current name, an ignored one, or None (no backup)."""
    of, marker, stamp = name.partition(DATA_SUFFIX + "-")
    if not marker:
        return None
    of += DATA_SUFFIX
    runs = parse_data_name(of)
    if not isinstance(runs, RunRange):
        return Ignored(name, path, f"a backup of {of!r}, which is not a psana file name ({runs.reason})")
    try:
        saved = datetime.strptime(stamp, BACKUP_TIME_FORMAT)
    except ValueError:
        return Ignored(name, path, f"a backup of {of!r} whose suffix {stamp!r} is not a psana timestamp")
    return Backup(name, path, of, runs, saved)


def parse_history(data: bytes) -> tuple[tuple[HistoryEntry, ...], tuple[HistoryProblem, ...]]:
    """Parse a HISTORY file: ``key:value`` tokens separated by whitespace, split at the first colon
    (``cptime:2024-05-31T10:03:41``); a token without a colon continues the previous value (psana
    writes comments with spaces as they come). Blank lines are skipped."""
    entries: list[HistoryEntry] = []
    problems: list[HistoryProblem] = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            problems.append(HistoryProblem(n, raw.decode("utf-8", "replace"), "not UTF-8 text"))
            continue
        if not text.strip():
            continue
        fields: list[tuple[str, str]] = []
        for token in text.split():
            key, colon, value = token.partition(":")
            if colon and key and key.replace("_", "").isalnum():
                fields.append((key, value))
            elif fields:
                fields[-1] = (fields[-1][0], f"{fields[-1][1]} {token}")
            else:
                break
        if not fields:
            problems.append(HistoryProblem(n, text, "does not start with a key:value token"))
        else:
            entries.append(HistoryEntry(n, tuple(fields)))
    return tuple(entries), tuple(problems)


def _entries(path: Path) -> Iterator[Path]:
    """A folder's entries, sorted by name so every report is the same on every file system."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise file_error(path, exc, "listing") from exc
    return (path / name for name in names)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise file_error(path, exc, "reading") from exc
