"""``verify``: check the file holds only what dcsync writes, re-hash every object, check every
reference, check what each version entry says about its payload (:mod:`dcsync.store.claims`), and check
the view against HEAD (its links and its attributes).

Every tree and commit is decoded afresh, so the validity rules a received one must follow
(:mod:`dcsync.model.fields`, names, integer ranges) are checked here too, and so is what decoding one
object alone cannot see: a ctype tree's bounds for a range equal its range tree's.

It reads each object on its own and keeps going after a failure, so one damaged object is reported
without hiding the state of the rest (and intact objects stay readable through the normal API).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dcsync.errors import DcsyncError, RepositoryError, UsageError
from dcsync.model.hashing import ObjectId
from dcsync.model.objects import (
    Commit,
    CtypeTree,
    RangeTree,
    RootTree,
    Tree,
    kind_name,
    range_bounds_problem,
    with_article,
)
from dcsync.store import view
from dcsync.store.base import ObjectStore
from dcsync.store.claims import PayloadFacts, disagreements, stored_facts
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.locking import FileLock, lock_status
from dcsync.store.recovery import has_hot_journal, refusal

# What a damaged file can raise from h5py as well as from dcsync; verify reports, never crashes.
_UNREADABLE = (DcsyncError, OSError, KeyError, RuntimeError, ValueError, TypeError)
VERIFY_SLICE = 16 << 20  # payloads are hashed in slices of this many bytes, never whole in memory


@dataclass
class VerifyReport:
    where: str
    objects: int = 0
    commits: int = 0
    not_fetched: int = 0  # payloads a partial clone left out on purpose
    problems: list[str] = field(default_factory=list)
    checked_out: bool = True  # False: a fetched copy waiting for a pull (it has no HEAD yet)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "repository": self.where,
            "ok": self.ok,
            "objects": self.objects,
            "commits": self.commits,
            "not_fetched": self.not_fetched,
            "checked_out": self.checked_out,
            "problems": list(self.problems),
        }


def verify_store(
    store: ObjectStore,
    progress: Callable[[int], None] | None = None,
    *,
    partial: bool = False,
    checked_out: bool = True,
) -> VerifyReport:
    """Check every object and reference; ``partial`` (a partial clone) allows unfetched payloads,
    ``checked_out=False`` (a fetched copy not checked out yet) a missing HEAD and an empty view."""
    report = VerifyReport(store.where, checked_out=checked_out)
    if isinstance(store, HDF5Store):  # first: the walk reads no data and follows no link elsewhere
        try:
            report.problems.extend(store.structure_problems())
        except UsageError:  # DCSYNC_MAX_PAYLOAD is not a number: the caller's mistake, not the file's
            raise
        except _UNREADABLE as exc:
            report.problems.append(f"structure: {exc}")
    kinds = _read_objects(store, report, progress)
    _check_references(store, report, kinds, partial=partial)
    _check_refs_and_view(store, report, kinds, checked_out=checked_out)
    return report


def _read_objects(
    store: ObjectStore, report: VerifyReport, progress: Callable[[int], None] | None
) -> dict[ObjectId, str]:
    """Read (and so re-hash) every object; what each readable one is, as kind_name() says it."""
    kinds: dict[ObjectId, str] = {}
    try:
        ids = list(store.object_ids())
    except _UNREADABLE as exc:
        report.problems.append(f"cannot list objects: {exc}")
        ids = []
    for oid in ids:
        report.objects += 1
        if progress:
            progress(1)
        try:
            kind = store.kind_of(oid)
            if kind in ("array", "text"):
                for _ in store.iter_payload(oid, VERIFY_SLICE):  # bounded memory; hash checked at the end
                    pass
                kinds[oid] = kind_name(kind)
            else:
                kinds[oid] = kind_name(store.read_object(oid, fresh=True))
        except _UNREADABLE as exc:
            report.problems.append(f"object {oid}: {exc}")
    return kinds


_Need = Callable[[ObjectId, type[Tree | Commit] | str, str], bool]


def _needs(report: VerifyReport, kinds: dict[ObjectId, str]) -> _Need:
    """A check that ``oid`` is there and is what the reference to it promises (kinds, not just
    "a tree"), reporting it otherwise."""

    def need(oid: ObjectId, kind: type[Tree | Commit] | str, what: str) -> bool:
        expected = kind_name(kind)
        if kinds.get(oid) == expected:
            return True
        state = (
            "missing or unreadable"
            if oid not in kinds
            else f"{with_article(kinds[oid])}, not {with_article(expected)}"
        )
        report.problems.append(f"{what} refers to {oid}, which is {state}")
        return False

    return need


def _check_references(
    store: ObjectStore, report: VerifyReport, kinds: dict[ObjectId, str], *, partial: bool
) -> None:
    """Every reference of every tree and commit, and what each version entry says of its payload."""
    need = _needs(report, kinds)
    facts: dict[ObjectId, PayloadFacts] = {}
    for oid, kind in list(kinds.items()):
        if kind.endswith(" payload"):
            continue
        obj = store.read_object(oid)
        if isinstance(obj, Commit):
            report.commits += 1
            need(obj.tree, RootTree, f"commit {oid}")
            for parent in obj.parents:
                need(parent, Commit, f"commit {oid}")
        elif isinstance(obj, RootTree):
            for name, tid in obj.ctypes.items():
                need(tid, CtypeTree, f"tree {oid} ctype {name}")
        elif isinstance(obj, CtypeTree):
            for key, ref in obj.ranges.items():
                if need(ref.tree, RangeTree, f"tree {oid} range {key}"):
                    rng = store.read_as(ref.tree, RangeTree)
                    problem = range_bounds_problem(key, ref, rng)
                    if problem is not None:
                        report.problems.append(f"ctype tree {oid} is inconsistent: {problem}")
        else:
            for vkey, entry in obj.versions.items():
                if partial and entry.obj not in kinds:
                    report.not_fetched += 1
                    continue
                if need(entry.obj, entry.kind, f"tree {oid} version {vkey}"):
                    try:
                        if entry.obj not in facts:  # each range tree of a history repeats most entries
                            facts[entry.obj] = stored_facts(store, entry.obj)
                        problems = disagreements(entry, facts[entry.obj])
                    except _UNREADABLE as exc:
                        problems = [f"a payload that cannot be read ({exc})"]
                    if problems:
                        report.problems.append(
                            f"tree {oid} version {vkey} claims {', '.join(problems)} for payload {entry.obj}"
                        )


def _check_refs_and_view(
    store: ObjectStore, report: VerifyReport, kinds: dict[ObjectId, str], *, checked_out: bool
) -> None:
    """The refs, the log, and (on a file found sound so far) the view against HEAD."""
    need = _needs(report, kinds)
    try:
        refs = store.refs()
    except _UNREADABLE as exc:
        report.problems.append(f"refs: {exc}")
        refs = {}
    for name, cid in refs.items():
        need(cid, Commit, f"ref {name}")
    if "HEAD" not in refs and checked_out:
        report.problems.append("no HEAD")
    try:
        store.log()
    except _UNREADABLE as exc:
        report.problems.append(f"log: {exc}")
    if isinstance(store, HDF5Store) and not report.problems:
        try:
            report.problems.extend(view.check(store._file(), store, refs.get("HEAD")))
            if not report.problems:
                report.problems.extend(store.view_problems(refs.get("HEAD")))
        except _UNREADABLE as exc:
            report.problems.append(f"view: {exc}")


def verify_file(
    path: Path | str,
    progress: Callable[[int], None] | None = None,
    *,
    partial: bool = False,
    checked_out: bool = True,
) -> VerifyReport:
    """Verify one repository file; a file that cannot be opened at all is a one-problem report.

    The context is the caller's to give, as for :func:`verify_store`: ``partial`` when the file's
    workspace fetches with a filter, ``checked_out=False`` for a fetched copy waiting for a pull
    (:func:`dcsync.workspace.verify.verify_path` finds both).
    """
    path = Path(path)
    try:
        store = HDF5Store(path)
    except RepositoryError as exc:  # not a repository, too new, unreadable
        return VerifyReport(str(path), problems=[str(exc)])
    try:
        report = verify_store(store, progress, partial=partial, checked_out=checked_out)
        if store.truncated:
            report.problems.insert(0, f"{path} is truncated: objects past its end are lost")
        holder = lock_status(path)
        if has_hot_journal(path) and (holder is None or holder.is_stale(FileLock(path).stale_after)):
            # (Judged only when no writer is at work: a page it is writing can read torn.)
            refused = refusal(path)
            pending = "an interrupted commit is pending (recovered on the next write)"
            report.problems.insert(0, pending if refused is None else refused.message)
        return report
    finally:
        store.close()
