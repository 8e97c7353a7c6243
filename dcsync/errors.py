"""One exception tree for dcsync: every error a user can cause has a message, an exit code and a
stable wire code, and subclasses the matching builtin so ordinary ``except KeyError`` still works.

    DcsyncError (Exception)                        exit 1   error
    ├── UsageError (ValueError)                    exit 2   usage
    │   ├── InvalidName                            exit 2   usage.name
    │   ├── InvalidTime                            exit 2   usage.time
    │   └── AmbiguousName                          exit 2   usage.ambiguous
    ├── NotFound (KeyError)                        exit 3   not-found
    │   ├── WorkspaceNotFound                      exit 3   not-found.workspace
    │   ├── DetectorNotFound                       exit 3   not-found.detector
    │   ├── AliasNotFound                          exit 3   not-found.alias
    │   ├── RemoteNotFound                         exit 3   not-found.remote
    │   ├── CtypeNotFound                          exit 3   not-found.ctype
    │   ├── RangeNotFound                          exit 3   not-found.range
    │   ├── VersionNotFound                        exit 3   not-found.version
    │   ├── NoValidConstant                        exit 3   not-found.constant
    │   └── ObjectNotFound                         exit 3   not-found.object
    │       └── NotFetched                         exit 3   not-found.not-fetched
    ├── InputError (ValueError)                    exit 4   input
    ├── RepositoryError                            exit 5   repository
    │   ├── NotARepository                         exit 5   repository.not-a-repository
    │   ├── FormatTooNew                           exit 5   repository.format-too-new
    │   ├── AlreadyExists (FileExistsError)        exit 5   repository.exists
    │   └── CorruptObject                          exit 5   repository.corrupt
    ├── LockError                                  exit 6   lock
    │   ├── LockTimeout (TimeoutError)             exit 6   lock.timeout
    │   └── NotMyLock                              exit 6   lock.not-mine
    ├── RefConflict                                exit 7   conflict.ref
    │   ├── NotFastForward                         exit 7   conflict.not-fast-forward
    │   └── MergeConflict                          exit 7   conflict.merge
    ├── StorageFull (OSError)                      exit 8   storage.full
    ├── RemoteError                                exit 9   remote
    │   ├── ConnectionFailed (ConnectionError)     exit 9   remote.connect
    │   ├── AuthenticationFailed                   exit 9   remote.auth
    │   ├── HostKeyError                           exit 9   remote.host-key
    │   ├── ConnectionLost (ConnectionError)       exit 9   remote.lost
    │   ├── ProtocolError                          exit 9   remote.protocol
    │   └── IncompatiblePeer                       exit 9   remote.incompatible
    ├── AccessDenied (PermissionError)             exit 10  access.denied
    └── HookRejected                               exit 11  hook.rejected

Library errors (h5py, OSError, msgpack) are translated at the seam where they happen, always with
``raise ... from exc`` so the cause stays visible to developers while users see one clear line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class DcsyncError(Exception):
    """Base of every error dcsync raises on purpose.

    ``details`` carries what a script needs to act on the error without parsing the message (the
    conflicting entries of a merge, the refused detectors of a push); ``--json`` prints it. It is
    plain JSON data and stays on this side: the wire carries the code and the message only.
    """

    exit_code: ClassVar[int] = 1
    wire_code: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message


class UsageError(DcsyncError, ValueError):
    """The caller asked for something malformed (a bad name, time or option)."""

    exit_code = 2
    wire_code = "usage"


class InvalidName(UsageError):
    wire_code = "usage.name"


class InvalidTime(UsageError):
    wire_code = "usage.time"


class AmbiguousName(UsageError):
    wire_code = "usage.ambiguous"


class NotFound(DcsyncError, KeyError):
    exit_code = 3
    wire_code = "not-found"


class WorkspaceNotFound(NotFound):
    wire_code = "not-found.workspace"


class DetectorNotFound(NotFound):
    wire_code = "not-found.detector"


class AliasNotFound(NotFound):
    """No alias of that name in the workspace (``alias rm``, ``alias show``)."""

    wire_code = "not-found.alias"


class RemoteNotFound(NotFound):
    """No remote of that name in the workspace's config (``remote rm``, a fetch of a name)."""

    wire_code = "not-found.remote"


