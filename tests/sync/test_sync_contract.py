"""The sync contract (:class:`dcsync.testing.sync.SyncContract`) over each kind of server store: the
workspace's HDF5 files, and stores in memory. The client side is a workspace of HDF5 files in both."""

from __future__ import annotations

from pathlib import Path

from dcsync.sync.stores import DetectorStores, MemoryStores
from dcsync.testing.sync import SyncContract


class TestSyncOverHDF5Files(SyncContract):
    def make_stores(self, root: Path) -> DetectorStores | None:
        return None  # the server's default: the served workspace's repository files


class TestSyncOverMemoryStores(SyncContract):
    def make_stores(self, root: Path) -> DetectorStores | None:
        return MemoryStores()
