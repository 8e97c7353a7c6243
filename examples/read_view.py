"""Read constants from a dcsync repository file with plain h5py, safely while someone commits.

dcsync writes a commit into the file in place (new objects appended, a few pages of HDF5 metadata
overwritten, under a rollback journal). A plain h5py reader takes no lock, so one that opens the
file while a commit is being written can meet metadata that is partly old and partly new. HDF5
then raises an error (an ``OSError`` such as "bad object header" or "checksum verification
failed", a ``KeyError`` for a group the other half does not have yet, rarely a ``ValueError`` or
``RuntimeError``), and trying again a moment later works. ``dcsync get`` does this for you; this
is the recipe for scripts that use h5py alone (docs/format.md, "Reading the view with plain h5py"):

1. if ``<file>.journal`` exists, a commit is being written (or a crashed writer's is waiting to be
   rolled back by the next dcsync command): wait and try again;
2. open the file read-only with ``locking=False``, note the commit the view shows (attribute
   ``view`` of ``/.dcsync``), read what you need, close;
3. if HDF5 raised, or a journal appeared, or the view now shows another commit, what you read may
   mix two states: wait and try again; otherwise it is exactly what that commit's view holds.

Usage: ``python read_view.py FILE CTYPE RANGE`` prints the range's effective version and its value.
Needs only h5py and numpy.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import h5py

T = TypeVar("T")

# What HDF5 raises through h5py when it meets metadata a commit is rewriting.
TRANSIENT = (OSError, KeyError, ValueError, RuntimeError)


class StillCommitting(TimeoutError):
    """The file kept changing (or kept a journal) for all attempts."""


def _view_commit(path: str) -> str:
    with h5py.File(path, "r", locking=False) as f:
        return str(f[".dcsync"].attrs["view"])


def read_consistent(
    path: str, read: Callable[[h5py.File], T], *, attempts: int = 200, pause: float = 0.05
) -> T:
    """``read(f)`` on the file as one commit left it, retried across commits (see the module doc).

    ``read`` must copy what it needs out of the file (``dataset[()]``, ``str(attr)``): nothing it
    returns may still refer to the open file.
    """
    journal = path + ".journal"
    problem: BaseException | None = None
    for _ in range(attempts):
        if not os.path.exists(journal):
            try:
                with h5py.File(path, "r", locking=False) as f:
                    shown = str(f[".dcsync"].attrs["view"])
                    value = read(f)
                if not os.path.exists(journal) and _view_commit(path) == shown:
                    return value
            except TRANSIENT as exc:
                problem = exc
        time.sleep(pause)
    raise StillCommitting(
        f"{path} was being committed to for all {attempts} attempts"
        + (
            " and a journal is still there: a writer may have crashed; the next dcsync command on "
            "that file rolls it back (or `dcsync verify` names the problem)"
            if os.path.exists(journal)
            else ""
        )
    ) from problem


def effective(path: str, ctype: str, range_key: str) -> tuple[str, Any]:
    """The version a lookup in ``ctype``'s range ``range_key`` returns, and its value."""

    def read(f: h5py.File) -> tuple[str, Any]:
        group = f[ctype][range_key]
        version = str(group.attrs["effectivev"])
        value = group[version]["calib"][()]
        return version, value.decode("utf-8") if isinstance(value, bytes) else value

    return read_consistent(path, read)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("Usage: ")[1].split("\n")[0] if __doc__ else "usage: FILE CTYPE RANGE")
    version, value = effective(sys.argv[1], sys.argv[2], sys.argv[3])
    shape = getattr(value, "shape", None)
    print(f"{version} {value.dtype} {shape}" if shape is not None else f"{version} text {value!r}")
