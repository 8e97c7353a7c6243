"""A workspace (a "calib directory"): ``.dcsync/`` plus detector repositories and alias files.

Layout::

    <root>/.dcsync/acl.toml            the location kind and access rules (dcsync.workspace.acl)
    <root>/.dcsync/config.toml         [remotes.*], [hooks] timeout
    <root>/.dcsync/hooks/              server-side and local hooks
    <root>/.dcsync/fetched/<detname>.h5  a detector fetched but not checked out yet (no HEAD)
    <root>/.dcsync/clone-unfinished    while a clone is under way or was cut short (sync clone)
    <root>/<dettype>/<dettype>-<detid>.h5   one repository per detector
    <root>/<dettype>/*.als             aliases, one per line: ``<alias> <detname>`` ('#' comments)

Anywhere a detector is named, its name, an alias, or a path to an ``.h5`` file works.
A file under ``<dettype>/`` always has a HEAD and its view: ``fetch`` keeps a detector the workspace
lacks in ``.dcsync/fetched/`` until a ``pull`` checks it out, so readers (dcsync's and plain HDF5
tools walking the calib directory) never meet a repository with nothing checked out.
Commands find the workspace from the current directory upwards.

Every repository opened through a workspace (:meth:`Workspace.repository`, :func:`open_repository`)
is built with the workspace's ACL and hooks as its commit guard (:mod:`dcsync.repo.guard`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from dcsync.errors import (
    AliasNotFound,
    AlreadyExists,
    DcsyncError,
    DetectorNotFound,
    InputError,
    UsageError,
    WorkspaceNotFound,
)
from dcsync.model.names import check_alias, check_detname, split_detname
from dcsync.repo.guard import DEFAULT_GUARD, CommitGuard, Move
from dcsync.repo.repository import Repository
from dcsync.store.hdf5 import HDF5Store
from dcsync.workspace.acl import ACL, current_identity

if TYPE_CHECKING:
    from dcsync.workspace.policy import Policy  # imported by policy(): reads never check one (start-up)

KINDS = ("local", "experiment", "repository")
CONFIG_DIR = ".dcsync"
ALIAS_FILE = "aliases.als"
FETCHED_DIR = "fetched"
REMOTES = "remotes/"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def is_fetched_copy(path: Path) -> bool:
    """Whether ``path`` is a fetched copy in ``<root>/.dcsync/fetched/`` (not checked out)."""
    parent = Path(path).resolve().parent
    return parent.name == FETCHED_DIR and parent.parent.name == CONFIG_DIR


@dataclass(frozen=True)
class Fetched:
    """A detector fetched from remotes but not checked out in this workspace (no HEAD yet)."""

    detname: str
    path: Path
    remotes: tuple[str, ...]  # the remotes it was fetched from

    def hint(self) -> str:
        source = f" from {', '.join(self.remotes)}" if self.remotes else ""
        remote = self.remotes[0] + " " if len(self.remotes) == 1 else ""
        return (
            f"{self.detname} was fetched{source} but is not checked out: "
            f"run 'dcsync pull {remote}--detector {self.detname}'"
        )


@dataclass(frozen=True)
class Alias:
    alias: str
    detname: str
    file: Path


class Workspace:
    """A calib directory of detector repositories."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        if not (self.root / CONFIG_DIR).is_dir():
            raise WorkspaceNotFound(
                f"{self.root} is not a dcsync workspace (no {CONFIG_DIR}/): run 'dcsync init'"
            )

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- creation and discovery ------------------------------------------------------------------
    @classmethod
    def init(cls, path: Path | str = ".", kind: str = "local", *, group: str | None = None) -> Workspace:
        """Make ``path`` a workspace of a location kind (``group``: an experiment's Unix group)."""
        if kind not in KINDS:
            raise UsageError(f"invalid location kind {kind!r}: choose one of {', '.join(KINDS)}")
        root = Path(path)
        cfg = root / CONFIG_DIR
        if (cfg / "config.toml").exists():
            raise AlreadyExists(f"{root} is already a dcsync workspace")
        (cfg / "hooks").mkdir(parents=True, exist_ok=True)
        _atomic_write(cfg / "config.toml", "")
        _atomic_write(cfg / "acl.toml", tomli_w.dumps({"kind": kind, **({"group": group} if group else {})}))
        return cls(root)

    @classmethod
    def find(cls, start: Path | str | None = None) -> Workspace:
        """The workspace containing ``start`` (default: the current directory), searching upwards."""
        here = Path(start or Path.cwd()).resolve()
        for candidate in (here, *here.parents):
            if (candidate / CONFIG_DIR).is_dir():
                return cls(candidate)
        raise WorkspaceNotFound(f"no dcsync workspace at or above {here}: run 'dcsync init' or use -C PATH")

    # -- configuration ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_DIR / "config.toml"

    def config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"kind": "local"}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.config_path} is not valid TOML: {exc}") from exc

    def write_config(self, config: dict[str, Any]) -> None:
        _atomic_write(self.config_path, tomli_w.dumps(config))

    @property
    def kind(self) -> str:
        """The location kind, from acl.toml (older workspaces kept it in config.toml)."""
        return self.acl().kind

    def acl(self) -> ACL:
        return ACL.load(self.root, str(self.config().get("kind", "local")))

    def policy(self) -> Policy:
        from dcsync.workspace.hooks import DEFAULT_TIMEOUT
        from dcsync.workspace.policy import Policy

        timeout = float(self.config().get("hooks", {}).get("timeout", DEFAULT_TIMEOUT))
        return Policy(self.root, self.kind, hook_timeout=timeout)

    @classmethod
    def containing(cls, repository_file: Path) -> Workspace | None:
        """The workspace a repository file sits in (``<root>/<dettype>/<file>.h5``, or a fetched
        copy ``<root>/.dcsync/fetched/<file>.h5``), if any."""
        path = Path(repository_file).resolve()
        root = path.parent.parent.parent if is_fetched_copy(path) else path.parent.parent
        return cls(root) if (root / CONFIG_DIR).is_dir() else None

    # -- detectors -------------------------------------------------------------------------------
    def detector_path(self, detname: str) -> Path:
        dettype, _ = split_detname(detname)
        return self.root / dettype / f"{detname}.h5"

    def detectors(self) -> list[str]:
        """Names of the detector repositories in this workspace, sorted."""
        names = []
        for path in self.root.glob("*/*.h5"):
            name = path.stem
            try:
                dettype, _ = split_detname(name)
            except UsageError:
                continue
            if path.parent.name == dettype:
                names.append(name)
        return sorted(names)

    def fetched_path(self, detname: str) -> Path:
        """Where a detector fetched but not checked out waits for ``pull`` (see the module doc)."""
        check_detname(detname)
        return self.root / CONFIG_DIR / FETCHED_DIR / f"{detname}.h5"

    def fetched_detectors(self) -> list[Fetched]:
        """Detectors fetched from a remote but not checked out here, by name."""
        found = []
        for path in sorted((self.root / CONFIG_DIR / FETCHED_DIR).glob("*.h5")):
            fetched = self.fetched(path.stem)
            if fetched is not None:
                found.append(fetched)
        return found

    def fetched(self, name: str) -> Fetched | None:
        """The fetched copy of ``name`` (a detector name or alias) when nothing of it is checked
        out here, else None: lets readers say "run pull" rather than "no such detector"."""
        alias = self.aliases().get(name)
        detname = alias.detname if alias is not None else name
        try:
            path = self.fetched_path(detname)
        except UsageError:
            return None
        if not path.is_file() or self.detector_path(detname).is_file():
            return None
        try:
            store = HDF5Store(path)
            try:
                refs = store.refs()
            finally:
                store.close()
        except DcsyncError:  # damaged: still shown as fetched; verify names the damage
            refs = {}
        names = tuple(sorted(r.removeprefix(REMOTES) for r in refs if r.startswith(REMOTES)))
        return Fetched(detname, path, names)

    def resolve(self, name: str) -> Path:
        """A detector's file from its name, an alias, or a path to an ``.h5`` file."""
        if name.endswith(".h5") or os.sep in name:
            path = Path(name)
            if not path.is_absolute():
                path = Path.cwd() / path
            if path.is_file():
                return path
            raise DetectorNotFound(f"no repository file {name}")
        aliases = self.aliases()
        if name in aliases:
            target = aliases[name].detname
            path = self.detector_path(target)
            if path.is_file():
                return path
            fetched = self.fetched(target)
            if fetched is not None:
                raise DetectorNotFound(f"alias {name!r} points to {fetched.hint()}")
            raise DetectorNotFound(f"alias {name!r} points to {target}, which is not in {self.root}")
        try:
            candidate: Path | None = self.detector_path(name)
        except UsageError:
            candidate = None
        if candidate is not None and candidate.is_file():
            return candidate
        fetched = self.fetched(name)
        if fetched is not None:
            raise DetectorNotFound(fetched.hint())
        known = ", ".join(self.detectors()[:10]) or "none yet ('dcsync new DETNAME')"
        # Not even a detector's name: what is missing is an alias of that name.
        missing = DetectorNotFound if candidate is not None else AliasNotFound
        raise missing(f"no detector or alias {name!r} in {self.root} (detectors: {known})")

    def guard(self) -> WorkspaceGuard:
        """The commit guard of this workspace's repositories, its policy read on first use."""
        return WorkspaceGuard(self)

    def repository(self, name: str, *, lock_timeout: float = 30.0) -> Repository:
        """A detector's repository (by name, alias or path), its commits judged by this workspace's
        ACL and hooks."""
        return Repository.open(self.resolve(name), lock_timeout=lock_timeout, guard=self.policy())

    def new_detector(
        self,
        detname: str,
        *,
        predecessor: str = "",
        alias: str | None = None,
        message: str | None = None,
        check_predecessor: bool = True,
    ) -> Repository:
        """Create a detector repository. ``predecessor`` (a name or alias) must be a detector of
        this workspace, which then names the new one its successor; a promotion passes
        ``check_predecessor=False`` to copy the source's link even where the target lacks it."""
        check_detname(detname)
        self.acl().require(current_identity(), "add", detname)
        if predecessor and check_predecessor:
            predecessor = self._existing_detector(predecessor, "predecessor")
        elif predecessor:
            check_detname(predecessor)
        if alias is not None:
            check_alias(alias)
            self._check_alias_free(alias)
        path = self.detector_path(detname)
        path.parent.mkdir(parents=True, exist_ok=True)
        policy = self.policy()  # later commits through it pass the ACL and hooks too
        repo = Repository.create(path, detname, predecessor=predecessor, message=message, guard=policy)
        if predecessor and (self.detector_path(predecessor)).is_file():
            with Repository.open(self.detector_path(predecessor), guard=policy) as pred:
                if not pred.root().successor:
                    with pred.transaction(f"successor {detname}", command="new") as tx:
                        tx.set_links(successor=detname)
        if alias is not None:
            self.add_alias(alias, detname)
        return repo

    def _existing_detector(self, name: str, role: str) -> str:
        """The detector name ``name`` (a name or alias) stands for, which must exist here."""
        alias = self.aliases().get(name)
        detname = alias.detname if alias is not None else name
        try:
            exists = self.detector_path(detname).is_file()
        except UsageError:  # not even a well-formed name
            exists = False
        if not exists:
            via = f" (alias of {detname})" if alias is not None else ""
            known = ", ".join(self.detectors()[:10]) or "none yet"
            raise DetectorNotFound(
                f"{role} {name!r}{via} is not a detector in {self.root} (detectors: {known})"
            )
        return detname

    # -- aliases ---------------------------------------------------------------------------------
    def _alias_files(self) -> Iterator[Path]:
        yield from sorted(self.root.glob("*/*.als"))

    def aliases(self) -> dict[str, Alias]:
        out: dict[str, Alias] = {}
        for file in self._alias_files():
            for lineno, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise InputError(f"{file}:{lineno}: expected '<alias> <detname>', got {line!r}")
                out[parts[0]] = Alias(parts[0], parts[1], file)
        return out

    def _check_alias_free(self, alias: str) -> None:
        existing = self.aliases().get(alias)
        if existing is not None:
            raise AlreadyExists(f"alias {alias!r} already points to {existing.detname} ({existing.file})")

    def add_alias(self, alias: str, detname: str) -> Alias:
        check_alias(alias)
        check_detname(detname)
        if not self.detector_path(detname).is_file():
            raise DetectorNotFound(f"no detector {detname} in {self.root}")
        self._check_alias_free(alias)
        file = self.detector_path(detname).parent / ALIAS_FILE
        lines = file.read_text(encoding="utf-8").splitlines() if file.exists() else []
        _atomic_write(file, "\n".join([*lines, f"{alias} {detname}"]) + "\n")
        return Alias(alias, detname, file)

    def remove_alias(self, alias: str) -> Alias:
        existing = self.aliases().get(alias)
        if existing is None:
            raise AliasNotFound(f"no alias {alias!r} in {self.root}")
        kept = [
            line
            for line in existing.file.read_text(encoding="utf-8").splitlines()
            if line.split()[:1] != [alias]
        ]
        _atomic_write(existing.file, "\n".join(kept) + ("\n" if kept else ""))
        return existing


