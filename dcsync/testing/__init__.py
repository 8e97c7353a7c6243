"""Contract test suites shipped with the package, subclassed by each implementation: stores
(:mod:`~dcsync.testing.store`), channels (:mod:`~dcsync.testing.channel`) and the sync scenarios
over any store (:mod:`~dcsync.testing.sync`). They need pytest (the ``test`` extra).
"""
