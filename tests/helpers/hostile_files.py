"""Hostile repository files, as a hostile server would hand them out whole (issue 9, items 3 and 7):
built with h5py from a real repository whose ``pedestals`` has one range beginning at :data:`T0`.
Each builder rewrites the file in place and returns words the refusal names. Shared by
tests/sync/test_attack_wholefile.py and tests/benchmarks/bench_clone_memory.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from dcsync.model.hashing import ObjectId
from dcsync.repo.repository import Repository

T0 = 1_700_000_000 * 10**9
CTYPE = "pedestals"


def head_answer(path: Path) -> tuple[ObjectId, ObjectId, np.ndarray, str]:
    """HEAD, its root tree, and what a lookup of pedestals returns (id, value, version key)."""
    with Repository.open(path) as repo:
        head = repo.head()
        assert head is not None
        found = repo.get(CTYPE, at_ns=T0 + 1)
        tree = repo.store.read_commit(head).tree
        return found.obj, tree, np.asarray(found.value), str(found.version)


def effective(f: h5py.File) -> tuple[h5py.Group, h5py.Group]:
    """The pedestals range group of the view, and its effective version's group."""
    ranges = f[CTYPE]
    rng = ranges[next(iter(ranges))]
    return rng, rng[rng.attrs["effectivev"]]


def object_path(oid: str) -> str:
    return f"/.dcsync/objects/{oid[:2]}/{oid[2:]}"


def external_storage(path: Path, tmp: Path) -> str:
    """The effective version's calib: a dataset whose storage is a local file, read as float32."""
    secret = tmp / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 256)
    with h5py.File(path, "r+") as f:
        _, version = effective(f)
        shape = version["calib"].shape
        del version["calib"]
        nbytes = math.prod(shape) * 4
        version.create_dataset("calib", shape=shape, dtype="<f4", external=[(str(secret), 0, nbytes)])
    return "external file"


def _elsewhere(tmp: Path, shape: tuple[int, ...]) -> Path:
    other = tmp / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.full(shape, 666, np.float32)
    return other


def external_link(path: Path, tmp: Path) -> str:
    with h5py.File(path, "r+") as f:
        _, version = effective(f)
        other = _elsewhere(tmp, version["calib"].shape)
        del version["calib"]
        version["calib"] = h5py.ExternalLink(str(other), "/data")
    return "external link"


def virtual_dataset(path: Path, tmp: Path) -> str:
    with h5py.File(path, "r+") as f:
        _, version = effective(f)
        shape = version["calib"].shape
        other = _elsewhere(tmp, shape)
        del version["calib"]
        layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=shape)
        version.create_virtual_dataset("calib", layout)
    return "virtual"


def external_payload(path: Path, tmp: Path) -> str:
    """The payload object itself kept in a file any local user could rewrite: its bytes are right
    today, so every hash checks out."""
    oid, _, value, _ = head_answer(path)
    outside = tmp / "payload.bin"
    outside.write_bytes(value.astype("<f4").tobytes())
    with h5py.File(path, "r+") as f:
        _, version = effective(f)
        del version["calib"], f[object_path(oid)]
        ds = f.create_dataset(
            object_path(oid), shape=value.shape, dtype="<f4", external=[(str(outside), 0, value.nbytes)]
        )
        ds.attrs["k"] = "array"
        version["calib"] = ds
    return "external file"


def lying_view(path: Path, tmp: Path) -> str:
    """The view's attributes name the older version effective and default, and a wrong begin."""
    with h5py.File(path, "r+") as f:
        rng, _ = effective(f)
        older = next(v for v in rng.attrs["versions"] if v != rng.attrs["effectivev"])
        rng.attrs["effectivev"] = older
        rng.attrs["defaultv"] = older
        rng.attrs["tsbegin"] = np.int64(0)
    return "attribute effectivev"


def tree_bomb(path: Path, tmp: Path) -> str:
    """HEAD's root tree declared as 1 GiB, stored as nothing (a 1 GiB read before the fix)."""
    _, tree, _, _ = head_answer(path)
    with h5py.File(path, "r+") as f:
        del f[object_path(tree)]
        ds = f.create_dataset(object_path(tree), shape=(1 << 30,), dtype="u1")
        ds.attrs["k"] = "tree"
    return "declares 1073741824 bytes"


def array_bomb(path: Path, tmp: Path) -> str:
    """The pedestals payload declared as float64 (1, 2**27): 1 GiB, stored as nothing."""
    oid, _, _, _ = head_answer(path)
    with h5py.File(path, "r+") as f:
        del f[object_path(oid)]
        ds = f.create_dataset(object_path(oid), shape=(1, 1 << 27), dtype="<f8")
        ds.attrs["k"] = "array"
    return "declares 1073741824 bytes"


def gzip_payload(path: Path, tmp: Path) -> str:
    """The effective payload kept gzip-compressed: a file far smaller than what readers allocate.
    (The right bytes, so every hash checks out; at 64 GiB a plain reader would fall over.)"""
    oid, _, value, _ = head_answer(path)
    with h5py.File(path, "r+") as f:
        _, version = effective(f)
        del version["calib"], f[object_path(oid)]
        ds = f.create_dataset(object_path(oid), data=value, compression="gzip", chunks=True)
        ds.attrs["k"] = "array"
        version["calib"] = ds
    return "not a contiguous dataset"


Hostile = Callable[[Path, Path], str]


def objects_elsewhere(path: Path, tmp: Path) -> str:
    """``/.dcsync/objects`` an external link to a copy of the objects in another file: every hash
    checks out, and the objects a reader gets are whatever that file holds tomorrow."""
    other = tmp / "objects.h5"
    with h5py.File(path, "r") as f, h5py.File(other, "w") as g:
        f.copy(f["/.dcsync/objects"], g, "objects")
    with h5py.File(path, "r+") as f:
        del f["/.dcsync/objects"]
        f["/.dcsync/objects"] = h5py.ExternalLink(str(other), "/objects")
    return "link to elsewhere"
