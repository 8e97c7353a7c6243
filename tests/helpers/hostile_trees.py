"""Well-hashed trees that break the validity rules (issue 9, items 1, 4 and 12), and a server
that offers them.

Each case is one commit on top of a real repository's HEAD, built with the real encoder
(``objects.encode`` through ``store.put_object``), so its objects hash correctly and only the
rules of docs/format.md can refuse them:

- ``ctype .dcsync``: the root lists a ctype named ``.dcsync`` (the view would write it over the
  repository's own metadata);
- ``range key /.dcsync``: the allowed ctype ``pixel_mask`` gets a range keyed ``/.dcsync`` (the
  issue's attack held an empty range tree there, so no diff entry for an ACL to judge; an empty
  range tree is now refused by itself, so this one holds a version and only its key is wrong);
- ``moved to 2100``: the newest pedestals range's bounds in the ctype tree say 2100 (and its key
  too), its range tree still says June: lookups and the view would answer differently;
- ``moved, key kept``: the same, the key left as it was;
- ``uint64 begin``: a range whose begin is 2**64 - 1 (int64 overflow in numpy and HDF5);
- ``another detector``: the root says it is ``cspad-2``, pushed or offered as ``epix-1``.

``python hostile_trees.py BASE DET CASE serve --stdio --root PATH`` serves one case over
stdin/stdout like ``dcsync serve`` (as a ``--remote-dcsync``), with
:class:`wrong_kinds.HostileServer`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script (a --remote-dcsync): import as the tests do
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.wrong_kinds import Case, HostileServer, copy_of

from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, range_key
from dcsync.model.objects import Commit, CtypeTree, RangeRef, RangeTree, RootTree
from dcsync.model.times import parse_time
from dcsync.repo.repository import Repository

Y2100 = parse_time("2100-01-01T00:00:00Z")
UINT64_MAX = 2**64 - 1
CASES = (
    "ctype .dcsync",
    "range key /.dcsync",
    "moved to 2100",
    "moved, key kept",
    "uint64 begin",
    "another detector",
)
# what each refusal names: the field, and the value that breaks its rule
NAMED = {
    "ctype .dcsync": ("ctype name", "'.dcsync'"),
    "range key /.dcsync": ("range key", "'/.dcsync'"),
    "moved to 2100": ("range '4102444800-end'", "spans"),
    "moved, key kept": ("range key", "does not name its bounds"),
    "uint64 begin": ("range", str(UINT64_MAX)),
    "another detector": ("for detector epix-1", "cspad-2"),
}


def build(path: Path, name: str) -> Case:
    """Case ``name`` on top of the HEAD of the repository file at ``path`` (which must hold
    pedestals with two open-ended ranges, and a pixel_mask)."""
    with Repository.open(path) as repo:
        base_head = repo.head()
        assert base_head is not None
        store = copy_of(repo.store, base_head)
    commit = store.read_commit(base_head)
    root = store.read_as(commit.tree, RootTree)
    peds_id = root.ctypes["pedestals"]
    peds = store.read_as(peds_id, CtypeTree)
    newest = max(peds.ranges, key=lambda k: peds.ranges[k].begin)
    with store.writing():

        def with_ctype(name: str, ct: CtypeTree) -> ObjectId:
            return store.put_object(replace(root, ctypes={**root.ctypes, name: store.put_object(ct)}))

        if name == "ctype .dcsync":
            tree = store.put_object(replace(root, ctypes={**root.ctypes, ".dcsync": peds_id}))
        elif name == "range key /.dcsync":
            mask = store.read_as(root.ctypes["pixel_mask"], CtypeTree)
            some = store.read_as(next(iter(mask.ranges.values())).tree, RangeTree)
            # not empty: an empty range tree is refused for that alone (what is tested here is the key)
            hostile = store.put_object(replace(some, begin=0, end=None))
            ranges = {**mask.ranges, RangeKey("/.dcsync"): RangeRef(0, None, hostile)}
            tree = with_ctype("pixel_mask", replace(mask, ranges=ranges))
        elif name in ("moved to 2100", "moved, key kept"):
            ref = peds.ranges[newest]
            key = newest if name == "moved, key kept" else range_key(Y2100, None)
            ranges = {k: r for k, r in peds.ranges.items() if k != newest}
            ranges[key] = replace(ref, begin=Y2100)
            tree = with_ctype("pedestals", replace(peds, ranges=ranges))
        elif name == "another detector":
            tree = store.put_object(replace(root, dettype="cspad", detid="2"))
        else:
            assert name == "uint64 begin"
            rng = store.put_object(RangeTree(UINT64_MAX, None))
            ranges = {**peds.ranges, range_key(UINT64_MAX, None): RangeRef(UINT64_MAX, None, rng)}
            tree = with_ctype("pedestals", replace(peds, ranges=ranges))
        head = store.put_object(Commit(tree, (base_head,), "mallory", "evilhost", commit.time + 1, name))
    new = tuple(oid for oid in store.object_ids() if oid not in set(_ids_of(path)))
    return Case("tree", name, False, head, base_head, tree, store, new)


def _ids_of(path: Path) -> list[ObjectId]:
    with Repository.open(path) as repo:
        return list(repo.store.object_ids())


def main() -> None:
    base, det, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    root = Path(sys.argv[sys.argv.index("--root") + 1])
    HostileServer(root, det, [build(base, name)]).serve_stdio()


if __name__ == "__main__":
    main()
