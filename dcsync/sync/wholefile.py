"""Whole-file transfer: a detector the receiver does not have yet crosses as its repository file.

Object by object, every byte a clone receives is written to quarantine, read back, hashed and
written again into HDF5 (about 70 MB/s here). A detector the receiver lacks needs none of that:
the sender's file already is a repository holding those objects. So for such a detector, when
neither side filters (no partial clone), the server streams the bytes of a consistent snapshot of
its file, and the client

1. appends them to ``.dcsync/incoming/<det>.h5.part``; a cut transfer resumes at the byte where it
   stopped, as long as the server's file has not changed since (the *token* names the snapshot);
2. checks the copy as ``dcsync verify`` does: first its structure, through HDF5's low-level API
   and before any data is read (nothing but what dcsync writes: no external links or storage, no
   virtual datasets or filters, every declared size bounded and stored; dcsync.store.structure),
   then every object re-hashed, every ref, the view's links and attributes against HEAD;
3. makes it its own: the server's refs and log are dropped, ``remotes/<name>/HEAD`` and HEAD are
   set to the copy's HEAD, with log records saying where it came from, and the view is written
   afresh from HEAD (what plain h5py readers see is never the server's word);
4. links it into place, never over a file that appeared meanwhile.

Anything off (a commit in flight on the server, the file changed during the copy, a copy that does
not verify) discards the copy, and the detector goes the object way instead; a refused copy is
named with its first problems (``FetchReport.refused``). The server takes no lock: a snapshot is
the file between two equal stamps (inode, size, mtime) with no hot journal, and the client's
verification is the backstop. The client opens an HDF5 file the server wrote, but reads no data
of it before the structural check; ``DCSYNC_WHOLE_FILES=0`` keeps a client object by object.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from dcsync.errors import ProtocolError, StorageFull
from dcsync.model.hashing import ObjectId
from dcsync.rawio import FULL_ERRNOS, write_all
from dcsync.repo.verify import verify_store
from dcsync.store.hdf5 import HDF5Store
from dcsync.store.recovery import journal_path
from dcsync.store.refs import HEAD, LogRecord, remote_ref
from dcsync.store.structure import max_payload

CAPABILITY = "whole-file"
ENV_SWITCH = "DCSYNC_WHOLE_FILES"
MAX_TOKEN = 200
REASONS = 3  # problems named when a copy is refused


def enabled() -> bool:
    """Whether this client asks for whole files (``DCSYNC_WHOLE_FILES=0`` says no)."""
    return os.environ.get(ENV_SWITCH, "1").strip() not in ("0", "no", "false")


# -- the sending side -----------------------------------------------------------------------------------


def _token(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"


class FileRange(NamedTuple):
    """``length`` bytes of the open file ``fd`` at ``offset``: a ``{"c": bytes}`` item the server
    sends straight from the file (:func:`dcsync.sync.protocol.bytes_frame_head`, then ``sendfile``)."""

    fd: int
    offset: int
    length: int


def file_frames(
    path: Path, det: str, offset: int, token: str | None, chunk: int
) -> Iterator[dict[str, Any] | FileRange]:
    """The stream items that send ``path``: a header, its bytes from where the client stopped (if
    ``token`` still names the file as it is), and a trailer saying whether the copy is a snapshot."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if journal_path(path).exists():
            yield {"f": det, "skip": "a commit is in progress"}
            return
        stamp = _token(os.fstat(fd))
        size = os.fstat(fd).st_size
        start = offset if token == stamp and 0 <= offset <= size else 0
        yield {"f": det, "n": size, "t": stamp, "o": start}
        for pos in range(start, size, chunk):
            yield FileRange(fd, pos, min(chunk, size - pos))
        try:
            unchanged = _token(os.stat(path)) == stamp and not journal_path(path).exists()
        except FileNotFoundError:
            unchanged = False
        yield {"end": det, "ok": unchanged}  # a file cut short under us changed size: not ok
    finally:
        os.close(fd)


# -- the receiving side ---------------------------------------------------------------------------------


def _paths(incoming: Path, det: str) -> tuple[Path, Path]:
    return incoming / f"{det}.h5.part", incoming / f"{det}.h5.token"


def resume_point(incoming: Path, det: str) -> tuple[int, str | None]:
    """Where an earlier, cut transfer of ``det`` stopped: (bytes we have, the snapshot's token)."""
    part, token_file = _paths(incoming, det)
    try:
        token = token_file.read_text().strip()
        return part.stat().st_size, token
    except (OSError, UnicodeDecodeError):
        return 0, None


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"whole-file header: {what} must be a count")
    return value


class Adoption(NamedTuple):
    """What became of a complete copy: its HEAD once adopted, else why it was refused ("" when
    that was no fault of the copy's)."""

    head: ObjectId | None
    refused: str