class CtypeNotFound(NotFound):
    wire_code = "not-found.ctype"


class RangeNotFound(NotFound):
    wire_code = "not-found.range"


class VersionNotFound(NotFound):
    wire_code = "not-found.version"


class NoValidConstant(NotFound):
    """No validity range of the ctype contains the requested time."""

    wire_code = "not-found.constant"


class ObjectNotFound(NotFound):
    wire_code = "not-found.object"


class NotFetched(ObjectNotFound):
    """A payload a partial clone left out on purpose."""

    wire_code = "not-found.not-fetched"


class InputError(DcsyncError, ValueError):
    """An input file (array, text, geometry) is missing, unreadable or inconsistent."""

    exit_code = 4
    wire_code = "input"


class RepositoryError(DcsyncError):
    exit_code = 5
    wire_code = "repository"


class NotARepository(RepositoryError):
    wire_code = "repository.not-a-repository"


class FormatTooNew(RepositoryError):
    wire_code = "repository.format-too-new"


class AlreadyExists(RepositoryError, FileExistsError):
    wire_code = "repository.exists"


class CorruptObject(RepositoryError):
    """Stored bytes do not match their id, or a structure cannot be decoded."""

    wire_code = "repository.corrupt"


class LockError(DcsyncError):
    exit_code = 6
    wire_code = "lock"


class LockTimeout(LockError, TimeoutError):
    wire_code = "lock.timeout"


class NotMyLock(LockError):
    wire_code = "lock.not-mine"


class RefConflict(DcsyncError):
    """A ref moved under us: compare-and-swap found another value than expected."""

    exit_code = 7
    wire_code = "conflict.ref"


class StorageFull(DcsyncError, OSError):
    """The disk (or a file-size limit) ran out during a write; nothing was committed."""

    exit_code = 8
    wire_code = "storage.full"


class NotFastForward(RefConflict):
    """A push would lose the remote's commits: pull (fetch and merge) first."""

    wire_code = "conflict.not-fast-forward"


class MergeConflict(RefConflict):
    """Both sides changed the same entry; nothing was changed."""

    wire_code = "conflict.merge"


class RemoteError(DcsyncError):
    exit_code = 9
    wire_code = "remote"


class ConnectionFailed(RemoteError, ConnectionError):
    wire_code = "remote.connect"


class AuthenticationFailed(RemoteError):
    wire_code = "remote.auth"


class HostKeyError(RemoteError):
    """Unknown or changed host key: refused unless the user accepts it explicitly."""

    wire_code = "remote.host-key"


class ConnectionLost(RemoteError, ConnectionError):
    wire_code = "remote.lost"


class ProtocolError(RemoteError):
    """The peer sent something that is not a valid dcsync frame or message."""

    wire_code = "remote.protocol"


class IncompatiblePeer(RemoteError):
    wire_code = "remote.incompatible"


class AccessDenied(DcsyncError, PermissionError):
    exit_code = 10
    wire_code = "access.denied"


class HookRejected(DcsyncError):
    exit_code = 11
    wire_code = "hook.rejected"


def _all_subclasses(cls: type[DcsyncError]) -> list[type[DcsyncError]]:
    out: list[type[DcsyncError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def by_wire_code() -> dict[str, type[DcsyncError]]:
    """The table that rebuilds an error received from a peer as the same class."""
    return {cls.wire_code: cls for cls in _all_subclasses(DcsyncError)}


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "other dcsync error",
    2: "usage: bad name, time, option or ambiguous version prefix",
    3: "not found: workspace, detector, alias, remote, ctype, range, version, object or no valid constant",
    4: "bad input file",
    5: "repository file problem: not a repository, too new, corrupt, already exists",
    6: "lock: timed out waiting, or not our lock",
    7: "conflict: a ref moved concurrently",
    8: "storage full: disk or file-size limit reached, nothing committed",
    9: "remote: connection, authentication, host key, protocol or incompatible peer",
    10: "access denied",
    11: "rejected by a hook",
    130: "interrupted (Ctrl-C)",
}
