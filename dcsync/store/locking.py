"""One writer per repository file: an exclusive lock file that is safe on NFS and survives crashes.

Layout: the lock for ``P`` is the file ``P.lock``, created with ``O_CREAT|O_EXCL`` (atomic on local
disks, NFSv3+, Lustre and GPFS; flock/fcntl are not reliable there). It holds one JSON object::

    {"user": "alice", "host": "node42", "pid": 1234, "start": <int ns since epoch>,
     "token": "<32 hex digits, unique per acquisition>", "command": "dcsync commit ..."}

While held, a heartbeat thread bumps the file's mtime every ``heartbeat_interval`` seconds. A lock is
stale when its host is this host and its pid is dead (or reused by a younger process), or when its
mtime is older than ``stale_after`` seconds. Breakers take turns through a second O_EXCL file,
``P.lock.break`` (same JSON, held for milliseconds), then rename the stale lock to
``P.lock.broken-<hex>`` and delete it only if it is still the holder they judged, so that breakers
racing on NFS never delete a fresh lock. Breaking by heartbeat assumes the hosts' clocks agree to well
under ``stale_after`` (on NFS the mtime comes from the server's clock).

``DCSYNC_LOCK_STALE_AFTER`` and ``DCSYNC_LOCK_HEARTBEAT`` (seconds) override the defaults.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from dcsync.errors import AccessDenied, LockError, LockTimeout, NotMyLock, UsageError
from dcsync.model.identity import current_host, current_user, effective_user
from dcsync.model.times import NS, format_time, now_ns

STALE_AFTER = 120.0
HEARTBEAT_INTERVAL = 10.0
INCOMPLETE_GRACE = 5.0
"""An empty or unparsable lock file is a holder between create and write, until it is this old."""
_CREATE_TIME_SLACK = 1.0  # psutil derives create times from the boot time in whole seconds
_MAX_LOCK_BYTES = 64 * 1024
_FIELDS: dict[str, type] = {"user": str, "host": str, "pid": int, "start": int, "token": str, "command": str}


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its holder; ``heartbeat`` is the file's mtime in ns.

    An unreadable file (empty or partly written) has ``token == ""`` and blank holder fields.
    """

    user: str
    host: str
    pid: int
    start: int
    token: str
    command: str
    heartbeat: int
    path: str

    @property
    def readable(self) -> bool:
        return bool(self.token)

    def age(self, now: int | None = None) -> float:
        """Seconds since the lock was taken."""
        return ((now_ns() if now is None else now) - self.start) / NS

    def heartbeat_age(self, now: int | None = None) -> float:
        """Seconds since the holder last proved it is alive."""
        return ((now_ns() if now is None else now) - self.heartbeat) / NS

    def is_stale(self, stale_after: float, now: int | None = None) -> bool:
        """True when the holder is certainly gone (dead local pid) or silent for too long."""
        if not self.readable:
            return self.heartbeat_age(now) > min(stale_after, INCOMPLETE_GRACE)
        if self.host == current_host() and not _pid_alive(self.pid, self.start):
            return True
        return self.heartbeat_age(now) > stale_after

    def describe(self, now: int | None = None) -> str:
        """One line for humans, e.g. for a timeout message or ``dcsync lock status``."""
        beat = max(0, round(self.heartbeat_age(now)))
        if not self.readable:
            return f"unreadable lock file {self.path} (empty or partly written), modified {beat} s ago"
        since = format_time(self.start - self.start % NS)
        text = f"held by {self.user}@{self.host} pid {self.pid} since {since} (heartbeat {beat} s ago)"
        return f"{text}: {self.command}" if self.command else text


