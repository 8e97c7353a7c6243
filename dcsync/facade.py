"""The design's facade, for scripts written against the Detector Calibration Store's names:
``DCStore`` → ``DCType`` → ``DCRange`` → ``DCVersion``.

These are read-only views of HEAD at the moment of the call. Times here follow the design's own
convention: ``tsp`` accepts unix seconds (int or float), ISO 8601 text, a datetime or ``"now"``
(the same forms as every dcsync entry point), and
``begin()``/``end()``/``tsprod()`` return unix seconds as float (``end()`` is None when open).
Use :class:`dcsync.Repository` for nanosecond precision and for writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcsync.errors import DetectorNotFound, UsageError
from dcsync.model.names import RangeKey
from dcsync.model.objects import ParValue, Payload
from dcsync.model.times import NS, TimeLike
from dcsync.repo.history import HistoryEntry, level_history
from dcsync.repo.repository import Repository
from dcsync.workspace.workspace import Workspace


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / NS


class _Level:
    """What every level has: parameters and history."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def _level(self) -> tuple[str | None, str | None, str | None]:
        """(ctype, range, version) naming this level, None from the level below it on."""
        return None, None, None

    def _pars(self) -> dict[str, ParValue]:
        raise NotImplementedError

    def dictpars(self) -> dict[str, ParValue]:
        return dict(self._pars())

    def par(self, key: str, default: ParValue | None = None) -> ParValue | None:
        return self._pars().get(key, default)

    def history(self) -> list[HistoryEntry]:
        return level_history(self._repo, *self._level())


class DCStore(_Level):
    """One detector: ``DCStore(path_to_h5)``, or as the design has it ``DCStore(cpath, detname)``
    where ``cpath`` is a calib directory (a workspace) or a detector's file, and ``detname`` a
    detector name or an alias."""

    def __init__(self, path_or_workspace: Path | str | Workspace, detname: str | None = None) -> None:
        if isinstance(path_or_workspace, Workspace):
            repo = path_or_workspace.repository(detname) if detname is not None else None
        else:
            path = Path(path_or_workspace).expanduser()
            if path.is_file():
                repo = _open_file(path, detname)
            elif detname is not None:
                repo = Workspace(path).repository(detname)
            else:
                repo = Repository.open(path)  # not a file: says so, naming the path
        if repo is None:
            raise UsageError("DCStore(workspace, detname): a workspace needs a detector name or alias")
        super().__init__(repo)

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> DCStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pars(self) -> dict[str, ParValue]:
        return dict(self._repo.root().pars)

    def detname(self) -> str:
        return self._repo.root().detname

    def dettype(self) -> str:
        return self._repo.root().dettype

    def detid(self) -> str:
        return self._repo.root().detid

    def tscfile(self) -> float:
        return self._repo.root().created / NS

    def predecessor(self) -> str:
        return self._repo.root().predecessor

    def successor(self) -> str:
        return self._repo.root().successor

    def ctypes(self) -> list[str]:
        return self._repo.ctypes()

    def ctypeobj(self, ctype: str) -> DCType:
        self._repo.ctype_tree(ctype)  # raises CtypeNotFound
        return DCType(self._repo, ctype)

    def get(self, ctype: str, tsp: TimeLike | None = None, vers: str | None = None) -> Payload:
        """The constant valid at ``tsp`` (default now); ``vers`` picks a version by key prefix."""
        return self._repo.get(ctype, tsp, vers).value


def _open_file(path: Path, detname: str | None) -> Repository:
    """A detector's file, checked to hold ``detname``: its own name, or an alias of it in the
    workspace the file sits in. A script that names one detector must never read another's
    constants because a path was wrong."""
    repo = Repository.open(path)
    try:
        held = repo.detname
        if detname is None or detname == held:
            return repo
        ws = Workspace.containing(path)
        aliases = ws.aliases() if ws is not None else {}
        target = aliases.get(detname)
        if target is not None and target.detname == held:
            return repo
        own = sorted(a.alias for a in aliases.values() if a.detname == held)
        also = f" (aliases: {', '.join(own)})" if own else ""
        where = f"; in {ws.root} it is an alias of {target.detname}" if target is not None and ws else ""
        raise DetectorNotFound(f"{path} holds detector {held}{also}, not {detname!r}{where}")
    except BaseException:
        repo.close()
        raise


class DCType(_Level):
    def __init__(self, repo: Repository, ctype: str) -> None:
        super().__init__(repo)
        self._ctype = ctype

    def _level(self) -> tuple[str | None, str | None, str | None]:
        return self._ctype, None, None

    def _pars(self) -> dict[str, ParValue]:
        return dict(self._repo.ctype_tree(self._ctype).pars)

    def ctype(self) -> str:
        return self._ctype

    def ranges(self) -> list[str]:
        return [key for key, _ in self._repo.ranges(self.ctype())]

    def rangeobj(self, key: str) -> DCRange:
        found, _ = self._repo.find_range(self.ctype(), key)
        return DCRange(self._repo, self.ctype(), found)


class DCRange(_Level):
    def __init__(self, repo: Repository, ctype: str, key: RangeKey) -> None:
        super().__init__(repo)
        self._ctype, self._range = ctype, key

    def _level(self) -> tuple[str | None, str | None, str | None]:
        return self._ctype, self._range, None

    def _tree(self) -> Any:
        return self._repo.find_range(self._ctype, self._range)[1]

    def _pars(self) -> dict[str, ParValue]:
        return dict(self._tree().pars)

    def range(self) -> str:
        return self._range

    def begin(self) -> float:
        return float(self._tree().begin) / NS

    def end(self) -> float | None:
        return _seconds(self._tree().end)

    def versions(self) -> list[str]:
        return list(self._tree().ordered())

    def versdef(self) -> str | None:
        """The version lookups return: the pinned default, else the latest produced."""
        return self._tree().effective()  # type: ignore[no-any-return]

    def versobj(self, version: str) -> DCVersion:
        loc = self._repo.find_version(self._ctype, version, range=self._range)
        return DCVersion(self._repo, self._ctype, loc.range, loc.version)


class DCVersion(_Level):
    def __init__(self, repo: Repository, ctype: str, range: RangeKey, version: str) -> None:
        super().__init__(repo)
        self._ctype, self._range, self._version = ctype, range, version

    def _level(self) -> tuple[str | None, str | None, str | None]:
        return self._ctype, self._range, self._version

    def _entry(self) -> Any:
        return self._repo.find_version(self._ctype, self._version, range=self._range).entry

    def _pars(self) -> dict[str, ParValue]:
        return dict(self._entry().pars)

    def version(self) -> str:
        return self._version

    def tsprod(self) -> float:
        return float(self._entry().tsprod) / NS

    def calib(self) -> Payload:
        return self._repo.store.read_payload(self._entry().obj)