class _Part:
    """One file arriving: bytes appended to the part file, which is ours once it is complete."""

    def __init__(self, incoming: Path, det: str, header: dict[str, Any]) -> None:
        self.det = det
        self.size = _count(header.get("n"), "size")
        self.offset = _count(header.get("o"), "offset")
        token = header.get("t")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or self.offset > self.size:
            raise ProtocolError(f"malformed whole-file header for {det}")
        self.path, self.token_file = _paths(incoming, det)
        if self.offset == 0:
            self._discard_files()  # unlink, never truncate: a finished part is linked into place
            self.token_file.write_text(token)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        else:
            if resume_point(incoming, det) != (self.offset, token):
                raise ProtocolError(f"the server resumed {det} at byte {self.offset}, not where we stopped")
            flags = os.O_WRONLY | os.O_APPEND
        self.got = self.offset
        self._fd = os.open(self.path, flags, 0o644)

    @property
    def complete(self) -> bool:
        return self.got == self.size

    def write(self, data: bytes) -> None:
        if self.got + len(data) > self.size:
            raise ProtocolError(f"more bytes of {self.det} than announced")
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self.close()
            self._discard_files()
            if exc.errno in FULL_ERRNOS:
                raise StorageFull(
                    f"no space left receiving {self.det} into {self.path.parent}: nothing was stored "
                    f"({exc.strerror})"
                ) from exc
            raise
        self.got += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _discard_files(self) -> None:
        for path in (self.token_file, self.path):
            path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        self._discard_files()

    def adopt(self, final: Path, remote: str, url: str) -> Adoption:
        """Verify the complete copy, make its refs, log and view ours, link it to ``final``; its
        HEAD, or why it must go the object way (the copy is gone either way)."""
        try:
            self.close()  # unsynced: writing_unpublished() fsyncs the finished file once
            self.token_file.unlink()  # from here on the part changes: it is never resumed
            store = HDF5Store(self.path)
            try:
                report = verify_store(store)
                head = store.refs().get(HEAD) if report.ok else None
                if head is None:
                    shown = report.problems[:REASONS] or ["it has no HEAD"]
                    more = len(report.problems) - len(shown)
                    return Adoption(None, "; ".join(shown) + (f"; and {more} more" if more > 0 else ""))
                ref, source = remote_ref(remote), {"source": url}
                with store.writing_unpublished():
                    store.rebuild_view(head)
                    store.replace_refs_and_log(
                        {HEAD: head, ref: head},
                        [
                            LogRecord(ref, None, head, "fetch", f"fetch from {url}", extra=source),
                            LogRecord(HEAD, None, head, "pull", f"check out {ref}", extra=source),
                        ],
                    )
            finally:
                store.close()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(self.path, final)  # fails if the detector appeared meanwhile
            return Adoption(head, "")
        except Exception as exc:  # whatever h5py makes of a bad copy: the object way decides
            if isinstance(exc, StorageFull) or getattr(exc, "errno", None) in FULL_ERRNOS:
                raise
            if isinstance(exc, FileExistsError):
                return Adoption(None, "")  # not the copy's fault: the detector appeared meanwhile
            return Adoption(None, f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            self.discard()


Progress = Callable[[str, int, int], None]


def fetch_files(
    get_files: Callable[[list[list[Any]]], Iterator[dict[str, Any]]],
    incoming: Path,
    dets: list[str],
    place: Callable[[str], Path],
    remote: str,
    url: str,
    progress: Progress,
) -> tuple[dict[str, ObjectId], int, dict[str, str]]:
    """Fetch ``dets`` (detectors this workspace lacks) as whole files through ``get_files``
    (:meth:`Connection.get_files`); ``place(det)`` is where each goes. Returns the HEAD of each
    detector adopted, the bytes received, and why each refused copy was refused; the detectors
    not adopted must go object by object."""
    max_payload()  # a DCSYNC_MAX_PAYLOAD that is no number is the caller's mistake: say so up front
    incoming.mkdir(parents=True, exist_ok=True)
    items = [[det, *resume_point(incoming, det)] for det in dets]
    expected = iter(dets)
    adoptions: dict[str, Future[Adoption]] = {}
    part: _Part | None = None
    total = done = received = 0
    # Adopting (verify, refs, fsync) runs beside the receiving loop, which mostly waits on the peer.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcsync-adopt") as adopter:
        try:
            for item in get_files(items):
                if not isinstance(item, dict):
                    raise ProtocolError("malformed whole-file frame")
                if "c" in item and part is not None and isinstance(item["c"], bytes):
                    part.write(item["c"])
                    done += len(item["c"])
                    received += len(item["c"])
                    progress("receiving", done, total)
                elif "f" in item and part is None:
                    det = next(expected, None)
                    if det is None or item["f"] != det:
                        raise ProtocolError(f"the server sent detector {str(item['f'])[:80]!r} out of order")
                    if "skip" not in item:
                        part = _Part(incoming, det, item)
                        done += part.offset
                elif "end" in item and part is not None and item["end"] == part.det:
                    finished, part = part, None
                    if item.get("ok") is True and finished.complete:
                        adoptions[finished.det] = adopter.submit(
                            finished.adopt, place(finished.det), remote, url
                        )
                    else:
                        finished.discard()
                elif "total" in item and part is None:
                    total = _count(item["total"], "total")
                else:
                    raise ProtocolError("malformed whole-file frame")
        finally:
            if part is not None:
                part.close()  # kept, with its token, for the next run to resume
    results = {det: adoption.result() for det, adoption in adoptions.items()}
    adopted = {det: r.head for det, r in results.items() if r.head is not None}
    refused = {det: r.refused for det, r in results.items() if r.refused}
    with contextlib.suppress(OSError):
        incoming.rmdir()  # only when empty
    return adopted, received, refused