class WorkspaceGuard:
    """A workspace's ACL and hooks as a commit guard, its :class:`~dcsync.workspace.policy.Policy`
    built when a commit first needs it: a read through :func:`open_repository` neither parses the
    workspace's configuration nor imports the checks (ACL, hooks, diff)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._policy: Policy | None = None

    def policy(self) -> Policy:
        if self._policy is None:
            self._policy = self.workspace.policy()
        return self._policy

    def check_commit(self, move: Move, *, phase: str) -> list[str]:
        return self.policy().check_commit(move, phase=phase)

    def after_commit(self, move: Move) -> list[str]:
        return self.policy().after_commit(move)

    def __repr__(self) -> str:
        return f"<commit guard: the ACL and hooks of workspace {self.workspace.root}>"


def guard_for(repository_file: Path | str) -> CommitGuard:
    """The rules a repository file's commits pass: those of the workspace it sits in (a detector's
    file or a fetched copy), else the default guard of a file on its own."""
    ws = Workspace.containing(Path(repository_file))
    return DEFAULT_GUARD if ws is None else ws.guard()


def open_repository(path: Path | str, *, lock_timeout: float = 30.0) -> Repository:
    """Open a repository file with the rules of the workspace it sits in (:func:`guard_for`)."""
    return Repository.open(path, lock_timeout=lock_timeout, guard=guard_for(path))