class FileLock:
    """Exclusive lock on the repository file ``path``; not re-entrant, one holder per object.

    Args:
        path: the repository file; the lock file is ``path + ".lock"`` beside the file itself
            (symlinks resolved), so that every name of one file takes the same lock.
        stale_after: seconds without heartbeat after which another process may break the lock.
        heartbeat_interval: seconds between mtime touches while held; must be below ``stale_after``
            (default: 10 s, or a quarter of ``stale_after`` if that is shorter).
        command: recorded for humans; defaults to this process's command line.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stale_after: float | None = None,
        heartbeat_interval: float | None = None,
        command: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.lock_path = lock_file(path)
        self.stale_after = _seconds(stale_after, "stale_after", "DCSYNC_LOCK_STALE_AFTER", STALE_AFTER)
        self.heartbeat_interval = _seconds(
            heartbeat_interval,
            "heartbeat_interval",
            "DCSYNC_LOCK_HEARTBEAT",
            min(HEARTBEAT_INTERVAL, self.stale_after / 4),
        )
        if self.heartbeat_interval >= self.stale_after:
            raise UsageError(
                f"lock heartbeat interval ({self.heartbeat_interval:g} s) must be shorter than "
                f"the stale timeout ({self.stale_after:g} s), or live locks would be broken"
            )
        self.command = shlex.join(sys.argv)[:1000] if command is None else command
        self._token: str | None = None
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None

    @property
    def is_held(self) -> bool:
        """Whether this object acquired the lock (not whether the file still says so)."""
        return self._token is not None

    def acquire(self, timeout: float | None = 30.0, *, poll: float = 0.01, max_poll: float = 0.1) -> None:
        """Take the lock, breaking a stale one; wait up to ``timeout`` seconds (None: forever).

        Raises:
            LockTimeout: a live holder kept it; the message says who.
            LockError: this object already holds it, or the lock file cannot be created.
        """
        if self._token is not None:
            raise LockError(f"{self.lock_path} is already held by this FileLock (it is not re-entrant)")
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            token = _token()
            # Ours before the file exists: a Ctrl-C landing just after its creation (before this
            # method returns) must still find it ours and remove it, or nobody would.
            self._token = token
            try:
                if _create(self.lock_path, token, self.command):
                    self._start_heartbeat(token)
                    return
            except BaseException:
                self._abandon(token)
                raise
            self._token = None
            holder = _read(self.lock_path)
            if holder is None:
                continue  # released between our create and our read: try again at once
            if holder.is_stale(self.stale_after) and _break(holder):
                continue
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"could not lock {self.path} within {timeout:g} s: {holder.describe()}")
            # Jitter keeps contenders from polling in lockstep.
            pause = delay * random.uniform(0.5, 1.0)
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 2, max_poll)

    def release(self) -> None:
        """Stop the heartbeat and delete the lock file.

        Raises:
            NotMyLock: the file no longer holds our token (someone judged us stale and broke it);
                whatever is there now belongs to someone else and is left alone.
            LockError: this object does not hold the lock.
        """
        token = self._token
        if token is None:
            raise LockError(f"{self.lock_path} is not held by this FileLock")
        self._stop.set()
        if self._beater is not None and self._beater.is_alive():  # (not started: Ctrl-C in acquire)
            self._beater.join()
        self._token = self._beater = None
        if not _remove_if(self.lock_path, lambda found: found.token == token):
            now = _read(self.lock_path)
            detail = now.describe() if now is not None else "it is gone"
            raise NotMyLock(f"lost the lock on {self.path} (broken as stale?); {detail}")

    def _abandon(self, token: str) -> None:
        """Undo a half-done :meth:`acquire`: remove the lock file if it holds ``token``."""
        self._stop.set()
        self._token = self._beater = None
        with contextlib.suppress(LockError, AccessDenied):
            found = _read(self.lock_path)
            if found is not None and found.token == token:
                _remove_if(self.lock_path, lambda f: f.token == token)

    def verify(self) -> None:
        """Raise :class:`NotMyLock` unless the lock file still holds our token.

        Call it just before an irrevocable step (deleting a commit's journal): a holder stalled past
        ``stale_after`` may have been broken, and another writer may be at work.
        """
        info = None if self._token is None else _read(self.lock_path)
        if info is None or info.token != self._token:
            detail = "it is gone" if info is None else info.describe()
            raise NotMyLock(f"no longer hold the lock on {self.path} (broken as stale?); {detail}")

    @contextlib.contextmanager
    def held(self, timeout: float | None = 30.0) -> Iterator[FileLock]:
        """``with FileLock(p).held(timeout=5):`` holds the lock for the block."""
        self.acquire(timeout)
        try:
            yield self
        finally:
            self.release()

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _start_heartbeat(self, token: str) -> None:
        self._stop = threading.Event()
        self._beater = threading.Thread(
            target=_heartbeat,
            args=(self.lock_path, token, self.heartbeat_interval, self._stop),
            name=f"dcsync-lock-heartbeat {self.lock_path}",
            daemon=True,
        )
        self._beater.start()


def _token() -> str:
    """A lock holder's random token; what ``secrets.token_hex`` returns, without importing
    ``secrets`` (hmac, hashlib: ~5 ms of every command's start-up)."""
    return os.urandom(16).hex()


def _create(lock_path: str, token: str, command: str) -> bool:
    """Create the lock file atomically and fill it in; False if it already exists."""
    record = {
        "user": current_user(),
        "host": current_host(),
        "pid": os.getpid(),
        "start": now_ns(),
        "token": token,
        "command": command,
    }
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise _failure(lock_path, exc, "create") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(record).encode() + b"\n")
            # No fsync: after a power loss the holder is gone and the lock is judged stale by
            # its pid's start time or its heartbeat, so durability would buy nothing here.
            f.flush()
    except BaseException as exc:  # a failed write, or Ctrl-C: a half-made lock would block others
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        if isinstance(exc, OSError):
            raise LockError(f"cannot write lock file {lock_path}: {exc.strerror}") from exc
        raise
    return True


def write_denied(path: str | os.PathLike[str], detail: str) -> AccessDenied:
    """The error for a writer the file system turns away: not a lock problem but the user's
    missing permission, said as such (exit 10) with who the user is (the effective user, which
    the file system judges, not $USER)."""
    return AccessDenied(f"you (user {effective_user()}) may not write {os.fspath(path)}: {detail}")


def _failure(lock_path: str, exc: OSError, doing: str) -> LockError | AccessDenied:
    if isinstance(exc, PermissionError):  # the directory is not ours to write in
        repository_file = lock_path.rpartition(".lock")[0] or lock_path
        return write_denied(repository_file, f"cannot {doing} its lock file {lock_path} ({exc.strerror})")
    return LockError(f"cannot {doing} lock file {lock_path}: {exc.strerror}")


def _read(lock_path: str) -> LockInfo | None:
    """Parse a lock file; None when there is none, blank fields when it is unreadable."""
    try:
        with open(lock_path, "rb") as f:
            raw = f.read(_MAX_LOCK_BYTES)
            mtime = os.fstat(f.fileno()).st_mtime_ns
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError(f"cannot read lock file {lock_path}: {exc.strerror}") from exc
    try:
        d = json.loads(raw)
        values = {key: d[key] for key in _FIELDS}
    except (ValueError, TypeError, KeyError):
        values = {}
    if values and all(type(values[key]) is kind for key, kind in _FIELDS.items()):
        return LockInfo(**values, heartbeat=mtime, path=lock_path)
    return LockInfo("", "", 0, 0, "", "", mtime, lock_path)


def lock_file(path: str | os.PathLike[str]) -> str:
    """The lock file of repository file ``path``: one per file, whatever name (symlink) it is
    reached by. A hard link is another name that this cannot see: dcsync never makes those."""
    return os.path.realpath(path) + ".lock"


def lock_status(path: str | os.PathLike[str]) -> LockInfo | None:
    """Who holds the lock on repository file ``path``, or None when it is free."""
    return _read(lock_file(path))


def break_lock(
    path: str | os.PathLike[str], *, force: bool = False, stale_after: float | None = None
) -> LockInfo | None:
    """Remove the lock on ``path`` if stale (or anyway with ``force``); return what was removed.

    Returns None when there was no lock, or when it changed while we looked (someone else broke or
    released it first): nothing was removed then.

    Raises:
        LockError: the lock is live and ``force`` is not set.
    """
    info = lock_status(path)
    if info is None:
        return None
    if not force and not info.is_stale(
        _seconds(stale_after, "stale_after", "DCSYNC_LOCK_STALE_AFTER", STALE_AFTER)
    ):
        raise LockError(
            f"lock on {os.fspath(path)} is live, not breaking it: {info.describe()}; "
            "force only if you are sure that process is gone"
        )
    return info if _break(info) else None


def _break(judged: LockInfo) -> bool:
    """Remove the stale lock ``judged`` was read from, if it still holds that holder; True if removed.

    Breakers take turns through the guard file ``<lock>.break``. Without it, a breaker acting on an
    old judgment renames away a fresh lock created after another breaker removed the stale one, and
    while it puts that back a third process can take the free name: two holders (the contention
    tests caught this). Inside the guard we re-read; then only the judged holder itself, alive after
    all, can still change the file. Whoever finds the guard taken waits and looks again.
    """
    guard, token = judged.path + ".break", _token()
    if not _create(guard, token, f"breaking {judged.path}"):
        other = _read(guard)  # a breaker holds it for milliseconds; an old one crashed
        if other is not None and other.is_stale(INCOMPLETE_GRACE):
            _remove_if(guard, lambda found: _same(found, other))
        return False
    try:
        now = _read(judged.path)
        return now is not None and _same(now, judged) and _remove_if(judged.path, lambda f: _same(f, judged))
    finally:
        _remove_if(guard, lambda found: found.token == token)


def _same(found: LockInfo, judged: LockInfo) -> bool:
    # The same token and the same mtime: also spares a holder that woke up and beat meanwhile.
    return found.token == judged.token and found.heartbeat == judged.heartbeat


def _remove_if(lock_path: str, is_expected: Callable[[LockInfo], bool]) -> bool:
    """Delete the lock file only if it is the one we expect; True if we deleted it.

    Reading, judging and unlinking by name would race: between our read and our unlink another
    breaker may remove the stale file and a new holder create a fresh one, which we would delete.
    A rename is atomic (also on NFS), so we first move whatever is there to a name nobody else uses,
    and then look at what we actually got. If it is not what we judged, we took someone's fresh
    lock: put it back with ``link``, which, unlike rename, fails instead of clobbering a lock that
    yet another process created meanwhile. In that last case the displaced holder has lost its lock
    and will learn so from ``NotMyLock`` at release.
    """
    broken = f"{lock_path}.broken-{os.urandom(8).hex()}"
    try:
        os.rename(lock_path, broken)
    except FileNotFoundError:
        return False  # someone else released or broke it first
    except OSError as exc:
        raise _failure(lock_path, exc, "remove") from exc
    try:
        found = _read(broken)
        if found is not None and is_expected(found):
            os.unlink(broken)
            return True
        with contextlib.suppress(FileExistsError):
            os.link(broken, lock_path)
        os.unlink(broken)
    except OSError as exc:
        raise LockError(f"cannot restore lock file {lock_path} from {broken}: {exc.strerror}") from exc
    return False


def _heartbeat(lock_path: str, token: str, interval: float, stop: threading.Event) -> None:
    """Touch the lock file's mtime while it still holds our token.

    Touches through the descriptor we read the token from, so a file renamed or replaced between
    the check and the touch is never someone else's. Keeps going when the token is missing: a
    breaker that took our file by mistake puts it back.
    """
    while not stop.wait(interval):
        with contextlib.suppress(OSError):
            fd = os.open(lock_path, os.O_RDONLY)
            try:
                d = json.loads(os.read(fd, _MAX_LOCK_BYTES))
                if isinstance(d, dict) and d.get("token") == token:
                    os.utime(fd)
            except ValueError:
                pass
            finally:
                os.close(fd)


def _pid_alive(pid: int, start: int) -> bool:
    """Whether a process on this host could still be the holder that took the lock at ``start``."""
    import psutil  # only judging a holder needs it; readers and most writers never do (start-up)

    if pid <= 0 or not psutil.pid_exists(pid):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False  # killed, not yet reaped: it cannot write anything any more
        created = float(proc.create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    # A process younger than the lock reuses a dead holder's pid.
    return created <= start / NS + _CREATE_TIME_SLACK


def _seconds(value: float | None, name: str, env: str, default: float) -> float:
    """An explicit value, else the environment variable ``env``, else ``default``."""
    source = f"{name}={value!r}"
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        source = f"{env}={text!r}"
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{source} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{source}: lock times must be a positive number of seconds")
    return value
