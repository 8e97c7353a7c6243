"""The tree a transaction edits: a working copy of one commit's trees, loaded as it is touched.

Changed ranges and ctypes are kept decoded and marked dirty; :meth:`Work.write` stores them
bottom-up, so a commit rewrites only the path from a change to the root. A transaction's operations
run on one (:mod:`dcsync.repo.transaction`), and again on a fresh one over a newer HEAD.
"""

from __future__ import annotations

from dataclasses import replace

from dcsync.errors import CtypeNotFound, RangeNotFound, UsageError, VersionNotFound
from dcsync.model.hashing import ObjectId
from dcsync.model.names import RangeKey, VersionKey, check_known_ctype, resolve_prefix, resolve_range
from dcsync.model.objects import CtypeTree, RangeRef, RangeTree
from dcsync.repo.trees import Located, read_ctype, read_range, read_root
from dcsync.store.base import ObjectStore

_PENDING = ObjectId("0" * 32)  # a placeholder id until write() stores the changed subtree


class Work:
    """A mutable working copy of the tree of ``base`` (None: HEAD), loaded as it is touched."""

    def __init__(self, store: ObjectStore, base: ObjectId | None) -> None:
        self.store = store
        self.base = base
        self.root = read_root(store, base)
        self.ctypes: dict[str, CtypeTree] = {}
        self.ranges: dict[tuple[str, RangeKey], RangeTree] = {}
        self.dirty_ranges: set[tuple[str, RangeKey]] = set()
        self.dirty_ctypes: set[str] = set()

    def ctype(self, name: str, *, create: bool = False) -> CtypeTree:
        if name not in self.ctypes:
            loaded = name in self.root.ctypes
            self.ctypes[name] = read_ctype(self.store, self.root, name) if loaded else CtypeTree()
        tree = self.ctypes[name]
        if not create and not tree.ranges and not tree.pars:
            raise CtypeNotFound(f"{self.root.detname} has no ctype {name!r}")
        return tree

    def has_ctype(self, name: str) -> bool:
        """Whether the tree as this transaction has left it so far has the ctype."""
        tree = self.ctypes.get(name)
        return name in self.root.ctypes if tree is None else bool(tree.ranges or tree.pars)

    def check_known_ctype(self, name: str, new_ctype: bool) -> None:
        have = [c for c in {*self.root.ctypes, *self.ctypes} if self.has_ctype(c)]
        check_known_ctype(name, have, self.root.detname, new_ctype=new_ctype)

    def range_key(self, ctype: str, prefix: str) -> RangeKey:
        key = resolve_range(prefix, list(self.ctype(ctype).ranges), f"{self.root.detname} {ctype}")
        if not key:
            raise RangeNotFound(f"{self.root.detname} {ctype} has no range {prefix!r}")
        return RangeKey(key)

    def range(self, ctype: str, key: RangeKey) -> RangeTree | None:
        if (ctype, key) not in self.ranges:
            ref = self.ctype(ctype, create=True).ranges.get(key)
            if ref is None:
                return None
            self.ranges[(ctype, key)] = read_range(self.store, ref)
        return self.ranges[(ctype, key)]

    def find_version(self, ctype: str, prefix: str, range: str | None) -> Located:
        keys = [self.range_key(ctype, range)] if range else list(self.ctype(ctype).ranges)
        found: dict[str, tuple[RangeKey, RangeTree]] = {}
        for rk in keys:
            tree = self.range(ctype, rk)
            if tree is not None:
                found.update({v: (rk, tree) for v in tree.versions})
        where = f"{self.root.detname} {ctype}" + (f" range {keys[0]}" if range else "")
        key = resolve_prefix(prefix, list(found), "version", where)
        if not key:
            raise VersionNotFound(f"{where} has no version {prefix!r}")
        rk, tree = found[key]
        return Located(ctype, rk, tree, VersionKey(key), tree.versions[VersionKey(key)])

    def require_new_version(self, ctype: str, vkey: VersionKey) -> None:
        """Refuse a kept version key the ctype already has (keys name one version per ctype)."""
        for rk in self.ctype(ctype, create=True).ranges:
            tree = self.range(ctype, rk)
            if tree is not None and vkey in tree.versions:
                raise UsageError(f"{self.root.detname} {ctype} already has a version {vkey} (range {rk})")

    def set_range(self, ctype: str, key: RangeKey, tree: RangeTree | None) -> None:
        """Replace a range; an empty range means nothing and is pruned."""
        ct = self.ctype(ctype, create=True)
        ranges = dict(ct.ranges)
        if tree is None or not tree.versions:
            ranges.pop(key, None)
            self.ranges.pop((ctype, key), None)
            self.dirty_ranges.discard((ctype, key))
        else:
            ranges[key] = RangeRef(tree.begin, tree.end, _PENDING)
            self.ranges[(ctype, key)] = tree
            self.dirty_ranges.add((ctype, key))
        self.ctypes[ctype] = replace(ct, ranges=ranges)
        self.dirty_ctypes.add(ctype)

    def set_ctype(self, name: str, tree: CtypeTree | None) -> None:
        """Replace a ctype's own fields; None removes it with all its ranges."""
        if tree is None:
            self.ranges = {k: v for k, v in self.ranges.items() if k[0] != name}
            self.dirty_ranges = {k for k in self.dirty_ranges if k[0] != name}
        self.ctypes[name] = tree or CtypeTree()
        self.dirty_ctypes.add(name)

    def write(self, store: ObjectStore) -> ObjectId:
        """Store the changed trees bottom-up and return the new root's id."""
        for ctype, key in sorted(self.dirty_ranges):
            tid = store.put_object(self.ranges[(ctype, key)])
            ct = self.ctypes[ctype]
            self.ctypes[ctype] = replace(ct, ranges={**ct.ranges, key: replace(ct.ranges[key], tree=tid)})
        self.dirty_ranges.clear()
        ctypes = dict(self.root.ctypes)
        for name in sorted(self.dirty_ctypes):
            ct = self.ctypes[name]
            if ct.ranges or ct.pars:
                ctypes[name] = store.put_object(ct)
            else:
                ctypes.pop(name, None)
        self.dirty_ctypes.clear()
        self.root = replace(self.root, ctypes=ctypes)
        return store.put_object(self.root)
