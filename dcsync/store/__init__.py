"""One detector repository's objects, refs and log behind :class:`~dcsync.store.base.ObjectStore`:
in memory (:mod:`~dcsync.store.memory`) or in its HDF5 file (:mod:`~dcsync.store.hdf5`, with the
journal, recovery, locking and the plain-HDF5 view).

Layer 2 of docs/architecture.md: imports :mod:`dcsync.model` and below, never transport or legacy.
"""
