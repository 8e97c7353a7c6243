"""The repository file's HDF5 layout: creating a file, opening one to read, and checking its format.

Layout (format 1)::

    /.dcsync                 attrs: format=1, hash="xxh3-128", refs=<JSON {name: commit id}>,
                                    view=<commit id the seed-schema view shows>
    /.dcsync/objects/<aa>/<30 hex>   one dataset per object, write-once; attr k = kind
        array   the array itself (any numeric or bool dtype, any shape, contiguous)
        text    a scalar fixed-length byte string (UTF-8)
        tree, commit   1-D uint8, the msgpack bytes hashed for the id
    /.dcsync/log             1-D variable-length UTF-8 strings, one JSON record per ref move
    /<ctype>/...             the seed-schema view of HEAD (see dcsync.store.view)

The objects, refs and log in it are read and written by :class:`~dcsync.store.hdf5.HDF5Store`.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dcsync.errors import AlreadyExists, FormatTooNew, NotARepository, RepositoryError
from dcsync.model.hashing import ALGORITHM, ObjectId
from dcsync.rawio import FullFileIO
from dcsync.store.locking import write_denied
from dcsync.store.recovery import OverlayReader, PaddedReader

FORMAT_VERSION = 1
META = "/.dcsync"
OBJECTS = "/.dcsync/objects"
LOG = "/.dcsync/log"
LIBVER = ("latest", "latest")  # metadata checksums; readers need HDF5 >= 1.10
_SUPERBLOCK_SIG = b"\x89HDF\r\n\x1a\n"
# What h5py raises when a file's bytes are not what HDF5 expects: damage, or a commit that moved
# the file under a reader. Caught only around the calls into h5py (see dcsync.store.hdf5's
# _storage_read), so a caller's TypeError or ValueError is never mistaken for a damaged file.
H5_FAILURES = (OSError, KeyError, RuntimeError, ValueError, TypeError)


def object_path(oid: ObjectId) -> str:
    return f"{OBJECTS}/{oid[:2]}/{oid[2:]}"


def create_log(meta: h5py.Group, records: list[str] | None = None) -> None:
    rows = np.array(records or [], dtype=h5py.string_dtype())
    meta.create_dataset("log", data=rows, maxshape=(None,), chunks=(256,), dtype=h5py.string_dtype())


def superblock_eoa(path: Path) -> int | None:
    """End-of-allocation from a version 2/3 superblock: the size the file should have."""
    with open(path, "rb") as fh:
        head = fh.read(48)
    if len(head) < 36 or not head.startswith(_SUPERBLOCK_SIG) or head[8] not in (2, 3):
        return None
    return int(struct.unpack_from("<Q", head, 28)[0])


def create_file(path: Path) -> None:
    """Create an empty repository file atomically: it appears complete or not at all."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with h5py.File(tmp, "w", libver=LIBVER, locking=False) as f:
            meta = f.create_group(META)
            meta.attrs["format"] = FORMAT_VERSION
            meta.attrs["hash"] = ALGORITHM
            meta.attrs["refs"] = "{}"
            meta.attrs["view"] = ""
            meta.create_group("objects")
            create_log(meta)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise AlreadyExists(f"{path} already exists") from None
    except OSError as exc:
        if isinstance(exc, AlreadyExists):
            raise
        if isinstance(exc, PermissionError):  # the directory is not ours to write in
            why = os.strerror(exc.errno) if exc.errno else exc.strerror  # h5py's text is long
            raise write_denied(path, f"cannot create it ({why})") from exc
        raise RepositoryError(f"cannot create {path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def open_reader(path: Path, hot_journal: bool) -> tuple[h5py.File, Any, bool]:
    """A read-only h5py file on ``path``, its file object, and whether the file is truncated
    (then opened padded to the size its superblock says, so that intact objects stay readable)."""
    # Always through a file object of our own, never HDF5's sec2 driver: HDF5 shares one open
    # file and its metadata cache among all sec2 handles a process has on the same inode, so a
    # second store (or verify) in this process would read a stale, mixed state of the file.
    fobj: Any = None
    try:
        fobj = OverlayReader(path) if hot_journal else FullFileIO(path, "rb")
        return h5py.File(fobj, "r"), fobj, False
    except OSError as exc:
        if fobj is not None:
            fobj.close()
        if "truncated file" in str(exc):
            eoa = superblock_eoa(path)
            if eoa:
                fobj = PaddedReader(path, eoa)
                try:
                    return h5py.File(fobj, "r"), fobj, True
                except OSError:
                    fobj.close()
        if isinstance(exc, FileNotFoundError):
            raise NotARepository(f"{path}: no such repository file") from exc
        raise NotARepository(f"{path} is not a readable HDF5 file ({exc})") from exc


def check_format(f: h5py.File, path: Path, *, truncated: bool = False) -> None:
    """Refuse a file that is not a dcsync repository of a format and hash this dcsync reads."""
    # h5py follows soft and external links on lookup: the groups read before verify's walk
    # (dcsync.store.structure) must be the file's own
    for name in (META, OBJECTS):
        link: Any = None
        with contextlib.suppress(*H5_FAILURES):  # missing or unreadable: reported below
            link = f.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink | None):
            raise NotARepository(f"{path}: {name} is a link to elsewhere, not a dcsync group")
    try:
        attrs = f[META].attrs
        fmt = int(attrs["format"])
        algorithm = str(attrs["hash"])
    except (KeyError, ValueError, TypeError, OSError) as exc:
        if truncated:
            raise NotARepository(
                f"{path} is truncated and its dcsync metadata was in the lost part; "
                "restore it from a copy (another workspace: dcsync clone/pull)"
            ) from exc
        raise NotARepository(f"{path} is an HDF5 file but not a dcsync repository") from exc
    if fmt > FORMAT_VERSION:
        raise FormatTooNew(
            f"{path} has format {fmt}; this dcsync reads format {FORMAT_VERSION} and older: upgrade dcsync"
        )
    if algorithm != ALGORITHM:
        raise FormatTooNew(f"{path} uses hash {algorithm!r}; this dcsync knows only {ALGORITHM}")
